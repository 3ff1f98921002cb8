"""The Dockerfile: its promises checked statically, and its steps replayed on this host.

No Docker engine runs here (tests/test_image.py builds and runs the image with
podman). What is checked here, without any container tool, is: the file's structure
(multi-stage on one BASE that defaults to python:3.11-slim, non-root, HEALTHCHECK on
/-/healthy, config path as the README says); that the build stage's wheel carries
everything the runtime reads; and that the image's ENTRYPOINT + CMD with the image's
environment start a daemon that its HEALTHCHECK command reports healthy, and unhealthy
once it is gone.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import string
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def build_stage() -> list[tuple[str, str]]:
    steps = instructions()
    first_from = min(i for i, (word, _) in enumerate(steps) if word == "FROM")
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[first_from:last_from]


def image_env() -> dict[str, str]:
    """The final stage's ENV; ``$VAR`` (PATH=/opt/probed/bin:$PATH) expands as docker does,
    with the host's environment standing in for the base image's."""
    env: dict[str, str] = {}
    for word, rest in final_stage():
        if word == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = string.Template(value).safe_substitute({**os.environ, **env})
    return env


def exec_form(word: str) -> list[str]:
    """The JSON exec form of the final stage's ``word`` (after HEALTHCHECK options, CMD)."""
    (rest,) = [rest for w, rest in final_stage() if w == word]
    if word == "HEALTHCHECK":
        rest = rest[rest.index("CMD ") + 4 :]
    argv: list[str] = json.loads(rest)
    return argv


def test_multi_stage_non_root_with_a_documented_config_path() -> None:
    steps = instructions()
    assert ("ARG", "BASE=python:3.11-slim") == steps[0]
    froms = [rest for word, rest in steps if word == "FROM"]
    assert ["${BASE} AS build", "${BASE}"] == froms
    stage = final_stage()
    users = [rest for word, rest in stage if word == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert any(word == "COPY" and "--from=build" in rest for word, rest in stage)
    env = image_env()
    assert "/etc/probed/probes.toml" == env["PROBED_CONFIG"]
    assert "/etc/probed/probes.toml" in (ROOT / "README.md").read_text()
    port = env["PROBED_DAEMON__LISTEN"].rsplit(":", 1)[1]
    assert [port] == [rest for word, rest in stage if word == "EXPOSE"]
    assert ["probed", "healthcheck"] == exec_form("HEALTHCHECK")[:2]


def test_the_build_stage_wheel_carries_the_runtime_files(tmp_path: Path) -> None:
    """The build stage's COPY lines and the wheel its ``pip install .`` builds (built here
    offline: no deps, no isolation)."""
    src, wheels = tmp_path / "src", tmp_path / "wheels"
    src.mkdir()
    for word, rest in build_stage():
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, dest = rest.split()
        for name in sources:  # COPY file... dir/ puts files in dir/; COPY dir path copies into path
            if (ROOT / name).is_dir():
                ignore = shutil.ignore_patterns("__pycache__")
                shutil.copytree(ROOT / name, src / dest, ignore=ignore)
            else:
                (src / dest).mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / name, src / dest / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(wheels), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("probed-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", "probed"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    if not tracked:  # not a git checkout (an unpacked source tree): every file under probed/
        tracked = [str(p.relative_to(ROOT)) for p in (ROOT / "probed").rglob("*") if p.is_file()]
    needed = {name for name in tracked if "__pycache__" not in name}
    assert set() == needed - names
    assert "probed/demo/probes.toml" in names


@pytest.mark.skipif(sys.platform != "linux", reason="the image is Linux")
def test_entrypoint_and_healthcheck_with_the_image_environment(tmp_path: Path) -> None:
    """ENTRYPOINT + CMD with the image's ENV start a daemon its HEALTHCHECK calls healthy."""
    config = tmp_path / "etc" / "probes.toml"
    config.parent.mkdir()
    config.write_text(
        "# no probes: the daemon serves its endpoints\n[daemon]\nallow_no_probes = true\n"
    )
    port = free_port()
    env = {
        **os.environ,
        **image_env(),
        # the image listens on 0.0.0.0 for its port mapping; a test binds loopback only
        "PROBED_DAEMON__LISTEN": f"127.0.0.1:{port}",
        "PROBED_DAEMON__STATE_DIR": str(tmp_path / "state"),
        "PROBED_CONFIG": str(config),
    }
    entry = [*exec_form("ENTRYPOINT"), *exec_form("CMD")]
    health = exec_form("HEALTHCHECK")
    daemon = subprocess.Popen(
        entry, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 10  # the HEALTHCHECK's --start-period
        while True:
            check = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
            if check.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (0, "") == (check.returncode, check.stderr)
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=15)
    assert 0 == daemon.returncode, err.decode()[-2000:]
    check = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
    assert 1 == check.returncode
    assert check.stderr.startswith(f"probed healthcheck: http://127.0.0.1:{port}/-/healthy: ")
