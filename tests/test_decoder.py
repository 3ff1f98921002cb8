"""The SSE decoder follows WHATWG HTML §9.2.6 at any chunking, is bounded, and matches httpx-sse."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pytest
from httpx_sse._decoders import SSEDecoder as RefDecoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import probed.stream.decoder as decoder_module
from probed.stream.decoder import Comment, DecodeError, Event, SSEDecoder

Item = Event | Comment
BOM = b"\xef\xbb\xbf"


def decode(
    chunks: Iterable[bytes], decoder: SSEDecoder | None = None
) -> tuple[list[Item], SSEDecoder]:
    """Feed ``chunks`` then close; return everything yielded and the decoder."""
    decoder = SSEDecoder() if decoder is None else decoder
    items: list[Item] = []
    for chunk in chunks:
        items += decoder.feed(chunk)
    items += decoder.close()
    return items, decoder


def whole(stream: bytes) -> Iterator[list[bytes]]:
    """The stream as one chunk."""
    yield [stream]


def bytewise(stream: bytes) -> Iterator[list[bytes]]:
    """The stream one byte per chunk."""
    yield [stream[i : i + 1] for i in range(len(stream))]


def every_split(stream: bytes) -> Iterator[list[bytes]]:
    """The stream cut in two at every possible point (including both ends)."""
    for cut in range(len(stream) + 1):
        yield [stream[:cut], stream[cut:]]


Feeding = Callable[[bytes], Iterator[list[bytes]]]
FEEDINGS: dict[str, Feeding] = {"whole": whole, "bytewise": bytewise, "splits": every_split}


@dataclass(frozen=True)
class Case:
    """One spec example: the byte stream and what it must decode to."""

    id: str
    stream: bytes
    items: list[Item]
    last_event_id: str = ""
    retry: int | None = None


CASES = [
    Case("lf", b"data: a\n\ndata: b\n\n", [Event("a"), Event("b")]),
    Case("crlf", b"data: a\r\n\r\ndata: b\r\n\r\n", [Event("a"), Event("b")]),
    Case("cr", b"data: a\r\rdata: b\r\r", [Event("a"), Event("b")]),
    Case("mixed-line-ends", b"data: a\r\ndata: b\rdata: c\n\r\n", [Event("a\nb\nc")]),
    Case("crlf-is-one-line-end", b"data: a\r\ndata: b\r\n\r\n", [Event("a\nb")]),
    Case("lf-cr-is-two-line-ends", b"data: a\n\rdata: b\n\n", [Event("a"), Event("b")]),
    Case("cr-at-end-dispatches", b"data: a\n\r", [Event("a")]),
    Case("bom-stripped", BOM + b"data: a\n\n", [Event("a")]),
    Case("bom-stripped-crlf", BOM + b"data: a\r\n\r\n", [Event("a")]),
    Case("second-bom-is-data", BOM + BOM + b"data: a\n\ndata: b\n\n", [Event("b")]),
    Case(
        "bom-later-is-data", b"data: " + BOM + b"x\n\n" + BOM + b"data: y\n\n", [Event("\ufeffx")]
    ),
    Case("multi-line-data", b"data: a\ndata: b\ndata: c\n\n", [Event("a\nb\nc")]),
    Case(
        "one-leading-space-removed", b"data:  two\ndata:none\ndata: \n\n", [Event(" two\nnone\n")]
    ),
    Case("colon-in-value", b"data: a: b:c\n\n", [Event("a: b:c")]),
    Case("data-without-colon", b"data\n\n", [Event("")]),
    Case("empty-data-lines", b"data\ndata\n\n", [Event("\n")]),
    Case("nul-in-data-kept", b"data: a\x00b\n\n", [Event("a\x00b")]),
    Case(
        "comments",
        b": ping\n:\n::x\ndata: a\n: mid-event\n\n",
        [Comment(" ping"), Comment(""), Comment(":x"), Comment(" mid-event"), Event("a")],
    ),
    Case("event-type", b"event: add\ndata: a\n\n", [Event("a", "add")]),
    Case(
        "event-type-reset-after-dispatch",
        b"event: add\ndata: a\n\ndata: b\n\n",
        [Event("a", "add"), Event("b")],
    ),
    Case("empty-event-type", b"event: add\nevent\ndata: a\n\n", [Event("a")]),
    Case("event-type-without-data-dropped", b"event: add\n\ndata: b\n\n", [Event("b")]),
    Case(
        "id-sticky",
        b"id: 1\ndata: a\n\ndata: b\n\n",
        [Event("a", id="1"), Event("b", id="1")],
        last_event_id="1",
    ),
    Case(
        "empty-id-resets",
        b"id: 1\ndata: a\n\nid\ndata: b\n\n",
        [Event("a", id="1"), Event("b", id="")],
    ),
    Case(
        "id-with-nul-ignored",
        b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
        [Event("a", id="1"), Event("b", id="1")],
        last_event_id="1",
    ),
    Case("id-only-block", b"id: 7\n\n", [], last_event_id="7"),
    Case(
        "id-only-block-then-event",
        b"data: a\n\nid: 7\n\ndata: b\n\n",
        [Event("a"), Event("b", id="7")],
        last_event_id="7",
    ),
    Case(
        "retry-digits",
        b"retry: 1500\ndata: a\n\ndata: b\n\n",
        [Event("a", retry=1500), Event("b")],
        retry=1500,
    ),
    Case("retry-leading-zeros", b"retry: 0042\ndata: a\n\n", [Event("a", retry=42)], retry=42),
    Case("retry-only-block", b"retry: 10\n\n", [], retry=10),
    Case("retry-12-digits", b"retry: 999999999999\n\n", [], retry=10**12 - 1),
    Case("retry-400-digits-capped", b"retry: " + b"9" * 400 + b"\n\n", [], retry=10**12 - 1),
    Case("retry-5000-digits-capped", b"retry: " + b"1" * 5000 + b"\n\n", [], retry=10**12 - 1),
    Case("retry-13-digits-capped", b"retry: 1000000000000\n\n", [], retry=10**12 - 1),
    Case("retry-plus-ignored", b"retry: +5\ndata: a\n\n", [Event("a")]),
    Case("retry-decimal-ignored", b"retry: 1.5\ndata: a\n\n", [Event("a")]),
    Case("retry-empty-ignored", b"retry: \nretry\ndata: a\n\n", [Event("a")]),
    Case("retry-spaces-ignored", b"retry:  5\nretry: 5 \ndata: a\n\n", [Event("a")]),
    Case("retry-unicode-digit-ignored", "retry: \u0663\ndata: a\n\n".encode(), [Event("a")]),
    Case(
        "retry-invalid-keeps-earlier",
        b"retry: 100\n\nretry: 1e3\ndata: a\n\n",
        [Event("a")],
        retry=100,
    ),
    Case(
        "unknown-fields-ignored",
        b"foo: bar\nDATA: x\n data: y\ndat: z\ndata: a\nx\n\n",
        [Event("a")],
    ),
    Case("blank-lines-only", b"\n\n\r\n\r", []),
    Case("unfinished-event-discarded", b"data: a\n\ndata: b\n", [Event("a")]),
    Case("unterminated-line-discarded", b"data: a\n\ndata: b", [Event("a")]),
    Case(
        "utf8-multibyte",
        "event: \u00e9\ndata: \u00e9\u20ac\U0001f600\n: \u2603\n\n".encode(),
        [Comment(" \u2603"), Event("\u00e9\u20ac\U0001f600", "\u00e9")],
    ),
    Case(
        "invalid-utf8-replaced",
        b"data: a\xffb\xe2\x82\ndata: \xc3\n:\x80\n\n",
        [Comment("\ufffd"), Event("a\ufffdb\ufffd\n\ufffd")],
    ),
    Case(
        "invalid-utf8-next-to-colon",
        b"data\xe2: x\n\ndata:\xe2\x82 y\n\n",
        [Event("\ufffd y")],
    ),
    Case("invalid-utf8-id", b"id: \xf0\x9f\ndata: a\n\n", [Event("a", id="\ufffd")], "\ufffd"),
]


@pytest.mark.parametrize("feeding", FEEDINGS.values(), ids=FEEDINGS.keys())
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_spec_cases(case: Case, feeding: Feeding) -> None:
    """Each spec example decodes the same whole, byte by byte and split at any point."""
    for chunks in feeding(case.stream):
        items, decoder = decode(chunks)

        assert (case.items, case.last_event_id, case.retry) == (
            items,
            decoder.last_event_id,
            decoder.retry,
        ), chunks


def test_cr_at_chunk_end_dispatches_at_once() -> None:
    """A CR ending a chunk ends the line at once; an LF opening the next chunk is its pair."""
    decoder = SSEDecoder()

    assert [] == decoder.feed(b"data: a\r")
    assert [Event("a")] == decoder.feed(b"\n\r")
    assert [] == decoder.feed(b"\ndata: b\r")
    assert [] == decoder.feed(b"\n")
    assert [Event("b")] == decoder.feed(b"\n")
    assert [] == decoder.close()


def test_close_discards_and_keeps_ids() -> None:
    """close() drops an unfinished event with its id, keeping the last dispatched id and retry."""
    decoder = SSEDecoder()
    decoder.feed(b"id: 8\ndata: one\n\nretry: 300\nid: 9\ndata: never\n")

    assert [] == decoder.close()
    assert ("8", 300, 0) == (decoder.last_event_id, decoder.retry, decoder.buffered_bytes)


def test_unfinished_event_id_is_not_resumed_from() -> None:
    """An id read in a block cut by a disconnect is not sent back: that event was never seen."""
    decoder = SSEDecoder()
    decoder.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b")

    decoder.reset_connection()
    items = decoder.feed(b"data: c\n\n")

    assert [Event("c", id="1")] == items
    assert "1" == decoder.last_event_id


def test_many_events_in_one_chunk() -> None:
    """A chunk holding many events returns all of them from one feed call."""
    stream = b"".join(b"id: %d\ndata: %d\n\n" % (i, i) for i in range(1000))

    items = SSEDecoder().feed(stream)

    assert [Event(str(i), id=str(i)) for i in range(1000)] == items


# --- bounds -------------------------------------------------------------------------------


def feed_repeatedly(decoder: SSEDecoder, chunk: bytes, total: int, buffered: list[int]) -> None:
    """Feed ``chunk`` until ``total`` bytes went in, noting ``buffered_bytes`` after each feed."""
    for _ in range(0, total, len(chunk)):
        decoder.feed(chunk)
        buffered.append(decoder.buffered_bytes)


def test_endless_line_raises_before_buffering_much() -> None:
    """A 10 MB line without a newline, fed in 64 KiB chunks, fails once it passes max_line_bytes."""
    decoder = SSEDecoder()
    chunk = b"x" * (64 << 10)
    buffered: list[int] = []

    with pytest.raises(DecodeError) as caught:
        feed_repeatedly(decoder, chunk, 10_000_000, buffered)

    assert "oversize" == caught.value.reason
    assert "max_line_bytes=1048576" in str(caught.value)
    assert (len(buffered) + 1) * len(chunk) <= (1 << 20) + len(chunk)
    assert max(buffered) <= 1 << 20
    assert 0 == decoder.buffered_bytes


def test_long_line_in_one_chunk_raises() -> None:
    """A complete line over max_line_bytes raises too, carrying the events completed before it."""
    decoder = SSEDecoder(max_line_bytes=16)

    with pytest.raises(DecodeError) as caught:
        decoder.feed(b"data: a\n\ndata: 0123456789abc\n\n")

    assert ("oversize", [Event("a")]) == (caught.value.reason, caught.value.items)


def test_unterminated_line_over_limit_raises() -> None:
    """A chunk whose unterminated tail is over max_line_bytes raises after its complete events."""
    decoder = SSEDecoder(max_line_bytes=16)

    with pytest.raises(DecodeError) as caught:
        decoder.feed(b"data: a\n\ndata: 0123456789abc")

    assert [Event("a")] == caught.value.items


@pytest.mark.parametrize("feeding", FEEDINGS.values(), ids=FEEDINGS.keys())
def test_limits_are_inclusive(feeding: Feeding) -> None:
    """A line of exactly max_line_bytes and data of exactly max_event_bytes are accepted."""
    stream = b"data: 0123456789\ndata: 01234\n\n"  # lines of 16 and 11 bytes, data of 16 bytes
    for chunks in feeding(stream):
        items, _ = decode(chunks, SSEDecoder(max_line_bytes=16, max_event_bytes=16))

        assert [Event("0123456789\n01234")] == items


@pytest.mark.parametrize("feeding", FEEDINGS.values(), ids=FEEDINGS.keys())
def test_one_byte_over_a_limit_raises(feeding: Feeding) -> None:
    """One byte more than either limit raises, at any chunking."""
    for stream, limit in [
        (b"data: 0123456789x\n\n", "max_line_bytes=16"),
        (b"data: 0123456789\ndata: 012345\n\n", "max_event_bytes=16"),
    ]:
        for chunks in feeding(stream):
            with pytest.raises(DecodeError, match=limit):
                decode(chunks, SSEDecoder(max_line_bytes=16, max_event_bytes=16))


def test_event_data_over_limit_raises() -> None:
    """Many data lines summing past max_event_bytes raise before the event is complete."""
    decoder = SSEDecoder()
    line = b"data: " + b"y" * 1017 + b"\n"  # 1018 bytes of event data each, with the LF
    chunk = line * 64
    buffered: list[int] = []

    with pytest.raises(DecodeError) as caught:
        feed_repeatedly(decoder, chunk, 10_000_000, buffered)

    assert "oversize" == caught.value.reason
    assert "max_event_bytes=4194304" in str(caught.value)
    assert (len(buffered) + 1) * len(chunk) <= (4 << 20) + 2 * len(chunk)
    assert max(buffered) <= (4 << 20) + 1


def test_after_an_error_feed_raises_until_reset() -> None:
    """After DecodeError the decoder refuses input until reset_connection(), then works again."""
    decoder = SSEDecoder(max_line_bytes=8)
    decoder.feed(b"id: 3\ndata: a\n\n")
    with pytest.raises(DecodeError):
        decoder.feed(b"data: too long\n")

    with pytest.raises(DecodeError, match="reset_connection"):
        decoder.feed(b"data: b\n\n")
    decoder.reset_connection()

    assert [Event("b", id="3")] == decoder.feed(b"data: b\n\n")


def test_invalid_limits_rejected() -> None:
    """Limits must be positive."""
    with pytest.raises(ValueError, match="positive"):
        SSEDecoder(max_line_bytes=0)


# --- reconnection ---------------------------------------------------------------------------


def test_reset_connection_keeps_last_event_id_and_drops_partial_data() -> None:
    """reset_connection() drops the unfinished event and line, keeps last_event_id and retry."""
    decoder = SSEDecoder()
    decoder.feed(b"retry: 250\nid: 5\ndata: a\n\ndata: half an event\nevent: x\ndata: par")

    decoder.reset_connection()

    assert ("5", 250, 0) == (decoder.last_event_id, decoder.retry, decoder.buffered_bytes)
    assert [] == decoder.feed(b"tial\n\n")
    assert [Event("b", id="5")] == decoder.feed(b"data: b\n\n")


def test_reset_connection_expects_a_new_bom() -> None:
    """After reset_connection() the new stream's leading BOM is stripped again."""
    decoder = SSEDecoder()
    decoder.feed(b"data: a\n\n")
    decoder.feed(b"data: b\r")

    decoder.reset_connection()

    assert [] == decoder.feed(BOM[:1])
    assert [Event("c")] == decoder.feed(BOM[1:] + b"data: c\n\n")


