"""What the event loop's thread was doing while the loop stalled: a sampler for any
probed process started with this directory first on ``PYTHONPATH``.

Run from the repository root::

    STALL_SAMPLER=1 PYTHONPATH=bench/stall_sampler python bench/soak.py --warmup 60 --duration 300

(the soak puts the repository before ``PYTHONPATH`` and passes the environment on to the
daemon, so the daemon imports this module at start). Without ``STALL_SAMPLER`` it does
nothing. A thread waits until ``probed.daemon`` is imported and its event loop runs
(found through the main thread's ``asyncio.Runner``), then puts a 2 ms ticker on the loop
and looks every 2 ms how late the ticker is. While it is more than 20 ms late
(``STALL_SAMPLER_LATE_MS``) the thread samples the main thread's stack every half
millisecond (``sys._current_frames()``; ``GCn |`` marks a sample taken while a collection
of generation n runs). A stall longer than 40 ms
(``STALL_SAMPLER_REPORT_MS``) is appended to
``$STALL_SAMPLER_DIR/stalls-PID.txt`` (``/tmp`` by default): its length, when it began
(UTC, the clock of the daemon's log lines), and, from the last look before the loop's
last on-time tick to the end, the loop thread's time on a CPU, waiting in the kernel's run
queue for one (the machine's other processes), and off both (blocked: waiting for the GIL,
or in the poll), from
``/proc/self/task/TID/schedstat``, and the CPU of the process's other threads; then its six
most frequent stacks, innermost first.

With ``STALL_SAMPLER_CENSUS=SECONDS`` it also writes, that many seconds after the loop is
found, a census of what a full collection would scan (``gc.get_objects()``, so not what
a freeze left out) by type, to ``$STALL_SAMPLER_DIR/census-PID.txt``, and times one full
collection, then another at once (what is left to walk once the first untracked what
it could and freed the garbage). Taking it holds the GIL for as long (a stall of its own).

With ``STALL_SAMPLER_YOUNG=MS`` it counts, at the start of every generation-1 collection,
what it is about to walk (the objects of generations 0 and 1, by type, with the references
the collection follows from them) and appends the count of each such collection that
paused more than ``MS`` to ``$STALL_SAMPLER_DIR/young-PID.txt``. The counting holds the
GIL before the collection starts, so it lengthens the stalls it explains: for finding what
young collections walk, not for timing them.

Samples are few (the sampler needs the GIL, which the busy loop hands over every
``sys.getswitchinterval()``) and the thread costs the daemon a little CPU: for finding
where stalls come from, not for figures. ``STALL_SAMPLER_SWITCH_MS`` sets that interval
(the interpreter's is 5 ms) for more samples per stall, and ``STALL_SAMPLER_TIMELINE=1``
adds to each reported stall its samples in order, each with the milliseconds since the
stall began (a run of the same stack written once, with how many samples it held).
"""

from __future__ import annotations

import datetime
import gc
import os
import sys
import threading
import time
import traceback
from collections import Counter, deque
from typing import Any

_LATE = float(os.environ.get("STALL_SAMPLER_LATE_MS", "20")) / 1000
_REPORTED = float(os.environ.get("STALL_SAMPLER_REPORT_MS", "40")) / 1000
_PERIOD = 0.002
_IN_STALL = 0.0005
"""How often the main thread's stack is sampled while the loop is late."""
_gc_running: list[int | None] = [None]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    _gc_running[0] = info["generation"] if phase == "start" else None


def _find_loop() -> Any:
    """The main thread's running event loop, from the ``asyncio.Runner`` on its stack."""
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    while frame is not None:
        runner = frame.f_locals.get("self")
        loop = getattr(runner, "_loop", None)
        if frame.f_code.co_name == "run" and loop is not None and loop.is_running():
            return loop
        frame = frame.f_back
    return None


