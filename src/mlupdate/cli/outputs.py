"""Where a command will write, checked before any work starts: a failure after an hour of training helps no one."""

from __future__ import annotations

import os
from pathlib import Path

from mlupdate.errors import ModelFileError


def check_file(path: str | os.PathLike[str], option: str, *, source: str | os.PathLike[str] | None = None) -> Path:
    """Check that ``path`` can be written as a file (its folder exists and is writable; it is no folder).

    Args:
        path: The output file.
        option: How the user named it (``--out``), for messages.
        source: The input model, which must never be overwritten.

    Raises:
        ModelFileError: Naming the option, the path and the fix.
    """
    p = Path(path)
    if not str(path):
        raise ModelFileError(f"{option} is empty: give a file path such as Model.mlmodel.")
    if source is not None and p.resolve() == Path(source).resolve():
        raise ModelFileError(f"{option} must differ from MODEL: mlupdate never overwrites the source model.")
    if p.is_dir():
        raise ModelFileError(f"{option} {p} is a folder: give a file path such as {p / 'Model.mlmodel'}.")
    folder = p.parent
    if not folder.is_dir():
        raise ModelFileError(f"{option} {p}: folder {folder} does not exist. Create it first or choose another path.")
    if not os.access(folder, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ModelFileError(f"{option} {p}: {folder if not p.exists() else p} is not writable. Choose a writable "
                             "place (or change its permissions).")
    return p


def check_folder(path: str | os.PathLike[str], option: str) -> Path:
    """Check that ``path`` is, or can be created as, a writable folder (it is created later, when written to).

    Raises:
        ModelFileError: Naming the option, the path and the fix.
    """
    p = Path(path)
    if not str(path):
        raise ModelFileError(f"{option} is empty: give a folder path.")
    if p.exists() and not p.is_dir():
        raise ModelFileError(f"{option} {p} is a file, not a folder: give a folder path (it is created if missing).")
    full = p.absolute()
    existing = next(q for q in (full, *full.parents) if q.exists())  # the root always exists
    if not existing.is_dir():
        raise ModelFileError(f"{option} {p}: {existing} is a file, so the folder cannot be created there. Choose "
                             "another folder (or move the file away).")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ModelFileError(f"{option} {p}: {existing} is not writable. Choose a writable folder (or change its "
                             "permissions).")
    return p