# --- the reference decoder (httpx-sse 0.4.3) ------------------------------------------------

_LINE_END = re.compile(r"\r\n|\r|\n")


def reference_decode(
    stream: bytes, *, normalise: bool = True
) -> tuple[list[Item], str, int | None]:
    """Decode ``stream`` with httpx-sse's line decoder, the lines split per the spec.

    With ``normalise``, the known httpx-sse deviations are undone: a block without
    ``data`` dispatches nothing (fixing the fake events of its issue #35 and of
    ``id:``-only blocks), a ``retry`` value that is not all ASCII digits is not
    given to it, and comment lines (which it drops) are listed as ``Comment``.
    Returns the items, the last event id and the latest reconnection time.
    """
    reference = RefDecoder()
    items: list[Item] = []
    retry: int | None = None
    last_event_id: object = ""
    block_has_data = False
    *lines, _unterminated = _LINE_END.split(stream.decode("utf-8", "replace"))
    for line in lines:
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if normalise:
            if line.startswith(":"):
                items.append(Comment(line[1:]))
                continue
            if name == "retry":
                if not (value.isascii() and value.isdigit()):
                    continue
                retry = int(value)
            block_has_data = block_has_data or name == "data"
        sse = reference.decode(line)
        if not line:
            if sse is not None and (block_has_data or not normalise):
                items.append(Event(sse.data, sse.event, sse.id, sse.retry))
            block_has_data = False
            # the spec's last event ID *string* moves when a block ends; httpx-sse only
            # keeps the buffer (moved by each id line), so read it at block ends
            last_event_id = reference._last_event_id
    assert isinstance(last_event_id, str)
    return items, last_event_id, retry


