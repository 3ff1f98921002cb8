"""``python -m probed`` and the ``probed`` command: hold early signals, collect only young
garbage while loading, then run the CLI.

aiohttp keeps its few lists of signal handlers in ``frozenlist`` lists, whose compiled
build maps the C++ runtime (libstdc++): 1.0 MB of the daemon's idle RSS and 4 ms of its
start for lists it reads a few times per request. The command asks for the pure Python
build (``FROZENLIST_NO_EXTENSIONS``) unless the environment already says otherwise."""

from __future__ import annotations

import os
import sys

from probed import startgc, startsignals, starttls


def main() -> int:
    """Hold SIGHUP and collect only the young generation while the command loads (see
    :mod:`probed.startsignals`, :mod:`probed.startgc`); for the daemon, load the system CAs
    in a thread meanwhile (:mod:`probed.starttls`); then run the command."""
    startsignals.hold()
    startgc.begin()
    if sys.argv[1:2] in (["run"], ["demo"]):
        starttls.begin()  # the system CAs load beside the imports
    os.environ.setdefault("FROZENLIST_NO_EXTENSIONS", "1")  # before aiohttp is imported
    from probed.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
