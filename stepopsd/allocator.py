"""glibc malloc settings for training on CPU: keep freed memory for the next step.

Each update step frees and allocates the same large tensors again (a micro-batch's activations,
logits and gradients). By default glibc serves a block above its mmap threshold with a fresh
mapping and unmaps it on free, and returns the heap's free top to the system beyond its trim
threshold, so every step faults its pages in anew: about 160k page faults per 25 update steps of
the tiny model. With the mmap threshold fixed at its largest value (32 MiB on 64-bit) and a trim
threshold of 1 GiB, freed blocks stay in the heap and are reused: about 11k faults, and a
benchmark run of the tiny model 3-6% faster, with bitwise the same results (docs/benchmarks.md).

Called once per process by its entry point (the ``stepopsd`` command, a benchmark's workers),
never by library code: it changes the allocator of the whole process. A no-op where the C
library is not glibc.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's upper bound on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (above) for this process; False where it is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another C library: keep its defaults
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
