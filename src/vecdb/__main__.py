"""``python -m vecdb``: the same as the ``vecdb`` command."""

from vecdb._cli import main

raise SystemExit(main())