def _stack(main_id: int) -> str:
    frame = sys._current_frames().get(main_id)
    if frame is None:
        return "?"
    summary = traceback.extract_stack(frame, limit=40)[-8:]
    text = " < ".join(f"{os.path.basename(f.filename)}:{f.name}" for f in reversed(summary))
    generation = _gc_running[0]
    return text if generation is None else f"GC{generation} | {text}"


def _sample() -> None:
    out = os.path.join(os.environ.get("STALL_SAMPLER_DIR", "/tmp"), f"stalls-{os.getpid()}.txt")
    loop = None
    while loop is None:
        time.sleep(0.5)
        if "probed.daemon" in sys.modules:
            loop = _find_loop()
    gc.callbacks.append(_on_gc)
    main_id = threading.main_thread().ident or 0
    ticked = [time.monotonic()]

    def tick() -> None:
        ticked[0] = time.monotonic()
        loop.call_later(_PERIOD, tick)

    loop.call_soon_threadsafe(tick)
    with open(out, "a", encoding="utf-8") as f:
        f.write(f"sampling {loop!r}\n")
    samples: list[str] = []
    offsets: list[float] = []
    sched = f"/proc/self/task/{threading.main_thread().native_id}/schedstat"
    looks: deque[_Look] = deque([_look(sched)], maxlen=16)  # recent on-time looks
    started, base = 0.0, looks[0]
    while True:
        time.sleep(_IN_STALL if samples else _PERIOD)
        now = time.monotonic()
        if now - ticked[0] > _LATE:
            if not samples:
                started = ticked[0]
                # the last look before the loop's last tick: the stall's whole length
                base = next((k for k in reversed(looks) if k[0] <= started), looks[0])
            samples.append(_stack(main_id))
            offsets.append(now - started)
            continue
        look = _look(sched)
        if samples:
            if now - started > _REPORTED:
                began = time.time() - (time.monotonic() - started)  # the daemon log's clock
                _report(out, now - started, began, base, look, samples, offsets)
            samples, offsets = [], []
        looks.append(look)


_Look = tuple[float, int, int, float]
"""When (monotonic s), the loop thread's ns on a CPU and waiting for one, process CPU s."""


def _look(path: str) -> _Look:
    when, cpu = time.monotonic(), time.process_time()
    with open(path, encoding="ascii") as f:
        run, wait, _ = f.read().split()
    return when, int(run), int(wait), cpu


def _report(
    out: str,
    length: float,
    began: float,
    base: _Look,
    end: _Look,
    samples: list[str],
    offsets: list[float],
) -> None:
    stamp = datetime.datetime.fromtimestamp(began, datetime.UTC).isoformat(timespec="milliseconds")
    span = (end[0] - base[0]) * 1e3
    run, wait = (end[1] - base[1]) / 1e6, (end[2] - base[2]) / 1e6
    others = max(0.0, (end[3] - base[3]) * 1e3 - run)
    with open(out, "a", encoding="utf-8") as f:
        f.write(
            f"== stall {length * 1000:.0f} ms from {stamp}; over {span:.0f} ms the loop's thread "
            f"was on a CPU {run:.0f} ms, waiting for one {wait:.0f} ms, off both "
            f"{max(0.0, span - run - wait):.0f} ms; the other threads' CPU {others:.0f} ms; "
            f"{len(samples)} samples\n"
        )
        for stack, count in Counter(samples).most_common(6):
            f.write(f"  {count:4d} {stack}\n")
        if os.environ.get("STALL_SAMPLER_TIMELINE"):
            f.write("  in order (ms since the stall began, samples, stack):\n")
            runs: list[list[Any]] = []
            for stack, offset in zip(samples, offsets, strict=True):
                if runs and runs[-1][2] == stack:
                    runs[-1][1] += 1
                else:
                    runs.append([offset, 1, stack])
            for offset, count, stack in runs:
                f.write(f"    {offset * 1000:6.1f} {count:3d} {stack}\n")


