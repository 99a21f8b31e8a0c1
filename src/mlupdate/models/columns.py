"""Batches as columns: one array per feature, the examples along its first axis.

The classic model types compute on whole batches. A batch comes in either as a list of Core ML feature
dictionaries (``predict`` / ``predict_batch``) or as one array per input (``Model.predict_arrays``); both
become *columns* here, with the checks of :mod:`mlupdate.models.values`, and the programs' results go
back out as columns or as one dictionary per example.

Columns by feature type:

* ``double``: ``[N]`` float64; ``int64``: ``[N]`` int64; ``string``: ``[N]`` object array of ``str``;
* ``multiArray``: ``[N, *shape]`` of the declared data type (float64 when computing);
* ``dictionary``: a list of ``N`` dicts, or :class:`Keyed` rows (a classifier's ``{label: probability}``, a
  sparse one-hot code), kept as an ``[N, K]`` array until a dictionary is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlupdate.errors import FeatureError, SpecError
from mlupdate.models.values import array, dictionary, feature, integer, number, outputs_of, stack_exact, string
from mlupdate.spec.description import FeatureDescription

Columns = dict[str, Any]


@dataclass(frozen=True)
class Keyed:
    """A dictionary feature for a batch: example i maps ``keys[k]`` to ``values[i, k]`` where ``present[i, k]``.

    ``present`` None: every key is present (a classifier's ``{label: probability}``).
    """

    keys: Sequence[Any]
    values: np.ndarray
    present: np.ndarray | None = None

    def dicts(self) -> list[dict[Any, float]]:
        """One dictionary per example."""
        keys = list(self.keys)
        if self.present is None:
            return [dict(zip(keys, row, strict=True)) for row in self.values.tolist()]
        return [{keys[k]: row[k] for k in np.flatnonzero(mask).tolist()}
                for row, mask in zip(self.values.tolist(), self.present, strict=True)]


_PLAIN = (int, float, np.integer, np.floating)


def _numbers(values: list[Any], fd: FeatureDescription) -> np.ndarray:
    """The ``double`` / ``int64`` values of a batch; each value checked as :func:`number` / :func:`integer` does."""
    if all(type(v) in (float, int, np.float64, np.float32, np.int64, np.int32) for v in values):
        col = np.asarray(values, dtype=np.float64)
    else:
        col = np.asarray([number(v, fd) for v in values], dtype=np.float64)
    if fd.type == "int64":
        bad = ~np.isfinite(col) | (col != np.trunc(np.where(np.isfinite(col), col, 0.0)))
        if bad.any():
            integer(values[int(np.argmax(bad))], fd)  # raises the per-value error
        return col.astype(np.int64)
    return col


def column(examples: Sequence[dict[str, Any]], fd: FeatureDescription) -> Any:
    """The checked column of input ``fd`` over a list of feature dictionaries.

    Raises:
        FeatureError: For a missing value or one of the wrong type or shape (the first one, as Core ML would
            report it for that example).
    """
    if fd.type == "multiArray":
        if fd.shape and not fd.flexible:
            stacked = stack_exact(examples, fd)
            if stacked is not None:
                return stacked.reshape(len(examples), *fd.shape)
            return np.stack([array(feature(ex, fd), fd).astype(np.float64) for ex in examples])
        return [array(feature(ex, fd), fd).astype(np.float64) for ex in examples]
    values = [feature(ex, fd) for ex in examples]
    if fd.type in ("double", "int64"):
        return _numbers(values, fd)
    if fd.type == "string":
        return np.asarray([string(v, fd) for v in values], dtype=object)
    if fd.type == "dictionary":
        return [dictionary(v, fd) for v in values]
    return values


def dicts_of(col: Any) -> list[dict[Any, float]]:
    """A dictionary column as one dict per example."""
    return col.dicts() if isinstance(col, Keyed) else col


def given_column(value: Any, fd: FeatureDescription, n: int | None) -> Any:
    """The checked column of input ``fd`` given as one array (``Model.predict_arrays``, a pipeline's stages).

    Raises:
        FeatureError: If the array is not numeric (strings for a string input), has no examples axis, or its
            examples do not have the declared shape.
    """
    if value is None:
        raise FeatureError(f"Missing input '{fd.name}' ({fd}). Pass it with the other inputs.")
    if fd.type == "dictionary":
        if isinstance(value, Keyed):
            return value
        if not isinstance(value, (list, tuple)):
            raise FeatureError(f"Input '{fd.name}' is a dictionary; pass a list of dicts, one per example.")
        return [dictionary(v, fd) for v in value]
    arr = np.asarray(value, dtype=object if fd.type == "string" else None)
    if arr.ndim == 0 or (n is not None and len(arr) != n):
        raise FeatureError(f"Input '{fd.name}' has {'no examples axis' if arr.ndim == 0 else f'{len(arr)} examples'}; "
                           f"pass an array whose first axis runs over the examples"
                           f"{'' if n is None else f' ({n}, as the other inputs)'}.")
    if fd.type == "string":
        return np.asarray([string(v, fd) for v in arr.reshape(-1)], dtype=object) if arr.ndim == 1 else _flat(fd)
    if fd.type in ("double", "int64"):
        if arr.ndim != 1 and not (arr.ndim == 2 and arr.shape[1] == 1):
            raise _flat(fd)
        flat_arr = arr.reshape(-1)
        if arr.dtype.kind in "biu":
            return flat_arr.astype(np.int64 if fd.type == "int64" else np.float64)
        if arr.dtype.kind == "f" and (fd.type == "double" or np.array_equal(flat_arr, np.trunc(flat_arr))):
            return flat_arr.astype(np.int64 if fd.type == "int64" else np.float64)
        return _numbers(flat_arr.tolist(), fd)
    if fd.type != "multiArray":
        raise FeatureError(f"Input '{fd.name}' is a {fd.type}; predict_arrays takes numeric, string and dictionary "
                           "inputs. Use predict_batch with one dictionary per example.")
    if arr.dtype.kind not in "biuf":
        raise FeatureError(f"Input '{fd.name}' must be a numeric array of shape [examples, "
                           f"{', '.join(map(str, fd.shape))}], got {arr.dtype}. Pass a numpy array.")
    if fd.shape and not fd.flexible and arr.shape[1:] != tuple(fd.shape):
        if math.prod(arr.shape[1:]) != math.prod(fd.shape):
            raise FeatureError(f"Input '{fd.name}' has examples of shape {list(arr.shape[1:])}; the model takes "
                               f"{list(fd.shape)}. Pass an array of shape [examples, "
                               f"{', '.join(map(str, fd.shape))}].")
        arr = arr.reshape(len(arr), *fd.shape)
    elif not fd.shape or fd.flexible:
        return [array(a, fd).astype(np.float64) for a in arr]
    return arr.astype(fd.dtype or "float64", copy=False).astype(np.float64, copy=False)


def _flat(fd: FeatureDescription) -> FeatureError:
    return FeatureError(f"Input '{fd.name}' is a {fd.type}; pass a 1-D array with one value per example.")


def to_columns(examples: Sequence[dict[str, Any]], fds: Sequence[FeatureDescription]) -> Columns:
    """The checked columns of inputs ``fds`` over a list of feature dictionaries."""
    return {fd.name: column(examples, fd) for fd in fds}


def given_columns(arrays: dict[str, Any], fds: Sequence[FeatureDescription]) -> tuple[Columns, int]:
    """The checked columns of inputs ``fds`` given as arrays, and the number of examples.

    Raises:
        FeatureError: For a missing input or examples axes of different lengths.
    """
    n: int | None = None
    out: Columns = {}
    for fd in fds:
        out[fd.name] = given_column(arrays.get(fd.name), fd, n)
        n = len(out[fd.name])
    return out, n or 0


def flat(cols: Columns, fds: Sequence[FeatureDescription], width: int | None) -> np.ndarray:
    """The ``[N, width]`` float64 vectors of the examples: every input's values, in declared order.

    Raises:
        FeatureError: If the inputs make vectors of different sizes or not ``width`` values.
    """
    parts = []
    for fd in fds:
        col = cols[fd.name]
        if isinstance(col, list):  # flexible arrays: each example on its own
            sizes = {a.size for a in col}
            if len(sizes) > 1:
                raise FeatureError(f"Input '{fd.name}' has examples of {sorted(sizes)} values; the model reads "
                                   f"{width if width is not None else 'one size of'} values. Pass arrays of one "
                                   "shape.")
            col = np.stack([a.reshape(-1) for a in col]) if col else np.zeros((0, 0))
        parts.append(np.asarray(col, dtype=np.float64).reshape(len(col), -1))
    x = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    if width is not None and x.shape[1] != width:
        raise FeatureError(f"The inputs ({', '.join(str(fd) for fd in fds)}) make vectors of {x.shape[1]} values; "
                           f"the model reads {width}. Pass arrays of the declared shapes.")
    return x


def output_column(values: np.ndarray, fd: FeatureDescription) -> Any:
    """A computed ``[N, ...]`` result as the column of the declared output type.

    Raises:
        FeatureError: If a ``double`` / ``int64`` output would get several values per example.
    """
    if fd.type == "multiArray":
        arr = np.asarray(values).astype(fd.dtype or "float64", copy=False)
        if fd.shape and math.prod(fd.shape) == math.prod(arr.shape[1:]):
            arr = arr.reshape(len(arr), *fd.shape)
        return arr
    if fd.type in ("double", "int64"):
        arr = np.asarray(values).reshape(len(values), -1)
        if arr.shape[1] != 1:
            raise FeatureError(f"Output '{fd.name}' is a {fd.type} but the model computes {arr.shape[1]} values; "
                               "declare it as a multiarray.")
        return arr[:, 0].astype(np.float64 if fd.type == "double" else np.int64)
    return values


def rows(cols: Columns, n: int) -> list[dict[str, Any]]:
    """One feature dictionary per example from output columns (numbers as Python numbers, arrays as arrays)."""
    per_name = []
    for name, col in cols.items():
        if isinstance(col, Keyed):
            values: list[Any] = col.dicts()
        elif isinstance(col, np.ndarray):
            values = list(col) if col.ndim > 1 else col.tolist()
        else:
            values = list(col)
        per_name.append((name, values))
    if len(per_name) == 1:
        name, values = per_name[0]
        return [{name: v} for v in values]
    names = [name for name, _ in per_name]
    return [dict(zip(names, vals, strict=True)) for vals in zip(*(v for _, v in per_name), strict=True)] \
        if per_name else [{} for _ in range(n)]


def on_columns(program: Any) -> bool:
    """Whether a program computes on columns (``predict_columns``); a pipeline only when all its stages do."""
    return hasattr(program, "predict_columns") and getattr(program, "columnar", True)


def stack_values(values: list[Any]) -> Any:
    """Per-example results of one output as one batch: arrays stacked, numbers and strings as an array."""
    if values and all(isinstance(v, np.ndarray) for v in values) and len({v.shape for v in values}) == 1:
        return np.stack(values)
    if values and all(isinstance(v, (int, float, str, np.number)) for v in values):
        return np.asarray(values, dtype=object if isinstance(values[0], str) else None)
    return values


def arrays_of(cols: Columns) -> dict[str, Any]:
    """Output columns as ``Model.predict_arrays`` returns them (scores as their ``[N, K]`` array)."""
    return {name: (col.values if col.present is None else col.dicts()) if isinstance(col, Keyed) else col
            for name, col in cols.items()}


class ClassifierOutputs:
    """Writes a classifier's label and ``{label: probability}`` outputs, as the model declares them.

    Args:
        spec: The classifier's spec.
        kind: Its type name, for messages.
        labels: The class labels, in score order.
        probabilities: Whether the model can give probabilities (scores) at all.

    Raises:
        SpecError: If the declared label output is missing or of the wrong type.
    """

    def __init__(self, spec: Any, kind: str, labels: list[Any], probabilities: bool = True) -> None:
        if not labels or len(set(labels)) != len(labels):
            raise SpecError(f"The {kind}'s class labels {labels[:8]} are empty or repeat; give each class one label.")
        d = spec.description
        outs = {fd.name: fd for fd in outputs_of(spec)}
        want = "string" if isinstance(labels[0], str) else "int64"
        label_fd = outs.get(d.predictedFeatureName)
        if label_fd is None or label_fd.type != want:
            raise SpecError(f"The {kind} must declare its predicted label output (predictedFeatureName "
                            f"'{d.predictedFeatureName}') as {want}, like its class labels. Fix the description.")
        self.labels = labels
        self._labels = np.asarray(labels, dtype=object if isinstance(labels[0], str) else np.int64)
        self.label_name = d.predictedFeatureName
        self.probs_fd = outs.get(d.predictedProbabilitiesName) if d.predictedProbabilitiesName else None
        if self.probs_fd is not None and not probabilities:
            raise SpecError(f"The {kind} declares the probabilities output '{self.probs_fd.name}' but has no way to "
                            "compute probabilities (see the model type's notes); remove predictedProbabilitiesName "
                            "and that output.")

    def columns(self, probs: np.ndarray | None, winners: np.ndarray) -> Columns:
        """The label and probability columns from ``[N, K]`` scores and the winning class indices."""
        cols: Columns = {self.label_name: self._labels[winners]}
        if self.probs_fd is not None and probs is not None:
            cols[self.probs_fd.name] = (output_column(probs, self.probs_fd) if self.probs_fd.type == "multiArray"
                                        else Keyed(self.labels, probs))
        return cols


class ColumnProgram:
    """Base of the programs that compute on columns: ``predict_batch`` and ``predict_columns`` from ``compute``.

    Subclasses set ``inputs`` (the declared inputs they read) and implement ``compute(cols, n)``.
    """

    inputs: list[FeatureDescription]

    def compute(self, cols: Columns, n: int) -> Columns:
        """The output columns of a batch of ``n`` examples."""
        raise NotImplementedError

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[dict[str, Any]]:
        """Predict every example: one output dictionary each."""
        return rows(self.compute(to_columns(examples, self.inputs), len(examples)), len(examples))

    def predict_columns(self, cols: Columns, n: int) -> Columns:
        """Predict a batch given as checked input columns (see :func:`given_columns`)."""
        return self.compute(cols, n)
