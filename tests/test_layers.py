"""The layering holds at run time too: loading a config pulls in no HTTP stack, no database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_loading_the_shipped_config_imports_no_server_stack() -> None:
    """`probed.config` and the shipped file leave aiohttp, bcrypt and sqlite3 unimported."""
    code = (
        "import sys; from probed.config import load_config; load_config('probes.toml'); "
        "print(' '.join(m for m in ('aiohttp', 'bcrypt', 'sqlite3') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (0, "", "") == (result.returncode, result.stderr, result.stdout.strip())


def test_no_room_imports_another_rooms_private_module() -> None:
    """A ``_private`` module is imported only from inside its own package."""
    import grimp

    graph = grimp.build_graph("probed")
    offenders = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            package, _, leaf = imported.rpartition(".")
            private = leaf.startswith("_") and not leaf.startswith("__")
            if private and not module.startswith(package + "."):
                offenders.append(f"{module} -> {imported}")
    assert [] == offenders
