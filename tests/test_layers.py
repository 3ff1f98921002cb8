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
