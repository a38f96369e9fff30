"""Let a worker process keep the memory it frees, so the next image's arrays reuse it.

glibc serves every allocation above its mmap threshold (128 KiB, rising to at most 32 MiB as
large blocks are freed) with a fresh ``mmap`` and returns it with ``munmap`` when freed: each
full-frame temporary array then costs a page fault per 4 KiB page on first touch.  A simulator
worker makes dozens of such temporaries per radiograph.  Serving them from the heap instead, and
not trimming the heap back after each image, cut the minor page faults of one process rendering
30 native radiographs from 365,000-443,000 to 85,000, and took the simulator from 4.14-4.27 to
4.88-5.17 radiographs/s with 2 workers on 2 cores (``benchmarks/simulator_throughput.py --n 100``,
two runs each, one sitting).

Only for processes this package starts itself (its worker pools): it changes the allocator of
the whole process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
"""glibc's largest allowed mmap threshold: blocks up to a 8-Mpx float32 frame come from the heap."""
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024
"""Free memory at the top of the heap is given back to the system only above this."""


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where there is no glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = all(mallopt(option, value) == 1 for option, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
                                                                  (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)))
    if not done:
        log.debug("mallopt refused the thresholds; the allocator keeps its defaults")
    return done
