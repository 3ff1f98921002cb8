"""The probe kinds and their single registry.

``PROBERS`` maps each ``kind`` of the ``ProbeSpec`` union in ``probed.config`` to
the coroutine that runs it; ``probed.probes.base.run_probe`` calls it with the
probe's own spec model. One kind per module (``http``, ``login``, ``fixture``,
``reflect``, ``import_job`` for ``kind = "import"``); what they share lives in
``exchange`` (one request, status and JSON checks) and the ``probed.http`` room
(session, TLS, redirects). A test keeps the registry and the union's
``kind`` values one list. Stream watchers (``kind = "sse"``) are not in it: they
are long-lived, not interval-run (``probed.stream``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import cast

from probed.probes.base import ProbeFn
from probed.probes.fixture import probe_fixture
from probed.probes.http import probe_http
from probed.probes.import_job import probe_import
from probed.probes.login import probe_login
from probed.probes.reflect import probe_reflect

__all__ = ["PROBERS"]

# Each function takes its own spec model rather than the whole union; run_probe
# dispatches on spec.kind, so the cast is safe (the registry test checks the pairing).
PROBERS: Mapping[str, ProbeFn] = MappingProxyType(
    {
        "fixture": cast(ProbeFn, probe_fixture),
        "http": cast(ProbeFn, probe_http),
        "import": cast(ProbeFn, probe_import),
        "login": cast(ProbeFn, probe_login),
        "reflect": cast(ProbeFn, probe_reflect),
    }
)
