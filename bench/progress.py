"""Rich progress bars for every benchmark phase (or nothing, for tests); one line per phase when the
output is a log file rather than a terminal."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator


class Progress:
    def __init__(self, enabled: bool = True, console: Any = None):
        self.enabled = enabled
        self._p = None
        self._console = console
        if enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RP, SpinnerColumn,
                                       TextColumn, TimeElapsedColumn, TimeRemainingColumn)

            self._console = console or Console(stderr=True)
            self._p = RP(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), TimeRemainingColumn(), console=self._console, transient=False)

    def __enter__(self):
        if self._p:
            self._p.start()
        return self

    def __exit__(self, *exc):
        if self._p:
            self._p.stop()

    @contextmanager
    def task(self, description: str, total: float | None) -> Iterator[Callable[[float], None]]:
        if not self._p:
            yield lambda n=1: None
            return
        plain = not self._console.is_terminal  # a log file: one line per phase instead of live bars
        if plain:
            self._console.print(f"> {description}")
        t0 = time.perf_counter()
        tid = self._p.add_task(description, total=total)
        try:
            yield lambda n=1: self._p.advance(tid, n)
        finally:
            if plain:
                self._console.print(f"  done in {time.perf_counter() - t0:.1f} s")
            if total is not None:
                self._p.update(tid, completed=total)
            else:
                self._p.update(tid, total=1, completed=1)

    def log(self, msg: str) -> None:
        if self._p:
            self._p.console.print(msg)
