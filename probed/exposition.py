"""The Prometheus text format and OpenMetrics without the per-sample object tax.

prometheus_client builds a ``Sample`` with a labels dict for every sample, then sorts,
escapes and formats each one on every scrape: 250-300 ms of CPU for the ~40,000 samples
of 500 streams and 200 probes, twice that for OpenMetrics (``bench/scrape_stall.py``).
Yet almost nothing of that text changes between two scrapes: only the numbers do. So
the families are written once, against a :class:`Writer`, and two writers read them:

* :class:`MetricWriter` builds prometheus_client's metric families, for its registry and
  encoders (``ProbedCollector.collect``): the reference, and what odd Accept headers get;
* :class:`TextWriter` writes the exposition itself from a :class:`LabelCache`, which
  keeps, for the series of the last scrape, each one's line prefix (``name{labels} ``,
  escaped, sorted, UTF-8) and, per gauge or counter family, the family's whole text with
  a ``%`` slot per value: a scrape formats the numbers only (a family of ints in a
  single C call). Prefixes are keyed by label values, so a renamed probe or a new target
  is simply a new key, and a family's text is rebuilt when its series change (a reload,
  a series that comes or goes); series that went are forgotten then. A histogram
  series' entry holds its bucket lines for its bounds (rebuilt when they change: a
  reloaded ``lag_buckets``) and its last text, reused while its counts and sum stay the
  same (a quiet stream's connect durations).

The output is prometheus_client's, byte for byte (``tests/test_exposition.py`` holds it
to ``generate_latest`` and OpenMetrics' ``generate_latest`` on a large store): the same
``# HELP``/``# TYPE`` lines and help escaping, labels sorted by name and their values
escaped (backslash, newline, double quote), ``floatToGoString``'s numbers (``+Inf``,
``NaN``, Go's exponent from 1e6 up), ``_bucket`` lines then ``_count`` and ``_sum``, no
``_count``/``_sum`` when the first bound is negative. Names are checked where a family is
declared: plain ``[a-zA-Z_][a-zA-Z0-9_]*``, which no escaping scheme the fast path serves
changes. Content negotiation stays prometheus_client's (:func:`negotiate`): the fast path
answers the text format and OpenMetrics 1.x with ``underscores`` or ``allow-utf-8``
escaping (what Prometheus 2 and 3 ask for); any other choice (``dots`` or ``values``
escaping, which rename, or OpenMetrics 2) goes to prometheus_client's encoder as before.
OpenMetrics is not optional here: Prometheus asks for it first (2.42 sends ``Accept:
application/openmetrics-text;version=1.0.0,...;text/plain;version=0.0.4;q=0.5,...``) and
prometheus_client's negotiation honours that, so a text-only fast path would never serve
Prometheus itself. The two differ only in the ``# HELP``/``# TYPE`` lines (a counter's
family name without ``_total``, help with ``"`` escaped too) and the final ``# EOF``.

Pure: no I/O, no clock, no aiohttp.
"""

from __future__ import annotations

import enum
import re
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from itertools import accumulate, chain
from typing import Literal, Protocol

from prometheus_client import exposition as text_format
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString, parse_version

from probed.records import record

__all__ = [
    "GZIP_BACKEND",
    "Buckets",
    "Family",
    "Format",
    "LabelCache",
    "Labels",
    "MetricWriter",
    "Negotiated",
    "TextWriter",
    "Writer",
    "compress",
    "format_value",
    "negotiate",
    "render",
]

Labels = tuple[str, ...]
"""The label values of one series, in the order of its family's label names."""

Kind = Literal["gauge", "counter", "histogram"]

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NO_LABELS: tuple[Labels] = ((),)
_LOW, _HIGH = -1e15, 1e6
"""Between these, an int is written ``N.0`` and a float as its ``repr``: floatToGoString's
own result (it switches to Go's exponent form from 1e6 up; ints are exact below 1e15)."""
_go: Callable[[float], str] = floatToGoString
"""prometheus_client's number format (untyped there)."""
GZIP_LEVEL = 1
"""Fast: about 15x smaller than the text for a few ms (``bench/scrape_stall.py``)."""
_deflate: Callable[..., bytes]
try:
    # Intel's ISA-L: 1.3 ms of CPU for a big daemon's 2.5 MB against zlib's 6.5, for the
    # same 157 kB (``bench/scrape_stall.py``); both let go of the GIL while they work
    from isal.isal_zlib import compress as _deflate

    GZIP_BACKEND = "isal"
