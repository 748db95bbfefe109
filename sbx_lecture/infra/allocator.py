"""Keep the memory of freed tensors in the process instead of handing it back to the kernel at every step.

SQL's update builds tens of megabytes of temporaries per gradient step (batch × particles × hidden units). With
glibc's default settings the top of the heap is trimmed (``brk``) once the step frees them and the next step faults
the same pages in again: about 40 % of a SQL run's CPU time went to the kernel (MountainCarContinuous-v0's zoo
settings: 7.6 s of system time against 0.3 s once the memory was kept, 1.3-1.6× the environment steps per second).
SB3's SAC, whose temporaries are an order smaller, is not affected. PyTorch's CPU performance guide makes the same
point with jemalloc or tcmalloc; :func:`keep_freed_memory` reaches the same effect with glibc's own knobs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

#: glibc's ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Allocations below this size come from the heap and are reused (glibc's largest allowed value on 64-bit).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap that is kept rather than returned to the kernel.
TRIM_THRESHOLD = 256 * 1024 * 1024
#: The environment variables through which a user sets these themselves (then they are left alone).
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD")


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks of up to :data:`MMAP_THRESHOLD` bytes and up to
    :data:`TRIM_THRESHOLD` bytes of free heap for reuse (once per process).

    Nothing changes where the C library is not glibc (macOS, Windows, musl), or where the user tunes the allocator
    already (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``, or another allocator through
    ``LD_PRELOAD``). The cost is memory: up to :data:`TRIM_THRESHOLD` bytes of freed memory stay with the process.

    :return: whether the settings are in effect (made by this call or an earlier one)
    """
    return _apply()


def _apply() -> bool:
    if not sys.platform.startswith("linux") or any(os.environ.get(name) for name in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no C library by that name, or one without mallopt (musl)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)  # and it returns an int, ctypes' default
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
