"""Incremental Server-Sent Events decoder: bytes in, events out.

Implements WHATWG HTML §9.2.6 "Interpreting an event stream" exactly, as a pure
state machine (no I/O, no asyncio)::

    decoder = SSEDecoder()
    for chunk in response_chunks:
        for item in decoder.feed(chunk):
            ...  # Event (dispatched) or Comment (heartbeat)
    decoder.close()

Rules implemented (all of them hold for any chunking of the byte stream):

* one leading UTF-8 BOM is stripped, only at the very start of the stream
  (also when it is split across chunks); a later BOM is data;
* lines end with CRLF, LF or CR; a CR ending one chunk and an LF starting the
  next are one line end;
* the stream is UTF-8 decoded with U+FFFD replacement, as the spec's "UTF-8
  decode" does; a multibyte character split across chunks decodes correctly;
* ``:`` at the start of a line makes a comment, returned as :class:`Comment` so
  a watcher can track heartbeats;
* a field's name and value are split at the first ``:``, one leading space of
  the value is removed; a line without ``:`` is a field name with an empty value;
* ``event`` sets the event type, ``data`` appends the value and a LF to the data
  buffer, ``id`` sets the last event id unless the value contains U+0000,
  ``retry`` sets the reconnection time if the value is all ASCII digits
  (capped at 10**12 - 1 ms, so any value converts);
  other fields are ignored;
* an empty line dispatches: nothing if the data buffer is empty (an ``id:``-only
  block still moves :attr:`SSEDecoder.last_event_id`), else an :class:`Event`
  with one trailing LF removed from the data, the type (``"message"`` if none)
  and the last event id, which stays in effect for later events;
* at end of stream an unfinished event (and an unterminated line) is discarded.

Memory is bounded: a line longer than ``max_line_bytes`` or an event whose data
grows past ``max_event_bytes`` raises :class:`DecodeError` as soon as the limit
is crossed, before more than ``max_line_bytes`` are buffered.

How it stays fast: a chunk is split at line ends with ``bytes`` methods (no
per-byte Python loop), only the field values are decoded, and bytes are only
buffered while a line is unfinished. Splitting the bytes before decoding gives
the same text as decoding the whole stream first, because line ends, ``:`` and
the space are ASCII, which UTF-8 never uses inside a multibyte sequence and
which always ends an invalid one.
"""

from __future__ import annotations

from typing import Literal, NoReturn

from probed.errors import ProbedError
from probed.records import record

__all__ = ["Comment", "DecodeError", "Event", "SSEDecoder"]

_BOM = b"\xef\xbb\xbf"
# A longer retry (over 31 years) is read as this ceiling: int() refuses more than 4,300
# digits, and float() overflows long before that.
_MAX_RETRY_DIGITS = 12
_RETRY_CEILING = 10**_MAX_RETRY_DIGITS - 1


@record
class Event:
    """One dispatched event.

    ``data`` is the data lines joined with LF, ``event`` the type (``"message"``
    when no or an empty ``event`` field was given), ``id`` the last event id in
    effect at dispatch (sticky: it carries over to later events), ``retry`` a
    valid ``retry`` value (milliseconds) seen in this event's block, else None.
    """

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None


@record
class Comment:
    """A comment line (``:`` first), usually a heartbeat; ``text`` is all after the ``:``."""

    text: str


