"""The container image: built with podman from this checkout, then run as its own user.

There is no Docker engine here, no registry to pull ``python:3.11-slim`` from, and
``podman run`` cannot start a container on this kind of machine (crun and cgroups v1), so
the test does what a container runtime does, short of the namespaces:

- the base: a Debian bookworm root file system (its python3 is 3.11) made with mmdebstrap
  from the Debian archive the host's apt uses, imported under a tag named after its recipe
  and kept between runs as a cache;
- the image: ``podman build --build-arg BASE=…`` of the Dockerfile on a copy of the files
  git knows (tracked, or new and not ignored), in the docker format, which keeps the
  HEALTHCHECK;
- the container: ``podman create`` and ``podman mount`` give a writable root file system over
  the image, as a container has; the image's ENTRYPOINT, CMD and HEALTHCHECK run in it under
  ``chroot --userspec`` as the image's USER with the image's environment, only the listen
  address moved to a free loopback port (a chroot shares the host's network).

The container and the image are removed when the module ends, the container unmounted even
when a test fails; the base image stays.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from binaries import missing, mmdebstrap, podman
from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
SUITE = "bookworm"  # python3 3.11, as in python:3.11-slim
BASE_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
# What python:3.11-slim's image config sets and an imported root file system lacks.
BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
)
_RECIPE = hashlib.sha256(repr((SUITE, BASE_PACKAGES, BASE_CHANGES)).encode()).hexdigest()
BASE_TAG = f"localhost/probed-test-base:{SUITE}-{_RECIPE[:12]}"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_UID = 10115

pytestmark = pytest.mark.process


def run(
    argv: Sequence[str], *, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; fail the test with its stderr when it exits non-zero."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(
            f"{shlex.join(argv)} exited {result.returncode}:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    return result


def need_root() -> None:
    """Skip locally, fail in CI, without root: mounting an image and chroot need it."""
    if os.geteuid() != 0:
        missing("mounting the image and chroot into it need root")


def debian_mirror() -> str | None:
    """The Debian archive the host's apt fetches from; None leaves mmdebstrap's default."""
    apt = Path("/etc/apt")
    listed = sorted((apt / "sources.list.d").glob("*.list"))
    deb822 = sorted((apt / "sources.list.d").glob("*.sources"))
    for path in [apt / "sources.list", *listed, *deb822]:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.partition("#")[0].split()
            if words[:1] == ["URIs:"]:
                uris = words[1:]
            elif words[:1] == ["deb"]:
                uris = [word for word in words[1:] if "://" in word][:1]
            else:
                continue
            for uri in uris:
                if uri.rstrip("/").endswith("/debian"):
                    return uri
    return None


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The local stand-in for python:3.11-slim, made once and kept in podman's storage."""
    tool, bootstrap = podman(), mmdebstrap()
    need_root()
    exists = subprocess.run([tool, "image", "exists", BASE_TAG], check=False, timeout=60)
    if exists.returncode == 0:
        print(f"base image {BASE_TAG}: reused")
        return BASE_TAG
    started = time.monotonic()
    tarball = tmp_path_factory.mktemp("base") / "rootfs.tar"
    mirror = debian_mirror()
    run(
        [bootstrap, "--quiet", "--variant=minbase", f"--include={BASE_PACKAGES}",
         SUITE, str(tarball), *([mirror] if mirror else [])],
        timeout=900,
    )  # fmt: skip
    changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
    run([tool, "import", "--quiet", *changes, str(tarball), BASE_TAG], timeout=300)
    tarball.unlink()
    print(f"base image {BASE_TAG}: made in {time.monotonic() - started:.0f} s from {mirror}")
    return BASE_TAG


def build_context(dest: Path) -> Path:
    """A clean copy of the checkout: the files git knows, no caches, no .git."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    names = [name for name in listed.stdout.split("\0") if name]
    if listed.returncode != 0 or not names:  # not a git checkout: the tree less the caches
        ignore = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", ".*_cache")
        shutil.copytree(ROOT, dest, ignore=ignore, dirs_exist_ok=True)
        return dest
    for name in names:
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is left out
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@dataclass(frozen=True)
class Container:
    """A created, mounted container of the freshly built image."""

    image: str
    config: dict[str, Any]  # the ``Config`` of ``podman image inspect``
    healthcheck_config: dict[str, Any]  # podman shows it beside ``Config``, docker in it
    root: Path  # the container's mounted root file system
    uid: int
    gid: int
    home: str

    def env(self, **overrides: str) -> dict[str, str]:
        """The image's environment, with HOME from its passwd as a runtime sets it."""
        env = {"HOME": self.home}
        for item in self.config.get("Env") or []:
            name, _, value = item.partition("=")
            env[name] = value
        return {**env, **overrides}

    def argv(self, *command: str) -> list[str]:
        """``command`` run in the container's root as the image's user."""
        chroot = shutil.which("chroot") or "chroot"
        return [chroot, f"--userspec={self.uid}:{self.gid}", str(self.root), *command]

    def entrypoint(self) -> list[str]:
        return list(self.config.get("Entrypoint") or [])

    def healthcheck(self) -> list[str]:
        """The HEALTHCHECK's command as an argv."""
        test: list[str] = self.healthcheck_config["Test"]
        if test[0] == "CMD-SHELL":
            return ["/bin/sh", "-c", test[1]]
        assert "CMD" == test[0], test
        return test[1:]


