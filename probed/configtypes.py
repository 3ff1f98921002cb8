"""Small validated field types of the configuration, shared by its sections and probes.

A secret reference (``{ env = "NAME" }``, ``{ file = "/path" }`` or ``{ credential =
"name" }``) and the headers that may hold one, the ``HOST:PORT`` listen address, a JSON
assertion, an absolute request path, the redirect mode and the shard. ``probed.config`` re-exports
those the rest of probed uses; the base models and helpers serve the config modules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal

from probed.configchecks import credential_name_problem
from probed.errors import SecretError
from probed.model import (
    BeforeValidator,
    Field,
    Model,
    PlainValidator,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from probed.shard import Shard

__all__ = [
    "API_READ",
    "API_WRITE",
    "BACKGROUND_JOBS",
    "CONSOLE_ADMIN",
    "DEFAULT_COMPONENTS",
    "DEFAULT_LISTEN",
    "DEFAULT_PORT",
    "HEADER_NAME",
    "PROBE_NAME",
    "SSE_STREAM",
    "HasHeaders",
    "HeaderValue",
    "JsonAssertion",
    "RedirectMode",
    "SecretRef",
    "ShardValue",
    "StrictModel",
    "check_abs_path",
    "reject_inline_secret",
    "split_listen",
]

#: 9100-9999 is fully allocated to exporters; 10115 is outside it, not taken by a
#: known exporter, and easy to remember next to blackbox_exporter's 9115.
DEFAULT_PORT = 10115
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"


class StrictModel(Model):
    """A section or table of the file: unknown keys refused, frozen once loaded."""


class SecretRef(StrictModel):
    """Where to read a secret: exactly one of ``env``, ``file`` or ``credential``."""

    env: str | None = None
    file: Path | None = None
    credential: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "credential") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a secret needs exactly one of 'env', 'file' or 'credential', "
                f"got {', '.join(given) or 'none'}"
            )
        return self

    def describe(self) -> str:
        """Name the source without revealing the value (for error messages)."""
        if self.env is not None:
            return f"environment variable {self.env}"
        if self.file is not None:
            return f"file {self.file}"
        return f"credential {self.credential!r} in $CREDENTIALS_DIRECTORY"

    def read(self, environ: Mapping[str, str], base_dir: Path) -> SecretStr:
        """Read the secret now; raise ``SecretError`` naming the source if missing or empty."""
        if self.env is not None:
            value = environ.get(self.env)
            if value is None:
                raise SecretError(f"environment variable {self.env} is not set")
        else:
            if self.file is not None:
                if "\0" in str(self.file):
                    raise SecretError(f"file name {str(self.file)!r} contains a NUL byte")
                path = self.file if self.file.is_absolute() else base_dir / self.file
            else:
                if problem := credential_name_problem(str(self.credential)):
                    raise SecretError(problem)
                cred_dir = environ.get("CREDENTIALS_DIRECTORY")
                if not cred_dir:
                    raise SecretError(
                        f"credential {self.credential!r} requested but $CREDENTIALS_DIRECTORY "
                        "is not set (use LoadCredential= in the systemd unit)"
                    )
                path = Path(cred_dir) / str(self.credential)
            try:
                value = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from None
        if not value:
            raise SecretError(f"{self.describe()} is empty")
        return SecretStr(value)


HeaderValue = str | SecretRef


def reject_inline_secret(value: object) -> object:
    """Refuse a secret written in the file (a string) before it is read as a ``SecretRef``."""
    if isinstance(value, str):
        raise ValueError(
            'inline secrets are not accepted; write { env = "NAME" }, '
            '{ file = "/path" } or { credential = "name" }'
        )
    return value


class HasHeaders(StrictModel):
    """A model with ``headers`` whose values may be secret references, resolved at load."""

    headers: dict[str, HeaderValue] = Field(default_factory=dict)
    _resolved_headers: dict[str, str] = PrivateAttr(default_factory=dict)

    def secret_refs(self) -> Iterable[tuple[str, SecretRef]]:
        """Yield (key path, reference) for every secret this model needs."""
        for name, value in self.headers.items():
            if isinstance(value, SecretRef):
                yield f"headers.{name}", value

    def resolved_headers(self) -> dict[str, str]:
        """Headers with secret references replaced by their values."""
        return dict(self._resolved_headers)

    def resolved_secrets(self) -> dict[str, str]:
        """Each resolved secret value by key path (``headers.NAME``, ``password``)."""
        return {
            f"headers.{name}": self._resolved_headers.get(name, "")
            for name, value in self.headers.items()
            if isinstance(value, SecretRef)
        }

    def _store_secret(self, key: str, value: SecretStr) -> None:
        if key.startswith("headers."):
            self._resolved_headers[key.removeprefix("headers.")] = value.get_secret_value()

    def _finish_headers(self) -> None:
        for name, value in self.headers.items():
            if isinstance(value, str):
                self._resolved_headers[name] = value


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[V6]:PORT``) as (host without brackets, port); ValueError if not."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen must be HOST:PORT (e.g. {DEFAULT_LISTEN!r}), got {listen!r}")
    return host.strip("[]"), int(port)


PROBE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
"""A probe, stream or SLO name: it becomes a metric label."""
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
"""An HTTP field name (RFC 9110 token)."""


class JsonAssertion(StrictModel):
    """Check one value in a JSON body: ``path`` exists, and equals ``equals`` if given."""

    path: str
    equals: str | int | float | bool | None = None
    exists: bool = True

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value or any(not part for part in value.split(".")):
            raise ValueError(f"path must be dotted keys like 'data.status', got {value!r}")
        return value


def check_abs_path(value: str) -> str:
    """``value`` if it is an absolute request path; ValueError if not."""
    if not value.startswith("/"):
        raise ValueError(f"path must start with '/', got {value!r}")
    return value


def _redirect_mode(value: object) -> object:
    # the former boolean: true stays on the target's origin, false follows nothing
    if isinstance(value, bool):
        return "same-origin" if value else "none"
    return value


#: Where a probe follows redirects (``probed.probes.redirects`` enforces it per hop).
RedirectMode = Annotated[
    Literal["same-origin", "same-host", "any", "none"], BeforeValidator(_redirect_mode)
]


def _shard(value: object) -> Shard:
    if isinstance(value, Shard):
        return value
    if not isinstance(value, str):
        raise ValueError(
            f'a shard is a string "i/n", shard i of n counted from 0 (e.g. "0/3"), got {value!r}'
        )
    return Shard.parse(value)


#: ``[daemon] shard``: ``"i/n"`` in the file and the environment, a ``Shard`` in the model.
ShardValue = Annotated[Shard, PlainValidator(_shard)]


API_READ = "API Read"
API_WRITE = "API Write"
SSE_STREAM = "SSE Stream"
BACKGROUND_JOBS = "Background Jobs"
CONSOLE_ADMIN = "Console/Admin"
#: The status page's components when the config names none; each kind model says which
#: of them its probes join (``component()``).
DEFAULT_COMPONENTS: tuple[str, ...] = (
    API_READ,
    API_WRITE,
    SSE_STREAM,
    BACKGROUND_JOBS,
    CONSOLE_ADMIN,
)
