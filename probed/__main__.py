"""``python -m probed`` and the ``probed`` command: hold early signals, then run the CLI."""

from __future__ import annotations

import sys

from probed import startsignals


def main() -> int:
    """Hold SIGHUP while the command loads (see :mod:`probed.startsignals`), then run it."""
    startsignals.hold()
    from probed.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