except ImportError:  # a machine ISA-L has no wheel for (pyproject.toml's marker)
    _deflate = zlib.compress
    GZIP_BACKEND = "zlib"
_GZIP_WBITS = 31
"""A gzip member (16 + the 32 KiB window), with no file name and mtime 0 in its header."""


class Format(enum.Enum):
    """The two exposition formats the fast path writes."""

    TEXT = "text"
    """The Prometheus text format, 0.0.4 (1.0.0 is the same bytes for plain names)."""
    OPENMETRICS = "openmetrics"
    """OpenMetrics 1.0 text, without the final ``# EOF`` (the caller ends the body)."""


class Buckets(Protocol):
    """A classic cumulative histogram (``probed.store.Histogram``)."""

    @property
    def bounds(self) -> tuple[float, ...]:
        """Upper bounds, increasing (``+Inf`` is implied)."""

    @property
    def counts(self) -> Sequence[int]:
        """Observations per bucket (not cumulative, never negative), the last one above
        every bound."""

    @property
    def sum(self) -> float:
        """The sum of the observations."""

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs ending with ``+Inf``."""


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _le(bound: float) -> str:
    """A bucket's ``le`` value, as ``Histogram.cumulative`` writes it."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Family:
    """One metric family: its name, type, help and label names (checked here, once)."""

    __slots__ = ("_encoded", "_headers", "help", "kind", "labels", "name", "sample")

    def __init__(self, name: str, kind: Kind, help: str, labels: Sequence[str] = ()) -> None:
        if not _NAME.fullmatch(name) or (kind == "counter" and name.endswith("_total")):
            raise ValueError(f"metric name {name!r} would be changed by an encoder")
        for label in labels:
            reserved = label.startswith("__") or (kind == "histogram" and label == "le")
            if not _NAME.fullmatch(label) or reserved:
                raise ValueError(f"label name {label!r} of {name} is not allowed")
        self.name, self.kind, self.help, self.labels = name, kind, help, tuple(labels)
        self.sample = f"{name}_total" if kind == "counter" else name
        """The name of its samples (counters: ``_total``; histograms add suffixes)."""
        om_help = _escape(help)
        text_help = help.replace("\\", r"\\").replace("\n", r"\n")
        self._headers = {
            Format.TEXT: f"# HELP {self.sample} {text_help}\n# TYPE {self.sample} {kind}\n",
            Format.OPENMETRICS: f"# HELP {name} {om_help}\n# TYPE {name} {kind}\n",
        }
        self._encoded = {fmt: header.encode() for fmt, header in self._headers.items()}

    @classmethod
    def gauge(cls, name: str, help: str, *labels: str) -> Family:
        """A gauge family."""
        return cls(name, "gauge", help, labels)

    @classmethod
    def counter(cls, name: str, help: str, *labels: str) -> Family:
        """A counter family (``name`` without ``_total``; its samples have it)."""
        return cls(name, "counter", help, labels)

    @classmethod
    def histogram(cls, name: str, help: str, *labels: str) -> Family:
        """A histogram family (``le`` is added to its bucket samples)."""
        return cls(name, "histogram", help, labels)

    def header(self, fmt: Format) -> bytes:
        """The ``# HELP`` and ``# TYPE`` lines in ``fmt``, UTF-8 encoded."""
        return self._encoded[fmt]

    def prefix(self, key: Labels, *, sample: str = "", le: str | None = None) -> bytes:
        """``name{labels} ``: a sample line up to its value (``sample``: a name suffix),
        UTF-8 encoded."""
        pairs = list(zip(self.labels, key, strict=True))
        if le is not None:
            pairs.append(("le", le))
        inner = ",".join(f'{name}="{_escape(value)}"' for name, value in sorted(pairs))
        line = f"{self.sample}{sample}{{{inner}}} " if inner else f"{self.sample}{sample} "
        return line.encode()

    def __repr__(self) -> str:
        return f"Family({self.name!r}, {self.kind!r})"