@dataclass(frozen=True)
class Deviation:
    """A stream where httpx-sse 0.4.3 departs from the spec, and the spec's result."""

    id: str
    stream: bytes
    items: list[Item]
    last_event_id: str = ""


DEVIATIONS = [
    Deviation("leading-bom", BOM + b"data: a\n\n", [Event("a")]),
    Deviation(
        "comment-after-id-event",
        b"id: 1\ndata: a\n\n: ping\n\n",
        [Event("a", id="1"), Comment(" ping")],
        last_event_id="1",
    ),
    Deviation("id-only-block", b"id: 7\n\n", [], last_event_id="7"),
    Deviation("retry-plus", b"retry: +5\ndata: a\n\n", [Event("a")]),
]


@pytest.mark.parametrize("case", DEVIATIONS, ids=[case.id for case in DEVIATIONS])
def test_httpx_sse_deviations_decode_per_spec(case: Deviation) -> None:
    """Where httpx-sse deviates, our decoder gives the spec's result, at any split."""
    for chunks in every_split(case.stream):
        items, decoder = decode(chunks)

        assert (case.items, case.last_event_id) == (items, decoder.last_event_id)


@pytest.mark.parametrize("case", DEVIATIONS, ids=[case.id for case in DEVIATIONS])
def test_httpx_sse_still_deviates(case: Deviation) -> None:
    """httpx-sse 0.4.3 really departs from the spec here, so the normalisation is needed."""
    spec_events = [item for item in case.items if isinstance(item, Event)]

    reference_events, _, _ = reference_decode(case.stream, normalise=False)

    assert spec_events != reference_events


