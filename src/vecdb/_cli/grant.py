"""``vecdb grant ROLE``: the GRANTs of a least-privilege runtime role; ``--apply`` runs them.

Printed by default, so that a DBA can review them or put them into their own
provisioning; ``--apply`` runs them in one transaction as the connecting role
(the owner of vecdb's schema and collections). See docs/deployment.md.
"""

from __future__ import annotations

import argparse

from .._collections.grants import runtime_grants
from .._errors import translating
from .._server.database import Database
from .output import AddCommand, Outcome

__all__ = ["add_commands"]


async def _grant(db: Database, args: argparse.Namespace) -> Outcome:
    with translating():
        async with db.transaction() as conn:
            statements = await runtime_grants(conn, args.role)
            if args.apply:
                for statement in statements:
                    await conn.execute(statement)
    text = "\n".join(f"{s};" for s in statements)
    if args.apply:
        text += f"\n-- applied: {len(statements)} statements for role {args.role}"
    return Outcome({"role": args.role, "applied": args.apply, "statements": statements}, text)


def add_commands(command: AddCommand) -> None:
    """Register ``grant`` on the ``vecdb`` parser."""
    grant = command(
        "grant",
        _grant,
        "print the GRANTs that let ROLE read and write collections without changing the "
        "schema (a least-privilege runtime role); --apply runs them",
    )
    grant.add_argument("role", metavar="ROLE", help="an existing role, e.g. app_runtime")
    grant.add_argument(
        "--apply", action="store_true", help="run the statements (in one transaction)"
    )