class Writer(ABC):
    """Where a collector writes its families, one whole family per call, in order."""

    @abstractmethod
    def samples(self, family: Family, keys: Sequence[Labels], values: Sequence[float]) -> None:
        """A gauge or counter family: one sample per key (label values), ``values`` alike."""

    @abstractmethod
    def histograms(self, family: Family, keys: Sequence[Labels], hists: Sequence[Buckets]) -> None:
        """A histogram family: one histogram per key."""

    def value(self, family: Family, value: float) -> None:
        """A family of one unlabelled sample."""
        self.samples(family, _NO_LABELS, (value,))

    def present(self, family: Family, items: Iterable[tuple[Labels, float | None]]) -> None:
        """A gauge or counter family of the (key, value) items whose value is not None."""
        pairs = [(key, value) for key, value in items if value is not None]
        self.samples(family, [key for key, _ in pairs], [value for _, value in pairs])


def _check(family: Family, histogram: bool) -> None:
    if (family.kind == "histogram") != histogram:
        raise TypeError(f"{family!r} written as a {'histogram' if histogram else 'sample'}")


class MetricWriter(Writer):
    """Builds prometheus_client's metric families (for its registry and encoders)."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def samples(self, family: Family, keys: Sequence[Labels], values: Sequence[float]) -> None:
        _check(family, histogram=False)
        metric: GaugeMetricFamily | CounterMetricFamily
        if family.kind == "counter":
            metric = CounterMetricFamily(family.name, family.help, labels=family.labels)
        else:
            metric = GaugeMetricFamily(family.name, family.help, labels=family.labels)
        for key, value in zip(keys, values, strict=True):
            metric.add_metric(key, value)
        self.metrics.append(metric)

    def histograms(self, family: Family, keys: Sequence[Labels], hists: Sequence[Buckets]) -> None:
        _check(family, histogram=True)
        metric = HistogramMetricFamily(family.name, family.help, labels=family.labels)
        for key, hist in zip(keys, hists, strict=True):
            metric.add_metric(key, hist.cumulative(), sum_value=hist.sum)
        self.metrics.append(metric)


def _lines(values: Sequence[float]) -> list[bytes]:
    """Each value as floatToGoString writes it, with the line's newline."""
    return [
        b"%d.0\n" % v
        if v.__class__ is int and _LOW < v < _HIGH
        else (b"%r\n" % v if v.__class__ is float and _LOW < v < _HIGH else _line(v))
        for v in values
    ]


def _line(value: float) -> bytes:
    """floatToGoString's text of ``value`` with a newline, Unix times (1e6 to 1e16, whose
    ``repr`` has no exponent yet) without a call into prometheus_client."""
    if value.__class__ is float and _HIGH <= value < 1e16:
        text = repr(value)
        dot = text.index(".")
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}\n".encode()
    return _go(value).encode() + b"\n"


def format_value(value: float) -> str:
    """``value`` as prometheus_client writes a sample's value (``floatToGoString``)."""
    return _lines((value,))[0][:-1].decode()