def _census(after: float) -> None:
    while "probed.daemon" not in sys.modules or _find_loop() is None:
        time.sleep(0.5)
    time.sleep(after)
    objects = gc.get_objects()
    counts = Counter(type(o).__qualname__ for o in objects)
    weights: Counter[str] = Counter()
    for o in objects:
        weights[type(o).__qualname__] += len(gc.get_referents(o))
    largest = sorted(objects, key=lambda o: len(gc.get_referents(o)), reverse=True)[:15]
    biggest = [(len(gc.get_referents(o)), type(o).__qualname__, repr(o)[:100]) for o in largest]
    del largest
    total = len(objects)
    del objects
    wall, cpu = time.perf_counter(), time.thread_time()
    found = gc.collect()
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    left = len(gc.get_objects())
    again, again_cpu = time.perf_counter(), time.thread_time()
    gc.collect()
    again, again_cpu = time.perf_counter() - again, time.thread_time() - again_cpu
    out = os.path.join(os.environ.get("STALL_SAMPLER_DIR", "/tmp"), f"census-{os.getpid()}.txt")
    with open(out, "w", encoding="utf-8") as f:
        f.write(
            f"{total} tracked objects ({gc.get_freeze_count()} frozen); a full collection: "
            f"{wall * 1e3:.1f} ms ({cpu * 1e3:.1f} ms of this thread's CPU), {found} "
            f"unreachable found, {left} left; at once another: {again * 1e3:.1f} ms "
            f"({again_cpu * 1e3:.1f} ms CPU). Before the first, by type (objects, references "
            f"the collection follows from them):\n"
        )
        for name, count in counts.most_common(40):
            f.write(f"  {count:8d} {weights[name]:9d} {name}\n")
        f.write("by references:\n")
        for name, weight in weights.most_common(25):
            f.write(f"  {counts[name]:8d} {weight:9d} {name}\n")
        f.write("the largest:\n")
        for size, name, text in biggest:
            f.write(f"  {size:8d} {name} {text}\n")


_young: list[Any] = [None, 0.0]


def _on_young(phase: str, info: dict[str, Any]) -> None:
    """Count gens 0 and 1 before a generation-1 collection; write it if the pause was long."""
    if info["generation"] != 1:
        return
    if phase == "start":
        counts: Counter[str] = Counter()
        weights: Counter[str] = Counter()
        for generation in (0, 1):
            for o in gc.get_objects(generation):
                name = type(o).__qualname__
                counts[name] += 1
                weights[name] += len(gc.get_referents(o))
        _young[0] = (counts, weights)
        _young[1] = time.perf_counter()
        return
    paused = time.perf_counter() - _young[1]
    if _young[0] is None or paused * 1000 < float(os.environ["STALL_SAMPLER_YOUNG"]):
        return
    counts, weights = _young[0]
    out = os.path.join(os.environ.get("STALL_SAMPLER_DIR", "/tmp"), f"young-{os.getpid()}.txt")
    with open(out, "a", encoding="utf-8") as f:
        f.write(
            f"{time.strftime('%H:%M:%S')} generation 1: {paused * 1e3:.1f} ms, "
            f"{sum(counts.values())} objects, {sum(weights.values())} references, "
            f"{info.get('collected')} collected; by references:\n"
        )
        for name, weight in weights.most_common(20):
            f.write(f"  {counts[name]:8d} {weight:9d} {name}\n")


if os.environ.get("STALL_SAMPLER_YOUNG"):
    gc.callbacks.append(_on_young)
if os.environ.get("STALL_SAMPLER_SWITCH_MS"):
    sys.setswitchinterval(float(os.environ["STALL_SAMPLER_SWITCH_MS"]) / 1000)
if os.environ.get("STALL_SAMPLER"):
    threading.Thread(target=_sample, name="stall-sampler", daemon=True).start()
if os.environ.get("STALL_SAMPLER_CENSUS"):
    _after = float(os.environ["STALL_SAMPLER_CENSUS"])
    threading.Thread(target=_census, args=(_after,), name="census", daemon=True).start()
