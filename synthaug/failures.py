"""How a command ends when it cannot finish: exit codes and the one line a user reads.

Exit codes follow argparse and the shell: 0 done, 1 a runtime error (a missing or unreadable file, data that do
not fit, a training that diverged, a full disk), 2 a usage error (the command line or its config file is wrong:
``ConfigError``, argparse's own errors), 130 interrupted by Ctrl-C (128 + SIGINT).
"""
from __future__ import annotations

import errno
import shlex
from pathlib import Path

from .config import ConfigError
from .state import saved_step

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: what a command reports in one line instead of a traceback (anything else is a bug: its traceback is kept)
REPORTED = (ConfigError, OSError, ValueError, RuntimeError, FloatingPointError)


#: what is safe after Ctrl-C, for the commands that keep their work (``train`` says it with its files and step)
_AFTER_CTRL_C = {"bench": "finished (seed, arm) cells are kept in the run folder; run the same command again to go "
                          "on from there",
                 "export": "run it again with --overwrite to write the folder whole",
                 "evaluate": "nothing was written (quality.json comes at the end); the feature extractor, once "
                             "trained, is cached, so running it again is quicker"}


def interrupted(command: str) -> str:
    """The line a command stopped by Ctrl-C ends with: what happened and, where known, what is safe."""
    return "; ".join(["interrupted (Ctrl-C) before it finished", *filter(None, [_AFTER_CTRL_C.get(command)])])


def exit_code(err: BaseException) -> int:
    """2 when the command line or its config is wrong, 1 for anything met while running."""
    return EXIT_USAGE if isinstance(err, ConfigError) else EXIT_RUNTIME


def is_disk_full(err: BaseException) -> bool:
    """An ``OSError`` ENOSPC or safetensors' ``SafetensorError`` (not an OSError) saying the same."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(err) or "Disk quota exceeded" in str(err)


def fresh_command(prog: str, argv: list[str]) -> str:
    """The command line that starts the training ``argv`` names from scratch: the same one without ``--resume``."""
    return shlex.join([*prog.split(), *(a for a in argv if a != "--resume")])


def resume_command(prog: str, argv: list[str]) -> str:
    """The command line that continues the training ``argv`` started: the same one with ``--resume``."""
    words = [*prog.split(), *argv]
    return shlex.join(words if "--resume" in argv else [*words, "--resume"])


class CommandStopped(Exception):
    """A command cut short (Ctrl-C, a full disk): ``main`` prints ``message`` as one line and exits ``code``."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


def _checkpoint_step(folder: Path) -> int | None:
    import json

    try:
        step = (json.loads((folder / "config.json").read_text()).get("training") or {}).get("steps")
    except (OSError, ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None


def saved_training(out_dir: str | Path) -> str | None:
    """What of a generator training in ``out_dir`` is whole on disk, in words; None when nothing is."""
    out_dir = Path(out_dir)
    state, checkpoint = saved_step(out_dir / "resume"), _checkpoint_step(out_dir / "checkpoint")
    if state is None:
        return None
    at = f"step {state}" if checkpoint in (None, state) else f"steps {checkpoint} and {state}"
    return f"the checkpoint and resume state in {out_dir} ({at}) are whole"


def training_stopped(what: str, *, out_dir: str | Path, prog: str, argv: list[str], fix: str = "") -> str:
    """One line for a training cut short by ``what`` (Ctrl-C, a full disk): what is safe and how to go on."""
    saved = saved_training(out_dir)
    if saved is None:
        then = fix + ", then " if fix else ""
        return f"{what}; nothing was saved in {out_dir} yet, so {then}start again: {fresh_command(prog, argv)}"
    return f"{what}; {saved}; {fix + ', then ' if fix else ''}continue with: {resume_command(prog, argv)}"
