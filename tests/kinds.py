"""One config with a probe of every kind, shared by the tests that need each kind once.

``tests/test_registry.py`` checks it names every kind, so a new kind cannot be missed.
"""

from __future__ import annotations

__all__ = ["ALL_KINDS_TOML"]

ALL_KINDS_TOML = """
[targets.demo]
base_url = "http://127.0.0.1:1"

[[probes]]
name = "health"
kind = "http"
target = "demo"

[[probes]]
name = "head_check"
kind = "http"
target = "demo"
method = "HEAD"

[[probes]]
name = "create_deal"
kind = "http"
target = "demo"
method = "POST"
expect_status = [201]

[[probes]]
name = "login"
kind = "login"
target = "demo"
username = "probe@demo.example"
password = { env = "STATUS_TEST_PASSWORD" }

[[probes]]
name = "indicators"
kind = "fixture"
target = "demo"
input_file = "input.json"
expected_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[[probes]]
name = "events"
kind = "sse"
target = "demo"

[[probes]]
name = "reflect"
kind = "reflect"
target = "demo"
stream = "events"

[[probes]]
name = "import_trades"
kind = "import"
target = "demo"
"""
