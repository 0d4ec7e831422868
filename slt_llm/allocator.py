"""Process-wide C allocator setting for CPU runs: freed memory is reused, not page-faulted again.

glibc's malloc serves every request above its mmap threshold (128 KiB at start, raised by use to
at most 32 MiB) with a fresh ``mmap`` and unmaps it on ``free``. A CPU training step allocates and frees
activation tensors of 10-60 MB dozens of times, so the kernel page-faults and zero-fills every
one of them again, step after step: a fifth of the demo's stage-1 CNN step
(``eval/bench_allocator.py``, docs/perf/step.md). PyTorch's CUDA caching allocator avoids this
on GPUs; on CPU, Intel's tuning guide preloads jemalloc or tcmalloc. We use glibc's own
tunables, set before the process starts (``GLIBC_TUNABLES``, :data:`KEPT_TUNABLES`):

* ``mmap_max=0``: large requests come from the heap;
* ``trim_threshold=2147483647``: the heap's top is never given back, so a freed block is
  reused as it is;
* ``tcache_count=0``: no per-thread cache of small chunks. PyTorch allocates with
  ``posix_memalign``, which splits a small remainder off every large block; the thread cache
  keeps those remainders marked in use, so the large blocks freed between them never
  coalesce and the heap grows by a block at a time (measured: +64 MiB per round of
  allocating and freeing one 64 MiB tensor with the cache on, none with it off).

Measured (docs/perf/step.md, demo.md): the demo's CNN step (``eval/bench_allocator.py``, 160
steps of varying size) 1.25x glibc's default speed at 0.69x its resident memory (without
``tcache_count=0``: 1.21x at 1.35x); the whole tiny demo 1.25x faster at 0.64x the peak.

glibc reads the tunables when a process starts, so ``slt-llm`` (when it is the process's
entry point) re-executes itself once with them set
(:func:`reexec_with_kept_memory`: same PID, same arguments, under ``accelerate launch`` too);
its DataLoader workers and subprocesses inherit them. ``SLT_LLM_MALLOC=system`` keeps glibc's
default; tunables a user already set in ``GLIBC_TUNABLES`` win over ours. Not glibc (macOS,
Windows, musl): nothing happens.

One-off scans with large buffers of their own shapes (the stage-1 similarity scan over all
N x N pairs) run inside :func:`returning_freed_memory` (the :func:`scan` decorator): the heap's
free memory is handed back first (``malloc_trim``) and large blocks are mmap'ed and returned on
free for the duration, so a run's kept activations do not add to the scan's peak.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import platform
import sys

KEPT_TUNABLES = {
    "glibc.malloc.mmap_max": "0",
    "glibc.malloc.trim_threshold": "2147483647",
    "glibc.malloc.tcache_count": "0",
}
ENV_SWITCH = "SLT_LLM_MALLOC"  # "system": glibc's default
_REEXEC_MARK = "SLT_LLM_MALLOC_REEXEC"  # set in the re-executed process: never loop

# glibc <malloc.h> mallopt parameters; inside a scan: glibc's default steady state (its dynamic
# mmap threshold rises to 32 MiB after the first large free, the trim threshold follows at 2x;
# setting any of them by hand turns the dynamic rule off, so both are set explicitly: blocks
# under 32 MiB from the heap, the scan's big buffers mmap'ed and returned)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
SCAN_MMAP_MAX = 65536
SCAN_MMAP_THRESHOLD = 32 * 2**20
SCAN_TRIM_THRESHOLD = 64 * 2**20


def is_glibc() -> bool:
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _parse(tunables: str) -> dict:
    out = {}
    for item in filter(None, tunables.split(":")):
        key, _, value = item.partition("=")
        out[key] = value
    return out


def kept_env(environ=None) -> dict | None:
    """The environment a process needs for the kept-memory setting, or None when nothing is to
    change (not glibc, ``SLT_LLM_MALLOC=system``, or every tunable already present; a tunable the
    user set keeps the user's value)."""
    environ = os.environ if environ is None else environ
    if not is_glibc() or environ.get(ENV_SWITCH, "").lower() == "system":
        return None
    current = _parse(environ.get("GLIBC_TUNABLES", ""))
    missing = {k: v for k, v in KEPT_TUNABLES.items() if k not in current}
    if not missing:
        return None
    merged = ":".join(filter(None, [environ.get("GLIBC_TUNABLES", "")] + [f"{k}={v}" for k, v in missing.items()]))
    return {**environ, "GLIBC_TUNABLES": merged}


def in_force(environ=None) -> bool:
    """Whether this process started with the kept-memory tunables (glibc reads them at start)."""
    environ = os.environ if environ is None else environ
    if not is_glibc() or environ.get(ENV_SWITCH, "").lower() == "system":
        return False
    current = _parse(environ.get("GLIBC_TUNABLES", ""))
    return all(current.get(k) == v for k, v in KEPT_TUNABLES.items())


def reexec_with_kept_memory() -> None:
    """Re-execute this process (same interpreter, same command line, same PID) with the
    kept-memory tunables, when they are wanted and missing; otherwise return. Call it only at a
    process's entry point, before any work: the process image is replaced."""
    env = kept_env()
    if env is None or os.environ.get(_REEXEC_MARK):
        return
    argv = list(getattr(sys, "orig_argv", None) or [])
    if not argv or not sys.executable or not os.path.exists(sys.executable):
        return
    env[_REEXEC_MARK] = "1"
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError:  # cannot re-execute (seccomp, odd interpreter): run on with glibc's default
        return


_libc = None


def _lib():
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        _libc = libc
    return _libc


@contextlib.contextmanager
def returning_freed_memory():
    """For a one-off large scan: the heap's free memory is given back first (``malloc_trim``),
    and inside, blocks of 32 MiB and more are mmap'ed and returned on free (glibc's default
    steady state); the kept setting again on exit. Does nothing where it is not in force."""
    if not in_force():
        yield
        return
    libc = _lib()
    libc.mallopt(M_MMAP_THRESHOLD, SCAN_MMAP_THRESHOLD)
    libc.mallopt(M_MMAP_MAX, SCAN_MMAP_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, SCAN_TRIM_THRESHOLD)
    libc.malloc_trim(0)
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_MAX, int(KEPT_TUNABLES["glibc.malloc.mmap_max"]))
        libc.mallopt(M_TRIM_THRESHOLD, int(KEPT_TUNABLES["glibc.malloc.trim_threshold"]))


def scan(fn):
    """Decorator: ``fn`` runs inside :func:`returning_freed_memory` (one-off large scans)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with returning_freed_memory():
            return fn(*args, **kwargs)

    return wrapper
