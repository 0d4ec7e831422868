"""Progress reporting that suits where the output goes.

On a terminal: a tqdm bar (redrawn in place). Anywhere else (a log file, a
pipe, CI): one plain line every ``interval_s`` seconds (default 10) and one at
the end, instead of a carriage-return redraw per update, so ``make demo > log``
stays a readable log of a few hundred lines rather than thousands of updates.
Imports nothing above ``slt_llm.errors``: every layer may use it.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Optional

DEFAULT_INTERVAL_S = 10.0


class PeriodicLines:
    """A tqdm-like progress reporter for non-terminal streams: ``update(n)``,
    ``set_postfix(**kw)``, ``close()``, iteration over a wrapped iterable, and
    use as a context manager. Writes ``desc: n/total (p%) elapsed, rate [postfix]``
    lines at most every ``interval_s`` seconds (measured with ``clock``) and a
    final one on ``close``."""

    def __init__(self, iterable: Optional[Iterable] = None, *, total: Optional[int] = None, initial: int = 0,
                 desc: str = "", unit: str = "it", file=None, interval_s: float = DEFAULT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.desc, self.unit = total, int(initial), desc, unit
        self.file = file if file is not None else sys.stderr
        self.interval_s, self.clock = float(interval_s), clock
        self.t0 = self.last = clock()
        self.n0 = self.n
        self.postfix = ""
        self.closed = False

    def _line(self) -> str:
        elapsed = self.clock() - self.t0
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100.0 * self.n / self.total:.0f}%)" if self.total else ""
        rate = (self.n - self.n0) / elapsed if elapsed > 0 else 0.0
        post = f" {self.postfix}" if self.postfix else ""
        return f"{self.desc + ': ' if self.desc else ''}{done}{pct} {elapsed:.0f}s, {rate:.2f} {self.unit}/s{post}"

    def _write(self) -> None:
        print(self._line(), file=self.file, flush=True)
        self.last = self.clock()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.clock() - self.last >= self.interval_s:
            self._write()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kw) -> None:
        items = dict(ordered_dict or {}, **kw)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._write()

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(iterable: Optional[Iterable] = None, *, total: Optional[int] = None, initial: int = 0,
                 desc: str = "", unit: str = "it", enabled: bool = True, file=None,
                 interval_s: float = DEFAULT_INTERVAL_S):
    """A tqdm bar when ``file`` (default stderr) is a terminal, else ``PeriodicLines``;
    a disabled tqdm (writes nothing) when ``enabled`` is false."""
    from tqdm.auto import tqdm

    stream = file if file is not None else sys.stderr
    if not enabled:
        return tqdm(iterable, total=total, initial=initial, disable=True)
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=stream)
    return PeriodicLines(iterable, total=total, initial=initial, desc=desc, unit=unit, file=stream,
                         interval_s=interval_s)
