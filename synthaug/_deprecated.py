"""Old import paths that moved: each old module is a shim that re-exports the public names from the new
module and calls ``warn_moved`` once, when it is first imported. A shim lives for one release after the move."""
from __future__ import annotations

import sys
import warnings

__all__ = ["warn_moved"]


def warn_moved(old: str, new: str) -> None:
    """One ``DeprecationWarning`` saying that module ``old`` moved to ``new``, attributed to the code that imported
    ``old`` (so that Python's default filters show it there, and ``-W error`` names that line)."""
    warnings.warn(f"{old} has moved to {new}: import from {new} instead ({old} will be removed in the next "
                  "release)", DeprecationWarning, stacklevel=_importer_level())


def _importer_level() -> int:
    """The ``stacklevel`` of ``warn_moved``'s ``warnings.warn`` that points past the shim and the import
    machinery, at the statement that imported the shim."""
    # frames: 0 this function, 1 warn_moved, 2 the shim's module code, then importlib's, then the importer.
    # warnings.warn itself passes over importlib's frozen bootstrap frames without counting them, so only
    # importlib's other frames (importlib.import_module, when the importer called it) add a level.
    level, frame = 3, sys._getframe(3)
    while frame is not None and _is_importlib(frame.f_globals.get("__name__", "")):
        if not _is_bootstrap(frame.f_code.co_filename):
            level += 1
        frame = frame.f_back
    return level


def _is_importlib(module: str) -> bool:
    return module == "importlib" or module.startswith("importlib.")


def _is_bootstrap(filename: str) -> bool:
    return "importlib" in filename and "_bootstrap" in filename  # as the warnings module tells them
