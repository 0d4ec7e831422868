"""Progress output: a line every few seconds when the output is not a terminal."""

from __future__ import annotations

import io

from slt_llm.progress import PeriodicLines, progress_bar


class _Clock:
    def __init__(self, step: float):
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_non_tty_stream_gets_a_few_lines_not_one_per_update():
    out = io.StringIO()
    clock = _Clock(0.005)  # each clock read advances 5 ms: 4000 updates span about 40 s
    bar = PeriodicLines(total=4000, desc="train", unit="step", file=out, interval_s=10.0, clock=clock)
    for i in range(4000):
        bar.update(1)
        bar.set_postfix(loss=f"{1.0 / (i + 1):.3f}")
    bar.close()
    bar.close()  # idempotent
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert 3 <= len(lines) <= 6  # ~clock span / 10 s + the final line, not 4000
    assert lines[-1].startswith("train: 4000/4000 (100%)") and "loss=0.000" in lines[-1]
    assert all(line.startswith("train: ") for line in lines)


def test_progress_bar_picks_by_stream_and_wraps_iterables():
    out = io.StringIO()  # not a terminal
    items = list(progress_bar(range(50), desc="synth", unit="clip", file=out))
    assert items == list(range(50))
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[-1]] and "50/50" in out.getvalue()

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    bar = progress_bar(total=3, desc="t", file=tty)
    assert not isinstance(bar, PeriodicLines)
    bar.update(3)
    bar.close()
    assert "\r" in tty.getvalue()  # tqdm redraws in place on a terminal
    silent = io.StringIO()
    for _ in progress_bar(range(5), file=silent, enabled=False):
        pass
    assert silent.getvalue() == ""
