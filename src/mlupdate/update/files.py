"""Labelled examples from files: the one reader of ``mlupdate update``, ``federate``, ``personalize-fleet``.

DATA is a folder of ``<label>/<file>`` subfolders, or a CSV (UTF-8) of ``path,label`` rows (paths relative to
the CSV's folder) or, for an array input, of ``values...,label`` rows. A header row ending in ``label`` and
rows starting with ``#`` are skipped.

The label rule: a folder or CSV label is a class label when it equals one exactly, or, failing that, when it
equals exactly one class label ignoring case (``cat/`` is ``Cat``); the case-insensitive reading is announced
as a :class:`LabelCaseWarning` (the command line shows each warning once). A label that matches none, or
several ignoring case, is refused.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mlupdate.errors import TrainingDataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".heic"})
ARRAY_SUFFIXES = frozenset({".npy"})


class LabelCaseWarning(UserWarning):
    """Folder or CSV labels were matched to the model's class labels ignoring case."""


def read_labelled(data: str | Path, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> list[tuple[Any, str]]:
    """``(value, label)`` pairs from a class-folder tree or a CSV, labels as written.

    A value is a file path (a folder tree's files with one of ``suffixes``; a CSV row's ``path``) or,
    for CSV rows of more than two cells (or a number first), the row's numbers but the last (an array example).

    Raises:
        TrainingDataError: No such folder or file, an unreadable or non-UTF-8 file, a malformed row, or no examples.
    """
    root = Path(data)
    suffixes = {s.lower() for s in suffixes}
    try:
        if root.is_dir():
            pairs = _read_folder(root, suffixes)
        elif root.is_file():
            pairs = _read_csv(root)
        else:
            raise TrainingDataError(f"No folder or CSV at {root}: pass a folder of <label>/ subfolders or a CSV "
                                    "of path,label rows.")
    except PermissionError as exc:
        raise TrainingDataError(f"Cannot read {exc.filename or root}: permission denied. Make it readable "
                                "(chmod) or pass another folder or CSV.") from None
    except OSError as exc:
        raise TrainingDataError(f"Cannot read {exc.filename or root}: {exc.strerror or exc}. Check the path.") \
            from None
    if not pairs:
        raise TrainingDataError(f"No labelled examples found in {root}: expected <label>/<file> "
                                f"({', '.join(sorted(suffixes))}) or CSV rows of path,label.")
    return pairs


def _read_folder(root: Path, suffixes: set[str]) -> list[tuple[Any, str]]:
    pairs: list[tuple[Any, str]] = []
    for folder in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        pairs += [(str(f), folder.name) for f in sorted(folder.iterdir())
                  if f.suffix.lower() in suffixes and not f.name.startswith(".")]
    return pairs


def _read_csv(root: Path) -> list[tuple[Any, str]]:
    try:
        text = root.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TrainingDataError(f"{root} is not a UTF-8 text file (byte {exc.start} cannot be read): save the CSV "
                                "as UTF-8, or pass a folder of <label>/ subfolders.") from None
    if "\0" in text:
        raise TrainingDataError(f"{root} is not a CSV (it holds binary data): pass a CSV of path,label rows or a "
                                "folder of <label>/ subfolders.")
    pairs: list[tuple[Any, str]] = []
    width: tuple[int, int] | None = None  # (values per array row, the line that set it)
    for n, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip() or row[0].startswith("#") or \
                (n == 1 and row[-1].strip().lower() == "label"):
            continue
        if len(row) < 2 or not row[-1].strip():
            raise TrainingDataError(f"{root}:{n}: expected 'path,label' or 'values...,label', got "
                                    f"{','.join(row)!r}. Fix the row or remove it.")
        if len(row) > 2 or _number(row[0]):
            width = width or (len(row) - 1, n)
            if len(row) - 1 != width[0]:
                raise TrainingDataError(f"{root}:{n}: {len(row) - 1} values before the label, but line {width[1]} has "
                                        f"{width[0]}. Give every array row the same number of values, then the label.")
            pairs.append((_numbers(row[:-1], root, n), row[-1].strip()))
            continue
        path = Path(row[0].strip())
        pairs.append((str(path if path.is_absolute() else root.parent / path), row[1].strip()))
    return pairs


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numbers(cells: list[str], root: Path, line: int) -> list[float]:
    try:
        return [float(c) for c in cells]
    except ValueError:
        raise TrainingDataError(f"{root}:{line}: an array row holds numbers then the label; got "
                                f"{','.join(cells)!r}. Fix the row or remove it.") from None


def match_labels(pairs: Sequence[tuple[Any, str]], labels: Sequence[Any], source: str | Path,
                 announce: bool = True) -> list[tuple[Any, Any]]:
    """The pairs with each label replaced by the model's class label it names (the label rule above).

    Args:
        pairs: ``(value, label as written)``.
        labels: The model's class labels (strings or ints).
        source: The folder or CSV, for messages.
        announce: Warn when labels were matched ignoring case; False for workers whose caller
            announces it.

    Raises:
        TrainingDataError: A label that is no class label, or that matches several ignoring case.
    """
    mapping: dict[str, Any] = {}
    folded: dict[str, list[Any]] = {}
    for lab in labels:
        folded.setdefault(str(lab).lower(), []).append(lab)
    loose: list[str] = []
    for name in dict.fromkeys(lab for _, lab in pairs):
        exact = [lab for lab in labels if str(lab) == name]
        if exact:
            mapping[name] = exact[0]
            continue
        near = folded.get(name.lower(), [])
        if len(near) > 1:
            raise TrainingDataError(f"{source}: label '{name}' matches the class labels {near} ignoring case: "
                                    "rename it to exactly one of them.")
        if not near:
            shown = ", ".join(map(str, labels[:20])) + (" ..." if len(labels) > 20 else "")
            raise TrainingDataError(f"{source}: label '{name}' is not one of the model's class labels ({shown}). "
                                    "Rename the folder (or the CSV's label) to one of them.")
        mapping[name] = near[0]
        loose.append(name)
    if loose and announce:
        warnings.warn(f"labels {', '.join(loose)} are read as the model's class labels "
                      f"{', '.join(str(mapping[n]) for n in loose)} (matched ignoring case).", LabelCaseWarning,
                      stacklevel=2)
    return [(value, mapping[lab]) for value, lab in pairs]


def labelled(data: str | Path, labels: Sequence[Any], suffixes: Iterable[str] = IMAGE_SUFFIXES,
             announce: bool = True) -> list[tuple[Any, Any]]:
    """``(value, class label)`` pairs of DATA: :func:`read_labelled` then :func:`match_labels`.

    Raises:
        TrainingDataError: What either raises.
    """
    return match_labels(read_labelled(data, suffixes), labels, data, announce)


def read_examples(data: str | Path, desc: Any) -> list[dict[str, Any]]:
    """Training examples (feature dicts) of DATA for a model with one image or array input and a label.

    Images stay paths (decoded when the task runs); ``.npy`` files and CSV rows of numbers become arrays of
    the input's declared shape; labels follow the label rule for a classifier, else become numbers (a class
    index or a target value, as an array for a multiarray training input).

    Args:
        data: The folder or CSV.
        desc: The model's :class:`~mlupdate.spec.description.Description`.

    Raises:
        TrainingDataError: A model of another interface, or DATA that does not fit it.
    """
    label = next((n for n in desc.training_inputs if n not in desc.inputs), None)
    features = [f for f in desc.inputs.values() if f.type in ("image", "multiArray")]
    if len(desc.inputs) != 1 or len(features) != 1 or label is None:
        raise TrainingDataError("Reading DATA needs a model with one image or array input and a label training "
                                f"input; this one has inputs {list(desc.inputs)}, training inputs "
                                f"{list(desc.training_inputs)}. Build the examples and use mlupdate.UpdateTask.")
    fd, target = features[0], desc.training_inputs[label]
    pairs = read_labelled(data, IMAGE_SUFFIXES if fd.type == "image" else ARRAY_SUFFIXES)
    if desc.class_labels:
        return [{fd.name: _example_value(value, fd), label: lab}
                for value, lab in match_labels(pairs, desc.class_labels, data)]
    return [{fd.name: _example_value(value, fd), label: _target(lab, target)} for value, lab in pairs]


def _example_value(value: Any, fd: Any) -> Any:
    """A read value as the input takes it: an image path, or an array (from .npy or a CSV row)."""
    import numpy as np

    if fd.type == "image":
        if not isinstance(value, str):
            raise TrainingDataError(f"Input '{fd.name}' is an image; give image files, not rows of numbers.")
        return value
    if isinstance(value, str):
        if not value.endswith(".npy"):
            raise TrainingDataError(f"Input '{fd.name}' is {fd}; give .npy files (or CSV rows of numbers), not "
                                    f"{value}.")
        try:
            return np.load(value, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TrainingDataError(f"Cannot read {value} as a .npy array ({exc}); replace or remove it.") from None
    arr = np.asarray(value, np.float32)
    if fd.shape and arr.size == int(np.prod(fd.shape)):
        arr = arr.reshape(fd.shape)
    return arr


def _target(raw: str, target: Any) -> Any:
    """A non-classifier's label as the training input takes it: a number (an array if declared), else the text."""
    import numpy as np

    try:
        value: Any = int(raw)
    except ValueError:
        value = float(raw) if _number(raw) else raw
    if target.type == "multiArray" and not isinstance(value, str):
        return np.full(target.shape or (1,), value, dtype=np.dtype(target.dtype or "float32"))
    return value
