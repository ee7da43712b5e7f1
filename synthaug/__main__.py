"""``python -m synthaug ...``: the same command as ``synthaug ...``."""
from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m synthaug"))
