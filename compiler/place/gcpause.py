"""The garbage-collector pause shared by placement, validation and scheduling (:func:`paused_gc`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc"]


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building tens of thousands of small acyclic objects (tiles,
    groups, activations): otherwise every few hundred allocations trigger a collection that walks every live
    object (more than half of the time of a large ``auto`` placement). Nothing built here forms a cycle, so
    no garbage is left for later; the collector is restored on exit."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
