"""Reading a config file safely: regular files only, bounded size, UTF-8, bounded nesting.

The daemon reloads on SIGHUP from whatever the path then names. A path that
points at ``/dev/zero`` must not fill memory, a FIFO must not block, a huge or
deeply nested file must not freeze or crash the daemon: each is a one-line
:class:`~probed.errors.ConfigError` naming the file (and the line where one
applies), and the running config stays.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

from probed.errors import ConfigError

__all__ = [
    "MAX_CONFIG_BYTES",
    "config_digest",
    "decode_config_text",
    "parse_toml",
    "read_config_bytes",
    "read_config_text",
]

MAX_CONFIG_BYTES = 4 << 20
"""Largest config file read (4 MiB: thousands of probes)."""


def config_digest(data: bytes) -> str:
    """How status pages name a config: the first 12 hex digits of the bytes' sha256."""
    return hashlib.sha256(data).hexdigest()[:12]


def read_config_text(path: Path, what: str = "config file") -> str:
    """The file's text; ``ConfigError`` unless it is a readable regular UTF-8 file ≤ 4 MiB.

    ``what`` names the file in the messages (``"web config file"``).
    """
    return decode_config_text(read_config_bytes(path, what), path)


def read_config_bytes(path: Path, what: str = "config file") -> bytes:
    """The file's bytes; ``ConfigError`` unless it is a readable regular file ≤ 4 MiB."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not hang before fstat can refuse it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read {what}: {exc.strerror}"]) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError([f"{path}: cannot read {what}: not a regular file"])
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read {what}: {exc.strerror}"]) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: {what} larger than {MAX_CONFIG_BYTES >> 20} MiB"])
    return data


def decode_config_text(data: bytes, path: Path) -> str:
    """``data`` as UTF-8; ``ConfigError`` naming the line of the first invalid byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        raise ConfigError(
            [f"{path}:{line}: not valid UTF-8 (byte 0x{byte:02x}); save the file as UTF-8"]
        ) from None


def parse_toml(text: str, path: Path) -> dict[str, Any]:
    """Parse ``text`` as TOML; ``ConfigError`` naming the line, or the nesting, on failure."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = f":{where.group(1)}" if where else ""
        raise ConfigError([f"{path}{line}: invalid TOML: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{path}: invalid TOML: arrays or tables nested too deeply"]) from None