class DecodeError(ProbedError):
    """The stream broke a decoder limit; ``reason`` is ``"oversize"``.

    ``items`` holds what the failing :meth:`SSEDecoder.feed` call had already
    completed before the limit was crossed, so a caller can still deliver it.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: Literal["oversize"] = "oversize",
        items: list[Event | Comment] | None = None,
    ) -> None:
        self.reason = reason
        self.items: list[Event | Comment] = [] if items is None else items
        super().__init__(message)


class SSEDecoder:
    """Incremental decoder of one event stream; see the module docstring for the rules.

    After a :class:`DecodeError` the decoder has dropped its buffers and every
    :meth:`feed` raises again until :meth:`reset_connection` starts a new
    connection; :attr:`last_event_id` and :attr:`retry` stay readable for it.
    """

    __slots__ = (
        "_at_start",
        "_block_retry",
        "_buf",
        "_data",
        "_data_bytes",
        "_failure",
        "_id_buffer",
        "_last_event_id",
        "_max_event",
        "_max_line",
        "_pending_cr",
        "_retry",
        "_type",
    )

    def __init__(self, *, max_line_bytes: int = 1 << 20, max_event_bytes: int = 4 << 20) -> None:
        if max_line_bytes < 1 or max_event_bytes < 1:
            raise ValueError("max_line_bytes and max_event_bytes must be positive")
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        self._last_event_id = ""  # the last event ID string: set when a block is dispatched
        self._id_buffer = ""  # the last event ID buffer: set by `id:` lines of this block
        self._retry: int | None = None
        self._buf = bytearray()  # the unfinished line (or the first bytes of a maybe-BOM)
        self._at_start = True  # no byte of this connection's stream has been consumed yet
        self._pending_cr = False  # the last line ended with CR: a leading LF is its CRLF's end
        self._data: list[str] = []  # data lines of the current event block
        self._data_bytes = 0  # their UTF-8 size plus one LF each
        self._type = ""  # the event type buffer
        self._block_retry: int | None = None  # a valid retry seen in the current block
        self._failure: str | None = None  # the DecodeError message once a limit was broken

    @property
    def last_event_id(self) -> str:
        """The last event ID string: send it as ``Last-Event-ID`` when reconnecting.

        It moves when a block ends (blank line), not when an ``id:`` line is read, so
        an event cut off by a disconnect is asked for again instead of being skipped.
        """
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The latest valid reconnection time (ms) from a ``retry`` field, None if none yet."""
        return self._retry

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for the unfinished line plus the data of the unfinished event."""
        return len(self._buf) + self._data_bytes

    def reset_connection(self) -> None:
        """Start a new connection: drop partial line and event, expect a BOM again.

        ``last_event_id`` and ``retry`` are kept, as the spec keeps them across
        reconnections. This also makes a decoder usable again after a
        :class:`DecodeError`.
        """
        self._buf.clear()
        self._at_start = True
        self._pending_cr = False
        self._reset_block()
        self._failure = None

    def close(self) -> list[Event | Comment]:
        """End of stream: discard the unfinished line and event (per spec), return what completed.

        A CR is acted on as soon as it arrives (it ends a line whatever
        follows), so a stream ending in CR has already dispatched its last
        event and nothing is left to complete: the list is always empty and is
        returned so that callers can treat ``feed`` and ``close`` alike. The
        decoder is then ready for a new stream, as after :meth:`reset_connection`.
        """
        self.reset_connection()
        return []

    def feed(self, chunk: bytes) -> list[Event | Comment]:
        """Consume ``chunk`` (any split of the stream); return the events and comments it completed.

        Raises :class:`DecodeError` (reason ``"oversize"``) when a line exceeds
        ``max_line_bytes`` or an event's data exceeds ``max_event_bytes``.
        """
        if self._failure is not None:
            raise DecodeError(f"{self._failure}; call reset_connection() first")
        if not chunk:
            return []
        if self._at_start:
            if self._buf:
                chunk = bytes(self._buf) + chunk
                self._buf.clear()
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._buf += chunk  # maybe a BOM split across chunks: wait for more
                return []
            self._at_start = False
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
                if not chunk:
                    return []
        if self._pending_cr:
            self._pending_cr = False
            if chunk[0] == 0x0A:  # the LF of a CRLF split across chunks
                chunk = chunk[1:]
                if not chunk:
                    return []

        has_cr = b"\r" in chunk
        if not has_cr and b"\n" not in chunk:  # the line goes on: buffer it
            if len(self._buf) + len(chunk) > self._max_line:
                self._fail(
                    f"line longer than max_line_bytes={self._max_line} "
                    f"(at least {len(self._buf) + len(chunk)} bytes)",
                    [],
                )
            self._buf += chunk
            return []

        data = bytes(self._buf) + chunk if self._buf else chunk
        self._buf.clear()
        if has_cr:
            self._pending_cr = data[-1] == 0x0D
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        rest = lines.pop()
        if len(data) <= self._max_line:  # no line can be too long: the fast path
            out = self._lines(lines)
        else:
            out = self._lines_checked(lines)
            if len(rest) > self._max_line:
                self._fail(
                    f"line longer than max_line_bytes={self._max_line} "
                    f"(at least {len(rest)} bytes)",
                    out,
                )
        if rest:
            self._buf += rest
        return out

    def _lines_checked(self, lines: list[bytes]) -> list[Event | Comment]:
        """Process ``lines`` up to the first one over ``max_line_bytes``, then raise."""
        limit = self._max_line
        for index, line in enumerate(lines):
            if len(line) > limit:
                out = self._lines(lines[:index])
                self._fail(
                    f"line longer than max_line_bytes={limit} ({len(line)} bytes)",
                    out,
                )
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[Event | Comment]:
        """Interpret complete lines (terminators removed); return the dispatched items."""
        # The hot loop: state lives in locals and is written back at the end.
        out: list[Event | Comment] = []
        emit = out.append
        data = self._data
        data_bytes = self._data_bytes
        max_event = self._max_event
        event_type = self._type
        last_id = self._last_event_id
        id_buffer = self._id_buffer
        block_retry = self._block_retry
        for line in lines:
            if not line:  # blank line: dispatch
                last_id = id_buffer  # the spec sets the ID string first, even without data
                if data:
                    emit(Event("\n".join(data), event_type or "message", last_id, block_retry))
                    data = []
                    data_bytes = 0
                event_type = ""
                block_retry = None
                continue
            name, _, value = line.partition(b":")
            if not name:  # ":" first: a comment
                emit(Comment(value.decode("utf-8", "replace")))
                continue
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data_bytes += len(value) + 1
                if data_bytes - 1 > max_event:
                    self._last_event_id = last_id  # the oversize block is not dispatched
                    self._fail(
                        f"event data longer than max_event_bytes={max_event} "
                        f"(at least {data_bytes - 1} bytes)",
                        out,
                    )
                data.append(value.decode("utf-8", "replace"))
            elif name == b"event":
                event_type = value.decode("utf-8", "replace")
            elif name == b"id":
                if b"\x00" not in value:
                    id_buffer = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit():  # bytes: ASCII digits only, not empty
                digits = value.lstrip(b"0") or b"0"
                retry = int(digits) if len(digits) <= _MAX_RETRY_DIGITS else _RETRY_CEILING
                self._retry = block_retry = retry
            # any other field name is ignored
        self._data = data
        self._data_bytes = data_bytes
        self._type = event_type
        self._last_event_id = last_id
        self._id_buffer = id_buffer
        self._block_retry = block_retry
        return out

    def _reset_block(self) -> None:
        self._data = []
        self._data_bytes = 0
        self._type = ""
        self._block_retry = None
        self._id_buffer = self._last_event_id  # an unfinished block's id is discarded

    def _fail(self, message: str, items: list[Event | Comment]) -> NoReturn:
        """Drop the buffers, remember the failure and raise ``DecodeError``."""
        self._buf.clear()
        self._reset_block()
        self._failure = message
        raise DecodeError(message, items=items)