class _HistogramLines:
    """The cached lines of one histogram series, for one layout of bounds, and the text
    of its last scrape with the counts it was made of (most histograms of a quiet
    series, a stream's connect durations say, do not change between two scrapes)."""

    __slots__ = ("bounds", "buckets", "count", "counts", "small", "sum", "sum_line", "text")

    def __init__(self, family: Family, key: Labels, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        les = [_le(bound) for bound in bounds] + ["+Inf"]
        # tuples, not lists: a young collection untracks a tuple of bytes or ints, so a
        # full one walks a series as one object (a soak's 1,206 series held 10,854 references)
        self.buckets = tuple([family.prefix(key, sample="_bucket", le=le) for le in les])
        # prometheus_client leaves _count and _sum out after a negative first bucket
        totals = float(les[0]) >= 0
        self.count = family.prefix(key, sample="_count") if totals else b""
        self.sum = family.prefix(key, sample="_sum") if totals else b""
        small = b"".join(prefix.replace(b"%", b"%%") + b"%d.0\n" for prefix in self.buckets)
        if totals:
            small += self.count.replace(b"%", b"%%") + b"%d.0\n"
            small += self.sum.replace(b"%", b"%%") + b"%s"
        self.small = small
        """Every line with ``%d.0`` for counts and ``%s`` for the sum's text: one ``%``
        renders the series while every cumulative count is an int in ``(_LOW, _HIGH)``."""
        self.counts: tuple[int, ...] | None = None
        self.sum_line = b""
        self.text = b""

    def render(self, hist: Buckets) -> bytes:
        counts = hist.counts
        total_sum = hist.sum
        sum_line = (
            b"%r\n" % total_sum
            if total_sum.__class__ is float and _LOW < total_sum < _HIGH
            else _lines((total_sum,))[0]
        )
        kept = tuple(counts)
        if self.counts == kept and self.sum_line == sum_line:
            return self.text  # the same counts and the same sum's text: the same lines
        self.counts, self.sum_line = kept, sum_line
        self.text = text = self._render(counts, sum_line)
        return text

    def _render(self, counts: Sequence[int], sum_line: bytes) -> bytes:
        cumulative = list(accumulate(counts))
        total = cumulative[-1]
        if not self.count:
            return b"".join(chain.from_iterable(zip(self.buckets, _lines(cumulative), strict=True)))
        # counts are never negative (Buckets), so the cumulative ones rise to the total
        if total < _HIGH and cumulative[0] >= 0:
            return self.small % (*cumulative, total, sum_line)
        lines = _lines(cumulative)
        return b"".join(
            (*chain.from_iterable(zip(self.buckets, lines, strict=True)), self.count, lines[-1])
        ) + (self.sum + sum_line)


class _SampleLines:
    """The cached lines of one gauge or counter family: each series' prefix, and the
    family's text with a ``%`` slot for every value, for the series of the last scrape."""

    __slots__ = ("_ints", "_strs", "keys", "prefixes")

    def __init__(self) -> None:
        self.keys: tuple[Labels, ...] = ()
        self.prefixes: dict[Labels, bytes] = {}
        self._ints: bytes | None = None
        self._strs: bytes | None = None

    def relabel(self, family: Family, keys: tuple[Labels, ...]) -> None:
        """Series came or went (a reload, an optional series): lines for ``keys``."""
        known = self.prefixes
        self.prefixes = {key: known.get(key) or family.prefix(key) for key in keys}
        self.keys = keys  # a tuple of tuples of str: untracked once its items are
        self._ints = self._strs = None

    def _template(self, slot: bytes) -> bytes:
        prefixes = self.prefixes
        return b"".join(prefixes[key].replace(b"%", b"%%") + slot for key in self.keys)

    def render(self, values: Sequence[float]) -> bytes:
        if set(map(type, values)) == {int} and _LOW < min(values) and max(values) < _HIGH:
            if self._ints is None:
                self._ints = self._template(b"%d.0\n")
            return self._ints % tuple(values)  # every number formatted in one C call
        if self._strs is None:
            self._strs = self._template(b"%s")
        return self._strs % tuple(_lines(values))


class LabelCache:
    """The lines of every series of the last scrape, by family and label values.

    Kept by the registry across scrapes. ``lock`` serialises the scrapes that use it (two
    worker threads at once would otherwise prune each other's entries).
    """

    def __init__(self) -> None:
        self._samples: dict[Family, _SampleLines] = {}
        self._histograms: dict[Family, dict[Labels, _HistogramLines]] = {}
        self.lock = threading.Lock()

    def __len__(self) -> int:
        """Series cached (all families)."""
        return sum(len(lines.prefixes) for lines in self._samples.values()) + sum(
            len(lines) for lines in self._histograms.values()
        )

    def samples(self, family: Family) -> _SampleLines:
        """The cached lines of gauge or counter ``family``."""
        lines = self._samples.get(family)
        if lines is None:
            lines = self._samples[family] = _SampleLines()
        return lines

    def histograms(self, family: Family) -> dict[Labels, _HistogramLines]:
        """The cached lines of histogram ``family``, by series."""
        lines = self._histograms.get(family)
        if lines is None:
            lines = self._histograms[family] = {}
        return lines

    def keep(self, family: Family, keys: Sequence[Labels]) -> None:
        """Forget histogram ``family``'s series other than ``keys`` (those that went)."""
        lines = self._histograms[family]
        if len(lines) > len(keys):
            self._histograms[family] = {key: lines[key] for key in keys}


class TextWriter(Writer):
    """Writes the exposition of the families, UTF-8, from a :class:`LabelCache`.

    Bytes all the way: the prefixes are cached encoded and the numbers formatted as
    bytes, so the body is allocated once (a joined ``str`` then encoded would be two
    buffers of megabytes, which the allocator hands back and faults in again on every
    scrape).
    """

    def __init__(self, cache: LabelCache, fmt: Format) -> None:
        self._cache = cache
        self._format = fmt
        self._parts: list[bytes] = []

    def samples(self, family: Family, keys: Sequence[Labels], values: Sequence[float]) -> None:
        _check(family, histogram=False)
        self._parts.append(family.header(self._format))
        lines = self._cache.samples(family)
        series = keys if isinstance(keys, tuple) else tuple(keys)
        if lines.keys != series:
            lines.relabel(family, series)
        self._parts.append(lines.render(values))

    def histograms(self, family: Family, keys: Sequence[Labels], hists: Sequence[Buckets]) -> None:
        _check(family, histogram=True)
        parts = self._parts
        parts.append(family.header(self._format))
        lines = self._cache.histograms(family)
        for key, hist in zip(keys, hists, strict=True):
            entry = lines.get(key)
            bounds = hist.bounds
            if entry is None or (entry.bounds is not bounds and entry.bounds != bounds):
                entry = lines[key] = _HistogramLines(family, key, bounds)
            parts.append(entry.render(hist))
        self._cache.keep(family, keys)

    def body(self, tail: bytes = b"") -> bytes:
        """Everything written so far, then ``tail``."""
        self._parts.append(tail)
        body = b"".join(self._parts)
        self._parts = [body]
        return body


def render(
    write: Callable[[Writer], None], fmt: Format, cache: LabelCache, *, tail: bytes = b""
) -> bytes:
    """The exposition ``write`` makes of its families in ``fmt``, with ``cache``'s
    prefixes, then ``tail`` (joined in the same pass: the body is megabytes)."""
    with cache.lock:
        writer = TextWriter(cache, fmt)
        write(writer)
        return writer.body(tail)


@record
class Negotiated:
    """What prometheus_client's content negotiation chose for an Accept header."""

    format: Format | None
    """The fast path's format; None: ``encoder`` writes everything."""
    content_type: str
    encoder: Callable[[Collector], bytes]
    """prometheus_client's encoder for that choice (for what the fast path does not write)."""


def negotiate(accept: str) -> Negotiated:
    """prometheus_client's choice for ``accept`` (``choose_encoder``), and whether the fast
    path writes it: text and OpenMetrics 1.x, escaping ``underscores`` or ``allow-utf-8``."""
    encoder, content_type = text_format.choose_encoder(accept)
    return Negotiated(_format_of(encoder), content_type, encoder)


def _format_of(encoder: Callable[..., bytes]) -> Format | None:
    func, keywords = encoder, {}
    if isinstance(encoder, partial):
        if encoder.args:
            return None
        func, keywords = encoder.func, encoder.keywords
    escaping = keywords.get("escaping", openmetrics.UNDERSCORES)
    if escaping not in (openmetrics.UNDERSCORES, openmetrics.ALLOWUTF8):
        return None
    if func is text_format.generate_latest and set(keywords) <= {"escaping"}:
        return Format.TEXT
    if func is openmetrics.generate_latest and set(keywords) <= {"escaping", "version"}:
        version = parse_version(str(keywords.get("version", "1.0.0")))
        return Format.OPENMETRICS if (1, 0, 0) <= version < (2, 0, 0) else None
    return None


def compress(body: bytes) -> bytes:
    """``body`` gzipped at a fast level, by ISA-L where it is installed, else by zlib."""
    return _deflate(body, GZIP_LEVEL, wbits=_GZIP_WBITS)
