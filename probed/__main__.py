"""``python -m probed`` and the ``probed`` command: hold early signals, collect only young
garbage while loading, then run the CLI."""

from __future__ import annotations

import sys

from probed import startgc, startsignals


def main() -> int:
    """Hold SIGHUP and collect only the young generation while the command loads (see
    :mod:`probed.startsignals`, :mod:`probed.startgc`), then run it."""
    startsignals.hold()
    startgc.begin()
    from probed.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
