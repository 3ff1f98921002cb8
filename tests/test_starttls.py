"""aiohttp's default client TLS contexts at the daemon's start: the system CA store is
loaded once (for the verifying context, in a thread beside the imports), not a second time
for the context that never verifies."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Counts the loads of the system CA store (``set_default_verify_paths``, which
# ``ssl.create_default_context`` calls too) while ``probed run --config.check`` imports the
# daemon, then looks at the two contexts aiohttp made.
_START = """
import json, runpy, ssl, sys, threading

loads = []
threads = []
inherited = ssl.SSLContext.set_default_verify_paths
create = ssl.create_default_context

def counting(context):
    loads.append(context.verify_mode.name)
    threads.append(threading.current_thread().name)
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
    "threads": threads,
    "restored": ssl.SSLContext.set_default_verify_paths is counting
    and ssl.create_default_context is create,
    "verified": connector._SSL_CONTEXT_VERIFIED.cert_store_stats(),
    "unverified": connector._SSL_CONTEXT_UNVERIFIED.cert_store_stats(),
    "unverified_mode": connector._SSL_CONTEXT_UNVERIFIED.verify_mode.name,
    "unverified_checks_hostname": connector._SSL_CONTEXT_UNVERIFIED.check_hostname,
}))
"""


def _system_cas() -> int:
    return ssl.create_default_context().cert_store_stats()["x509_ca"]


def _python(script: str, config: Path) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter (aiohttp not imported yet), ``config`` its argument."""
    return subprocess.run(
        [sys.executable, "-c", script, str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_daemon_loads_the_system_ca_store_once(tmp_path: Path) -> None:
    """The daemon's start reads the system CAs for aiohttp's verifying context only, in a
    thread while the command's modules are imported; the non-verifying one (``CERT_NONE``,
    which reads no trust anchor) is left without them, and ``ssl`` is as it was once
    aiohttp is imported."""
    config = tmp_path / "probed.toml"
    config.write_text(
        f'[daemon]\nlisten = "127.0.0.1:0"\nstate_dir = "{tmp_path}"\n\n'
        '[targets.t]\nbase_url = "http://127.0.0.1:9"\n\n'
        '[[probes]]\nname = "p"\nkind = "http"\ntarget = "t"\npath = "/"\ninterval = "15s"\n',
        encoding="utf-8",
    )
    done = _python(_START, config)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["code"] == 0, done.stderr
    assert ["CERT_REQUIRED"] == seen["loads"]
    assert ["probed-ca-load"] == seen["threads"]  # beside the imports, not before them
    assert seen["restored"]
    assert "CERT_NONE" == seen["unverified_mode"]
    assert not seen["unverified_checks_hostname"]
    assert 0 == seen["unverified"]["x509"]
    if _system_cas() == 0:
        pytest.skip("this machine has no system CA store to load")
    assert _system_cas() == seen["verified"]["x509_ca"]


def test_other_commands_start_no_thread(tmp_path: Path) -> None:
    """Only ``run`` and ``demo`` load the CAs early: ``probed check`` starts no thread."""
    config = tmp_path / "probed.toml"
    config.write_text('[targets.t]\nbase_url = "http://127.0.0.1:9"\n', encoding="utf-8")
    script = (
        "import runpy, sys, threading\n"
        "sys.argv = ['probed', 'check', '--config', sys.argv[1]]\n"
        "try:\n    runpy.run_module('probed', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "from probed import starttls\n"
        "print(starttls._building is None, [t.name for t in threading.enumerate()])\n"
    )
    done = _python(script, config)
    assert done.stdout.splitlines()[-1] == "True ['MainThread']", done.stderr


def test_a_failed_early_build_leaves_it_to_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the thread cannot build the context (it raises), nothing is handed over and no
    traceback is printed: aiohttp's import builds its own, as without the thread."""
    from probed import starttls

    def broken(*args: object, **kwargs: object) -> ssl.SSLContext:
        raise ssl.SSLError("no CA store")

    raised: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", raised.append)
    monkeypatch.setattr(starttls, "_create_default_context", broken)
    thread = threading.Thread(target=starttls._build)
    monkeypatch.setattr(starttls, "_building", thread)
    thread.start()
    assert starttls._built_context() is None
    assert [] == raised
    monkeypatch.setattr(starttls, "_building", None)
    assert starttls._built_context() is None


def test_a_late_thread_builds_with_the_function_ssl_had(monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread may first get to run while ``import_aiohttp`` has ``ssl``'s
    ``create_default_context`` replaced (a busy machine): it builds with the one ``ssl``
    had when probed started, not with the replacement (which would wait for the thread)."""
    from probed import starttls

    def replaced(*args: object, **kwargs: object) -> ssl.SSLContext:
        raise AssertionError("the thread called the replacement")

    monkeypatch.setattr(ssl, "create_default_context", replaced)
    thread = threading.Thread(target=starttls._build)
    monkeypatch.setattr(starttls, "_building", thread)
    thread.start()
    context = starttls._built_context()
    assert isinstance(context, ssl.SSLContext)
    assert ssl.CERT_REQUIRED == context.verify_mode
