"""Progress of a long command on stderr: a line per stage the library logs, with the time so far, and in a
terminal an overall progress bar above the bar of the classifier being trained.

The library says what it starts through ``logging`` (``synthaug.quality``: each stage of ``evaluate_generator``
and each classifier it trains); a command that runs for minutes listens with ``stage_lines`` so that a user
sees where it is, in a terminal or in a log file (tqdm's bars show in a terminal only).
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm.auto import tqdm


class _StageLines(logging.Handler):
    def __init__(self, name: str, stream: TextIO, bar: tqdm | None) -> None:
        super().__init__(logging.INFO)
        self.name_, self.stream, self.bar, self.start, self.count = name, stream, bar, time.time(), 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        minutes, seconds = divmod(int(time.time() - self.start), 60)
        # through tqdm, so that the bars below (in a terminal) are redrawn, not overwritten
        tqdm.write(f"[{self.name_} {minutes}:{seconds:02d}] {self.count}. {record.getMessage()}", file=self.stream)
        self.stream.flush()
        if self.bar is not None:
            self.bar.n = min(self.count - 1, self.bar.total or self.count)  # the stages before this one are done
            self.bar.set_postfix_str(record.getMessage(), refresh=True)


@contextmanager
def stage_lines(name: str, *, total: int | None = None, logger: str = "synthaug.quality",
                stream: TextIO | None = None) -> Iterator[None]:
    """Within the block, print every INFO message of ``logger`` as ``[name m:ss] k. message`` on ``stream``; in a
    terminal also an overall bar over ``total`` stages (an estimate: it is filled when the block ends)."""
    stream = stream or sys.stderr
    bar = (tqdm(total=total, desc=name, unit="stage", file=stream, position=0, dynamic_ncols=True)
           if total and stream.isatty() else None)
    target = logging.getLogger(logger)
    handler, level = _StageLines(name, stream, bar), target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield
        if bar is not None:
            bar.n = bar.total
            bar.set_postfix_str("done", refresh=True)
    finally:
        target.removeHandler(handler)
        target.setLevel(level)
        if bar is not None:
            bar.close()
