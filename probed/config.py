"""Configuration: ``probes.toml`` plus ``PROBED_…`` environment overrides.

The file has three parts::

    [daemon]            listen address, location label, state dir, logging, concurrency
    [targets.NAME]      base URL and default headers of a system under test
    [[probes]]          one table per probe; ``kind`` selects the model

Environment variables override the file (``probed.configoverrides``), with
``__`` between nesting levels: ``PROBED_DAEMON__LISTEN=0.0.0.0:10115``,
``PROBED_TARGETS__DEMO__BASE_URL=https://staging.example``.

Every problem is reported at once, each naming the file, the line, the probe
(or section) and the key, for example::

    probes.toml:14: probe 'login' (probes[1]) key 'timeout': timeout 30s must be
    shorter than interval 15s

Secrets are never written in the file: a secret is a table naming where to read
it (``{ env = "NAME" }``, ``{ file = "/path" }`` or ``{ credential = "name" }``
for systemd's ``LoadCredential=``), resolved once at load time into a
``SecretStr``.

This module is the one to import from; the work is done in rooms of its own:

- ``probed.configtypes``: small validated field types (secret references, headers,
  the listen address, JSON assertions, the redirect mode);
- ``probed.configprobes``: the probe and stream models, one per ``kind``;
- ``probed.configsettings``: the other sections and the ``Config`` class;
- ``probed.configoverrides``: reading the ``PROBED_…`` overrides from the environment;
- ``probed.configload``: reading and validating the file, reporting the models' errors;
- ``probed.configproblems``: the checks across fields and sections one model cannot make.
"""

from __future__ import annotations

from probed.configload import load_config
from probed.configprobes import (
    KINDS,
    MODEL_OF_KIND,
    PROBE_MODELS,
    SPEC_MODELS,
    AnySpec,
    FixtureProbe,
    FollowUp,
    HttpProbe,
    ImportProbe,
    LoginProbe,
    ProbeSpec,
    ReflectProbe,
    SseStream,
)
from probed.configsettings import (
    SLO_WINDOWS,
    AlertingConfig,
    ComponentConfig,
    Config,
    DaemonConfig,
    RecommendConfig,
    SloConfig,
    TargetConfig,
    default_components,
)
from probed.configtypes import (
    DEFAULT_COMPONENTS,
    DEFAULT_LISTEN,
    DEFAULT_PORT,
    JsonAssertion,
    RedirectMode,
    SecretRef,
    split_listen,
)
from probed.durations import Duration, format_duration
from probed.fleetconfig import FleetConfig

__all__ = [
    "DEFAULT_COMPONENTS",
    "DEFAULT_LISTEN",
    "DEFAULT_PORT",
    "KINDS",
    "MODEL_OF_KIND",
    "PROBE_MODELS",
    "SLO_WINDOWS",
    "SPEC_MODELS",
    "AlertingConfig",
    "AnySpec",
    "ComponentConfig",
    "Config",
    "DaemonConfig",
    "Duration",
    "FixtureProbe",
    "FleetConfig",
    "FollowUp",
    "HttpProbe",
    "ImportProbe",
    "JsonAssertion",
    "LoginProbe",
    "ProbeSpec",
    "RecommendConfig",
    "RedirectMode",
    "ReflectProbe",
    "SecretRef",
    "SloConfig",
    "SseStream",
    "TargetConfig",
    "default_components",
    "format_duration",
    "load_config",
    "split_listen",
]