def passwd_entry(root: Path, user: str) -> tuple[int, int, str]:
    """(uid, gid, home) of ``user`` (a name or a uid[:gid]) in the image's /etc/passwd."""
    name, _, group = user.partition(":")
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if name in (fields[0], fields[2]):
            gid = int(group) if group.isdigit() else int(fields[3])
            return int(fields[2]), gid, fields[5]
    pytest.fail(f"the image's USER {user!r} is not in its /etc/passwd")


@pytest.fixture(scope="module")
def container(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    tool = podman()
    suffix = uuid.uuid4().hex[:12]
    tag, name = f"localhost/probed-test-image:{suffix}", f"probed-test-{suffix}"
    context = build_context(tmp_path_factory.mktemp("context"))
    volumes = ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.is_file() else []
    created = False
    try:
        started = time.monotonic()
        run(
            [tool, "build", "--isolation=chroot", "--network=host", "--format=docker",
             "--layers=false", "--force-rm", "--pull=never", f"--build-arg=BASE={base_image}",
             *volumes, "--tag", tag, str(context)],
            timeout=1200,
        )  # fmt: skip
        print(f"image {tag}: built in {time.monotonic() - started:.0f} s")
        (inspected,) = json.loads(run([tool, "image", "inspect", tag]).stdout)
        run([tool, "create", "--name", name, tag])
        created = True
        root = Path(run([tool, "mount", name]).stdout.strip())
        try:
            config = inspected["Config"]
            health = config.get("Healthcheck") or inspected.get("Healthcheck") or {}
            uid, gid, home = passwd_entry(root, config.get("User") or "root")
            yield Container(tag, config, health, root, uid, gid, home)
        finally:
            run([tool, "umount", name])
    finally:
        if created:
            subprocess.run([tool, "rm", "--force", name], capture_output=True, timeout=120)
        subprocess.run([tool, "rmi", "--force", tag], capture_output=True, timeout=120)


def ready_status(port: int, deadline: float) -> int:
    """GET /-/ready over loopback until it answers 200 or ``deadline`` passes: its last status."""
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=10) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as exc:
            if time.monotonic() > deadline:
                return exc.code
        time.sleep(0.3)


def test_the_image_runs_as_the_unprivileged_probed_user(container: Container) -> None:
    """The image's config: USER probed (uid and gid 10115 in its passwd), the HEALTHCHECK."""
    assert container.config["User"] in ("probed", str(IMAGE_UID), f"{IMAGE_UID}:{IMAGE_UID}")
    assert (IMAGE_UID, IMAGE_UID, "/var/lib/probed") == (
        container.uid, container.gid, container.home,
    )  # fmt: skip
    assert ["probed", "healthcheck", "--timeout", "3"] == container.healthcheck()
    assert "10115/tcp" in container.config.get("ExposedPorts", {})


def test_check_loads_the_shipped_config(container: Container) -> None:
    """The image ships the repository's starter config at PROBED_CONFIG, and it loads."""
    env = container.env()
    assert "/etc/probed/probes.toml" == env["PROBED_CONFIG"]
    shipped = container.root / "etc" / "probed" / "probes.toml"
    assert (ROOT / "probes.toml").read_text() == shipped.read_text()
    argv = container.argv(*container.entrypoint(), "check")
    check = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert (0, "") == (check.returncode, check.stderr)
    assert check.stdout.startswith("/etc/probed/probes.toml: OK (")


def test_run_becomes_healthy_as_uid_10115_and_stops_cleanly(
    container: Container, tmp_path: Path
) -> None:
    """ENTRYPOINT + CMD serve; the HEALTHCHECK says healthy; SIGTERM ends it with status 0."""
    port = free_port()
    env = container.env(PROBED_DAEMON__LISTEN=f"127.0.0.1:{port}")
    command = [*container.entrypoint(), *(container.config.get("Cmd") or [])]
    assert ["probed", "run"] == command
    health = container.argv(*container.healthcheck())
    log = tmp_path / "daemon.log"
    with log.open("wb") as sink:
        daemon = subprocess.Popen(
            container.argv(*command), env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
    try:
        deadline = time.monotonic() + 30  # busy 2-core machines; the image allows 10 s + retries
        while True:
            check = subprocess.run(
                health, env=env, capture_output=True, text=True, timeout=30, check=False
            )
            if check.returncode == 0 or daemon.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert (0, "") == (check.returncode, check.stderr), log.read_text()[-3000:]
        assert 200 == ready_status(port, deadline)  # probes scheduled, state dir writable
        status = (Path("/proc") / str(daemon.pid) / "status").read_text()
        ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines()}
        assert [str(IMAGE_UID)] * 4 == ids["Uid"]
        assert [str(IMAGE_UID)] * 4 == ids["Gid"]
        assert set(ids["Groups"]) <= {str(IMAGE_UID)}  # none of root's groups
        assert "probed" in " ".join(ids["Name"])  # chroot exec'd the daemon itself
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=30)
    assert 0 == daemon.returncode, log.read_text()[-3000:]
    after = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert 1 == after.returncode
    assert after.stderr.startswith(f"probed healthcheck: http://127.0.0.1:{port}/-/healthy: ")
    state = container.root / "var" / "lib" / "probed"
    owners = {path.stat().st_uid for path in state.rglob("*")}
    assert {IMAGE_UID} == owners, sorted(state.rglob("*"))
