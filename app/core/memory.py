"""The garbage collector of a long-running process (an API worker, a Celery worker child)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# A young-generation collection every 5,000 net allocations rather than 700: with a few dozen
# requests in flight, the objects they hold alone pass 700, and a collection would run every
# few requests; at 5,000 it runs rarely.
GC_YOUNG_THRESHOLD = 5_000


@contextlib.contextmanager
def settled_garbage_collector() -> Iterator[None]:
    """What exists once the process is up (~450,000 objects: modules, routes, the SDKs'
    tables) lives as long as it: frozen, the collector no longer walks it, and a full
    collection stops pausing everything in flight on the event loop (the API's reads, a
    worker's orders) for the time it takes to walk all of it. Undone on exit,
    so a process that starts several (the tests) frees what each one leaves behind."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