_NAMES = [b"data", b"data", b"data", b"event", b"event", b"id", b"id", b"retry"]
_NAMES += [b"foo", b"dat", b"Data", b""]
_SEPARATORS = [b": ", b": ", b": ", b":", b":  ", b""]
_VALUE_PIECES = [
    b"a",
    b"b",
    b" ",
    b":",
    b"0",
    b"7",
    b"+",
    b".",
    b"\x00",
    "\u00e9".encode(),
    "\u20ac".encode(),
    "\U0001f600".encode(),
    "\u0663".encode(),  # ARABIC-INDIC DIGIT THREE: int() takes it, the spec does not
    b"\xff",  # invalid UTF-8
    b"\xe2\x82",  # truncated three-byte sequence
    b"\x80",  # lone continuation byte
]
_LINE_ENDS = [b"\n", b"\r", b"\r\n"]


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A random event stream (without a leading BOM) and a random or bytewise chunking of it."""
    value = st.lists(st.sampled_from(_VALUE_PIECES), max_size=4).map(b"".join)
    field = st.tuples(st.sampled_from(_NAMES), st.sampled_from(_SEPARATORS), value).map(b"".join)
    digits = st.text("0123456789", min_size=1, max_size=4).map(str.encode)
    retry = st.tuples(
        st.just(b"retry:"),
        st.sampled_from([b" ", b" ", b" +", b" -", b"  ", b""]),
        digits,
        st.sampled_from([b"", b"", b" ", b".5", b"_0"]),
    ).map(b"".join)
    comment = value.map(lambda v: b":" + v)
    # (one_of would merge repeated strategies: sampled_from keeps these weights)
    line = st.sampled_from([field] * 5 + [retry, comment, st.just(b"")]).flatmap(lambda kind: kind)
    # Mostly blocks of a few lines closed by a blank line, so that events get dispatched.
    block = st.lists(line, min_size=1, max_size=5).map(lambda lines: [*lines, b""])
    blocks = draw(st.lists(block, max_size=8))
    lines = [line for block_lines in blocks for line in block_lines]
    ends = draw(st.lists(st.sampled_from(_LINE_ENDS), min_size=len(lines), max_size=len(lines)))
    tail = draw(st.sampled_from([b"", b"data: x", b"\r"]))
    stream = b"".join(text + end for text, end in zip(lines, ends, strict=True)) + tail
    if draw(st.booleans()):  # one byte at a time: every split point at once
        return stream, [stream[i : i + 1] for i in range(len(stream))]
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [
        stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True)
    ]
    return stream, chunks


@settings(
    max_examples=400, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(streams())
def test_agrees_with_httpx_sse(case: tuple[bytes, list[bytes]]) -> None:
    """On random streams at random chunkings we decode what (spec-normalised) httpx-sse decodes."""
    stream, chunks = case

    items, decoder = decode(chunks)

    assert reference_decode(stream) == (items, decoder.last_event_id, decoder.retry)


def test_all_is_sorted_and_complete() -> None:
    """The module's ``__all__`` is sorted and names exactly its public classes."""
    public = {
        name
        for name, value in vars(decoder_module).items()
        if isinstance(value, type) and value.__module__ == decoder_module.__name__
    }

    assert sorted(public) == decoder_module.__all__
