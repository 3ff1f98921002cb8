"""What a block of test code leaves in reference cycles (garbage only a collection frees).

A failure kept as a reason must be freed by reference counting: cyclic garbage waits for
a full collection, which holds the memory until then and stalls the event loop when it
comes. ``cyclic_garbage`` collects before the block, keeps the collector off inside it,
and lists the types of what it then finds unreachable.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from contextlib import contextmanager

from probed.eventloop import loop_name

ASYNCIO_TRANSPORT_CYCLE = frozenset(
    {"_SelectorSocketTransport", "TransportSocket", "socket", "method", "dict", "tuple"}
)
"""What each closed connection of asyncio's own loop (3.11's selector transport) leaves in
a cycle; uvloop's transports leave none, and there nothing is left out."""


@contextmanager
def cyclic_garbage() -> Iterator[list[str]]:
    """Yield a list that, after the block, names the types left in reference cycles (sorted,
    once each); on asyncio's loop its transports' own cycle is left out. Call it inside the
    running loop."""
    own_cycle = (
        ASYNCIO_TRANSPORT_CYCLE
        if loop_name(asyncio.get_running_loop()) == "asyncio"
        else frozenset()
    )
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    found: list[str] = []
    try:
        yield found
        gc.collect()
        found.extend(sorted({type(o).__qualname__ for o in gc.garbage} - own_cycle))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
