"""Progress of a long command as lines on stderr: one per stage the library logs, with the time so far.

The library says what it starts through ``logging`` (``synthaug.quality``: each stage of ``evaluate_generator``
and each classifier it trains); a command that runs for minutes listens with ``stage_lines`` so that a user
sees where it is, in a terminal or in a log file (tqdm's per-classifier bars show in a terminal only).
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
    def __init__(self, name: str, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.name_, self.stream, self.start, self.count = name, stream, time.time(), 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        minutes, seconds = divmod(int(time.time() - self.start), 60)
        # through tqdm, so that a classifier's progress bar below (in a terminal) is redrawn, not overwritten
        tqdm.write(f"[{self.name_} {minutes}:{seconds:02d}] {self.count}. {record.getMessage()}", file=self.stream)
        self.stream.flush()


@contextmanager
def stage_lines(name: str, *, logger: str = "synthaug.quality", stream: TextIO | None = None) -> Iterator[None]:
    """Within the block, print every INFO message of ``logger`` as ``[name m:ss] k. message`` on ``stream``."""
    target = logging.getLogger(logger)
    handler, level = _StageLines(name, stream or sys.stderr), target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield
    finally:
        target.removeHandler(handler)
        target.setLevel(level)
