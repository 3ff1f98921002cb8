"""aiohttp's default client TLS contexts at the daemon's start: the system CA store is
loaded once (for the verifying context), not a second time for the context that never
verifies."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Counts the loads of the system CA store (``set_default_verify_paths``, which
# ``ssl.create_default_context`` calls too) while ``probed run --config.check`` imports the
# daemon, then looks at the two contexts aiohttp made.
_START = """
import json, runpy, ssl, sys

loads = []
inherited = ssl.SSLContext.set_default_verify_paths

def counting(context):
    loads.append(context.verify_mode.name)
    inherited(context)

ssl.SSLContext.set_default_verify_paths = counting
sys.argv = ["probed", "run", "--config", sys.argv[1], "--config.check"]
try:
    runpy.run_module("probed", run_name="__main__")
except SystemExit as exit:
    code = exit.code
from aiohttp import connector

print(json.dumps({
    "code": code,
    "loads": loads,
    "restored": ssl.SSLContext.set_default_verify_paths is counting,
    "verified": connector._SSL_CONTEXT_VERIFIED.cert_store_stats(),
    "unverified": connector._SSL_CONTEXT_UNVERIFIED.cert_store_stats(),
    "unverified_mode": connector._SSL_CONTEXT_UNVERIFIED.verify_mode.name,
    "unverified_checks_hostname": connector._SSL_CONTEXT_UNVERIFIED.check_hostname,
}))
"""


def _system_cas() -> int:
    return ssl.create_default_context().cert_store_stats()["x509_ca"]


def test_the_daemon_loads_the_system_ca_store_once(tmp_path: Path) -> None:
    """The daemon's start reads the system CAs for aiohttp's verifying context only; the
    non-verifying one (``CERT_NONE``, which reads no trust anchor) is left without them,
    and ``SSLContext`` is as it was once aiohttp is imported."""
    config = tmp_path / "probed.toml"
    config.write_text(
        f'[daemon]\nlisten = "127.0.0.1:0"\nstate_dir = "{tmp_path}"\n\n'
        '[targets.t]\nbase_url = "http://127.0.0.1:9"\n\n'
        '[[probes]]\nname = "p"\nkind = "http"\ntarget = "t"\npath = "/"\ninterval = "15s"\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-c", _START, str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["code"] == 0, done.stderr
    assert ["CERT_REQUIRED"] == seen["loads"]
    assert seen["restored"]
    assert "CERT_NONE" == seen["unverified_mode"]
    assert not seen["unverified_checks_hostname"]
    assert 0 == seen["unverified"]["x509"]
    if _system_cas() == 0:
        pytest.skip("this machine has no system CA store to load")
    assert _system_cas() == seen["verified"]["x509_ca"]
