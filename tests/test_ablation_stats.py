"""The statistics of eval/ablate_pair_selection.py against hand-computed values."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
import ablate_pair_selection as ab  # noqa: E402


def test_paired_interval_and_tost():
    m, lo, hi = ab.paired_ci([1, 2, 3, 4, 5])  # mean 3, sd 1.5811, se 0.70711, t(4) 2.776
    assert m == 3 and lo == pytest.approx(3 - 2.776 * 0.70711, abs=1e-3) and hi == pytest.approx(3 + 1.963, abs=1e-3)
    lo90, hi90, eq = ab.tost([1, 2, 3, 4, 5], margin=1.0)  # t(4) one-sided 95% 2.132
    assert lo90 == pytest.approx(3 - 2.132 * 0.70711, abs=1e-3) and not eq
    lo90, hi90, eq = ab.tost([0.1, -0.2, 0.05, 0.0, -0.1], margin=1.0)
    assert eq and -1 < lo90 < hi90 < 1
    assert ab.tost([0.1, -0.2, 0.05, 0.0, -0.1], margin=0.1)[2] is False
    assert ab.paired_ci([2.0])[1] != ab.paired_ci([2.0])[1]  # nan with one seed


def test_seeds_needed_is_the_smallest_n():
    # sd = effect: n with ((t_{n-1} + 0.8416))^2 <= n: n = 10 (t_9 = 2.262 -> 9.62), not 9 (t_8 2.306 -> 9.90)
    assert ab.seeds_needed(1.5, 1.5) == 10
    assert ab.seeds_needed(0.5, 1.5) < ab.seeds_needed(1.0, 1.5) < ab.seeds_needed(2.0, 1.5)
    n = ab.seeds_needed(2.0, 1.5)
    assert ((ab._t(ab.T975, n - 1) + 0.8416) * 2.0 / 1.5) ** 2 <= n
    assert ((ab._t(ab.T975, n - 2) + 0.8416) * 2.0 / 1.5) ** 2 > n - 1
