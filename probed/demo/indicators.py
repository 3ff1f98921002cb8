"""The demo target's AI indicators endpoint: ``POST /v1/indicators``.

SMA(5), EMA(10) and RSI(14) of a series of closes, deterministic to the bit, and
the shipped input (``fixtures/indicators.json``) probes post to it.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from probed.demo.jsonio import bad_request, is_number, json_response

__all__ = ["compute_indicators", "load_indicators_fixture", "routes"]

_MIN_CLOSES: Final = 15
_MAX_CLOSES: Final = 10_000
_MAX_SYMBOL: Final = 32


def _round(value: float) -> float:
    return round(value, 6) + 0.0  # + 0.0 turns -0.0 into 0.0


def _sma(closes: list[float], period: int) -> list[float]:
    return [
        _round(math.fsum(closes[end - period : end]) / period)
        for end in range(period, len(closes) + 1)
    ]


def _ema(closes: list[float], period: int) -> list[float]:
    alpha = 2.0 / (period + 1)
    ema = math.fsum(closes[:period]) / period
    out = [ema]
    for close in closes[period:]:
        ema = alpha * close + (1.0 - alpha) * ema
        out.append(ema)
    return [_round(value) for value in out]


def _rsi(closes: list[float], period: int) -> float:
    """Wilder's RSI over the whole series; 100 with no losses, 50 when flat."""
    changes = [b - a for a, b in itertools.pairwise(closes)]
    gains = [max(change, 0.0) for change in changes]
    losses = [max(-change, 0.0) for change in changes]
    avg_gain = math.fsum(gains[:period]) / period
    avg_loss = math.fsum(losses[:period]) / period
    for gain, loss in zip(gains[period:], losses[period:], strict=True):
        avg_gain = (avg_gain * (period - 1) + gain) / period
        avg_loss = (avg_loss * (period - 1) + loss) / period
    if avg_loss == 0.0:
        return 100.0 if avg_gain > 0.0 else 50.0
    return _round(100.0 - 100.0 / (1.0 + avg_gain / avg_loss))


def compute_indicators(payload: Mapping[str, Any]) -> dict[str, Any]:
    """SMA(5), EMA(10) and RSI(14) of ``payload["closes"]``, floats rounded to 6 places.

    ``payload`` is ``{"symbol": str, "closes": [number, ...]}`` with 15 to 10,000
    finite closes; other keys are ignored. ``sma_5`` and ``ema_10`` end at each
    close from the 5th (10th) on; the EMA starts from the SMA of the first 10.
    Raises ``ValueError`` on invalid input. Same input, same output, always.
    """
    if not isinstance(payload, Mapping):
        raise ValueError("body must be a JSON object with 'symbol' and 'closes'")
    symbol = payload.get("symbol")
    if not isinstance(symbol, str) or not 0 < len(symbol) <= _MAX_SYMBOL:
        raise ValueError(f"'symbol' must be a string of 1 to {_MAX_SYMBOL} characters")
    raw = payload.get("closes")
    if not isinstance(raw, list) or not _MIN_CLOSES <= len(raw) <= _MAX_CLOSES:
        raise ValueError(f"'closes' must be a list of {_MIN_CLOSES} to {_MAX_CLOSES} numbers")
    closes: list[float] = []
    for index, value in enumerate(raw):
        if not is_number(value) or not math.isfinite(value):
            raise ValueError(f"'closes[{index}]' must be a finite number, got {value!r}")
        closes.append(float(value))
    return {
        "symbol": symbol,
        "indicators": {
            "sma_5": _sma(closes, 5),
            "ema_10": _ema(closes, 10),
            "rsi_14": _rsi(closes, 14),
        },
    }


def load_indicators_fixture() -> dict[str, Any]:
    """The shipped input for ``POST /v1/indicators`` (``fixtures/indicators.json``)."""
    text = (Path(__file__).parent / "fixtures" / "indicators.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


async def _indicators(request: web.Request) -> web.Response:
    try:
        body: object = await request.json()
    except (ValueError, UnicodeDecodeError):
        return bad_request("body is not valid JSON")
    try:
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object with 'symbol' and 'closes'")
        result = compute_indicators(body)
    except ValueError as exc:
        return bad_request(str(exc))
    return json_response(result)


def routes() -> list[web.RouteDef]:
    """``POST /v1/indicators``."""
    return [web.post("/v1/indicators", _indicators)]
