"""eval/bench_step.py's FLOP accounting: the floor is only as right as these counts."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
from bench_step import _top_name, forward_flops, subtree_flops  # noqa: E402


class Wrapper(nn.Module):
    """Like SLTModel + PeftModel: the parent calls its grandchildren directly, never ``llm.forward``."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(32, 64)
        self.llm = nn.Module()
        self.llm.dec = nn.Linear(64, 64)
        self.llm.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.llm.head(self.llm.dec(self.enc(x)))


def test_forward_flops_match_the_shapes_and_the_bypassed_wrapper_is_summed():
    m, x = Wrapper(), torch.randn(8, 32)
    c = forward_flops(m, lambda: m(x))
    top = _top_name(c)
    assert top == "Wrapper"
    assert c[top] == 2 * 8 * (32 * 64 + 64 * 64 + 64 * 10)  # 2 * batch * in * out per linear layer
    assert "Wrapper.llm" not in c  # its forward never ran: its own count would say 0
    assert subtree_flops(c, "Wrapper.llm") == 2 * 8 * (64 * 64 + 64 * 10)
    assert subtree_flops(c, "Wrapper.enc") == 2 * 8 * 32 * 64
    assert subtree_flops(c, "Wrapper.nothing") == 0


def test_subtree_counts_each_module_once():
    counts = {"M.llm.a": 10, "M.llm.a.x": 4, "M.llm.a.y": 6, "M.llm.b": 5, "M.llmx": 100}
    assert subtree_flops(counts, "M.llm") == 15  # a (its children are inside it) + b; not llmx
