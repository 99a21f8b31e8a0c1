"""Feature values from the command line: ``NAME=VALUE`` read by the input's declared type.

VALUE is an image path (image inputs), ``@file.npy`` or ``@file.json`` (a file's array, object or
value), a JSON literal (``[[1, 2], [3, 4]]``, ``{"a": 1.5}``, ``3``), or plain text (string inputs;
numbers for int64 and double inputs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlupdate.errors import FeatureError
from mlupdate.spec.description import FeatureDescription


def split_pair(text: str, names: Sequence[str]) -> tuple[str, str]:
    """``NAME=VALUE`` as ``(NAME, VALUE)``, NAME one of the model's inputs.

    Raises:
        FeatureError: Without ``=`` or for a name the model does not have.
    """
    name, sep, value = text.partition("=")
    if not sep:
        raise FeatureError(f"--input takes NAME=VALUE, got {text!r}; the model's inputs are {', '.join(names)}.")
    if name not in names:
        raise FeatureError(f"The model has no input '{name}'; its inputs are {', '.join(names)}.")
    return name, value


def _file(text: str, fd: FeatureDescription) -> Any:
    path = Path(text[1:])
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if path.suffix == ".json":
            return json.loads(path.read_text())
    except FileNotFoundError:
        raise FeatureError(f"Input '{fd.name}': no file at {path}.") from None
    except (OSError, ValueError) as exc:
        raise FeatureError(f"Input '{fd.name}': cannot read {path} ({exc}); give a .npy array or a JSON "
                           "file.") from None
    raise FeatureError(f"Input '{fd.name}': {path} is neither .npy nor .json; save the value as one of them.")


def _literal(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def feature_value(fd: FeatureDescription, text: str) -> Any:
    """The Python value for input ``fd`` that ``text`` stands for (see the module docstring).

    Raises:
        FeatureError: When the text is not a value of the input's type.
    """
    if fd.type == "image":
        return text
    value = _file(text, fd) if text.startswith("@") else _literal(text)
    if fd.type == "multiArray":
        if isinstance(value, str | dict):
            raise FeatureError(f"Input '{fd.name}' is {fd}; give @file.npy, @file.json or a JSON array such as "
                               "[[0.5, 1.0]].")
        return np.asarray(value)
    if fd.type in ("int64", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float) or (fd.type == "int64"
                                                                             and not float(value).is_integer()):
            raise FeatureError(f"Input '{fd.name}' is {fd.type}; give a number such as 3"
                               f"{'' if fd.type == 'int64' else ' or 0.25'}, got {text!r}.")
        return int(value) if fd.type == "int64" else float(value)
    if fd.type == "string":
        return value if isinstance(value, str) else text
    if fd.type == "dictionary":
        if not isinstance(value, dict):
            raise FeatureError(f"Input '{fd.name}' is {fd}; give a JSON object such as {{\"key\": 1.0}} or "
                               "@file.json.")
        if fd.dtype == "int64":  # JSON keys are text
            try:
                return {int(k): v for k, v in value.items()}
            except ValueError:
                raise FeatureError(f"Input '{fd.name}' has int64 keys; {list(value)} are not all integers.") from None
    if fd.type == "sequence" and not isinstance(value, list):
        raise FeatureError(f"Input '{fd.name}' is a sequence; give a JSON array or @file.json.")
    return value


def printable(value: Any, full: bool) -> Any:
    """An output as JSON can hold it: arrays as lists (``full``) or as ``array[shape]``."""
    if isinstance(value, np.ndarray):
        return value.tolist() if full else f"array{list(value.shape)}"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {(k.item() if isinstance(k, np.generic) else k): printable(v, full) for k, v in value.items()}
    return value
