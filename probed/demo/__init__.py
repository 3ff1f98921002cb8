"""The built-in demo target: a small product to probe, with fault knobs.

``DemoTarget`` serves the seeds' product shape (health endpoints, login,
``/api/me``, ``/v1/indicators``, the SSE and WebSocket event streams, the
outbox and import jobs) on loopback; ``Faults`` makes it slow, rate limited,
failing or unreachable, and its streams late, lossy, duplicating, reordering,
stalling or skewed, so tests and operators can rehearse incidents.
"""

from __future__ import annotations

from probed.demo.faults import Faults
from probed.demo.target import DemoTarget

__all__ = ["DemoTarget", "Faults"]
