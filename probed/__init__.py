"""probed: a synthetic probing daemon for web products.

It runs HTTP, login, fixture (and, later, stream) probes on a fixed-rate
schedule, exports the results as Prometheus metrics and logs each run as one
JSON line.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
