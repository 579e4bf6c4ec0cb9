"""The garbage collector's settings for the services' hot loops (the dispatcher and the worker wrapper).

Measured in the dispatch benchmark: a full collection walked every object the process had imported or built at
start (the web framework, pydantic's validators, the AWS SDK) and stopped the event loop for 100-200 ms, a few
times a run; young collections ran every 700 net allocations, several hundred times a second under load.
"""

from __future__ import annotations

import gc

# Young collections every this many net allocations (Python's default is 700); the older generations keep their
# ratios, so what survives is still collected, just less often.
YOUNG_THRESHOLD = 50_000


def freeze_startup_heap() -> None:
    """Call once the process is up: what exists now lives as long as the process, so the collector stops walking
    it, and young objects are collected less often. Reference cycles are still collected."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
