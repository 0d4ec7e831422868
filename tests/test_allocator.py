"""slt_llm.allocator: a CPU run reuses freed large blocks instead of having the kernel page-fault
and zero-fill them again on every step, without the heap growing a block at a time.

All measured as behaviour, in fresh processes (glibc reads its tunables at start): minor page
faults and heap size while a 64 MiB tensor is allocated, written and freed again and again.
Positive controls: glibc's default faults every round; the kept setting without
``tcache_count=0`` grows the heap by a block per round until the thread cache is full."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from slt_llm import allocator

pytestmark = pytest.mark.skipif(not allocator.is_glibc(), reason="the setting is glibc's")

ROUNDS = 6
PAGES = 16 * 2**20 * 4 // 4096  # one 64 MiB float32 tensor in 4 KiB pages

PROBE = r"""
import ctypes, json, resource, sys
import torch
libc = ctypes.CDLL("libc.so.6"); libc.sbrk.restype = ctypes.c_void_p; libc.sbrk.argtypes = [ctypes.c_long]
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
base = libc.sbrk(0)
x = torch.empty(16 * 2**20); x.fill_(1.0); del x      # round 0: the heap grows once
per_round, heap = [], []
for _ in range(ROUNDS):
    f0 = faults()
    x = torch.empty(16 * 2**20); x.fill_(1.0); del x  # 64 MiB, every page written
    per_round.append(faults() - f0)
    heap.append((libc.sbrk(0) - base) / 2**20)
out = {"faults": per_round, "heap_mb": heap}
if len(sys.argv) > 1:                                 # returning_freed_memory: the kept heap is handed back
    from slt_llm.allocator import returning_freed_memory
    rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    x = torch.empty(64 * 2**20); x.fill_(1.0); del x  # 256 MiB freed into the kept heap
    before = rss()
    with returning_freed_memory():
        inside = rss()
    out["rss_drop_mb"] = before - inside
print(json.dumps(out))
""".replace("ROUNDS", str(ROUNDS))


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", allocator.ENV_SWITCH)}
    return {**env, **extra}


def _probe(env: dict, *args) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_kept_memory_reuses_freed_blocks_and_the_heap_stays_one_block():
    kept = _probe(allocator.kept_env(_env()))
    assert sum(kept["faults"]) < 0.05 * ROUNDS * PAGES, kept  # reused: (almost) no fault
    assert max(kept["heap_mb"]) < 2 * 64, kept  # one block, reused in place
    glibc = _probe(_env(SLT_LLM_MALLOC="system"))  # positive control: a fresh mmap per round
    assert all(f > 0.9 * PAGES for f in glibc["faults"]), glibc
    with_tcache = {k: v for k, v in allocator.KEPT_TUNABLES.items() if k != "glibc.malloc.tcache_count"}
    grown = _probe(_env(GLIBC_TUNABLES=":".join(f"{k}={v}" for k, v in with_tcache.items())))
    assert grown["heap_mb"][-1] > 3 * 64, grown  # why tcache_count=0: blocks never coalesce with it


def test_returning_freed_memory_hands_the_kept_heap_back():
    kept = _probe(allocator.kept_env(_env()), "trim")
    assert kept["rss_drop_mb"] > 200, kept  # the freed 256 MiB leave the process
    glibc = _probe(_env(SLT_LLM_MALLOC="system"), "trim")
    assert abs(glibc["rss_drop_mb"]) < 50, glibc  # not in force: nothing to do


def test_env_merging_keeps_the_users_tunables():
    env = allocator.kept_env({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=3:glibc.malloc.arena_max=2", "PATH": "/bin"})
    assert env["GLIBC_TUNABLES"] == ("glibc.malloc.tcache_count=3:glibc.malloc.arena_max=2:"
                                     "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647")
    assert env["PATH"] == "/bin"
    assert allocator.kept_env({"SLT_LLM_MALLOC": "system"}) is None
    full = allocator.kept_env({})
    assert allocator.in_force(full) and allocator.kept_env(full) is None  # nothing left to add


REEXEC = r"""
import os, sys
sys.argv = ["slt-llm", "recipes"]
from slt_llm.cli import main
rc = main()                       # the entry point: re-executes itself once with the tunables
from slt_llm.allocator import in_force
print("PID", os.getpid(), "IN_FORCE", in_force(), "RC", rc, file=sys.stderr)
"""


def test_the_cli_entry_point_reexecutes_itself_with_the_tunables_once():
    out = subprocess.run([sys.executable, "-c", REEXEC], capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 0, out.stderr
    assert "IN_FORCE True RC 0" in out.stderr and out.stderr.count("PID") == 1, out.stderr
    assert "demo_stage1" in out.stdout  # the command itself ran (once)
    off = subprocess.run([sys.executable, "-c", REEXEC], capture_output=True, text=True, timeout=120,
                         env=_env(SLT_LLM_MALLOC="system"))
    assert off.returncode == 0 and "IN_FORCE False RC 0" in off.stderr, off.stderr


def test_a_call_from_python_never_reexecutes(capsys):
    from slt_llm.cli import main

    assert main(["recipes"]) == 0  # would have replaced the test process
    assert "demo_stage1" in capsys.readouterr().out


def test_a_checkout_script_reexecutes_too(tmp_path):
    """scripts/train_*.py call main([...]) from their __main__ block: also a process entry point."""
    script = tmp_path / "launcher.py"
    script.write_text("import sys\nfrom slt_llm.cli import main\n\nif __name__ == '__main__':\n"
                      "    rc = main(['recipes'])\n    from slt_llm.allocator import in_force\n"
                      "    print('IN_FORCE', in_force(), file=sys.stderr)\n    sys.exit(rc)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 0 and "IN_FORCE True" in out.stderr, out.stderr
