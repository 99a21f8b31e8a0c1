"""Feature transforms (``scaler``, ``imputer``, ``normalizer``, ``arrayFeatureExtractor``, ``identity``).

Semantics (Core ML's ``Scaler.proto``, ``Imputer.proto``, ``Normalizer.proto``,
``ArrayFeatureExtractor.proto``, ``Identity.proto`` and their validators; where Core ML documents
nothing, mlupdate's choice, marked *choice*):

* scaler: ``scaleValue * (x + shiftValue)``, each given as nothing (1 and 0), one value, or (for a
  1-D multiarray) one value per element. An int64 output of a non-integral result is an error.
* imputer: a missing (absent or None) input becomes the imputed value. A present double, or each
  element of a multiarray, equal to ``replaceDoubleValue`` (NaN when unset, or when it is NaN) becomes
  the imputed value (its own element of an imputed array); int64 and string inputs equal to the
  replace value likewise. Dictionaries are only imputed when missing.
* normalizer: ``x / norm`` with ``LMax`` = ``max |x_i|`` (*choice*: scikit-learn's ``max`` norm,
  which coremltools converts to ``LMax``; the proto's formula reads ``max(x_i)``, the same for
  non-negative inputs), ``L1`` = ``sum |x_i|``, ``L2`` = ``sqrt(sum x_i^2)``. A zero norm leaves ``x``
  as it is (*choice*, scikit-learn's).
* arrayFeatureExtractor: the values at ``extractIndex`` (0-based, of the flattened array): a double or
  int64 for one index (int64 truncates toward zero, *choice*, C's cast), else a multiarray.
* identity: each input is returned unchanged as the output in the same position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlupdate.errors import FeatureError, SpecError
from mlupdate.models.columns import ColumnProgram, Columns, dicts_of, output_column, rows, to_columns
from mlupdate.models.values import (
    array,
    dictionary,
    feature,
    inputs_of,
    integer,
    number,
    only,
    output,
    outputs_of,
    string,
)

_NUMERIC = ("int64", "double", "multiArray")


def _read(value: Any, fd: Any) -> Any:
    """A present input value of ``fd``'s type (multiarrays as float64)."""
    if fd.type == "double":
        return number(value, fd)
    if fd.type == "int64":
        return integer(value, fd)
    if fd.type == "string":
        return string(value, fd)
    if fd.type == "dictionary":
        return dictionary(value, fd)
    return array(value, fd).astype(np.float64)


class ScalerProgram(ColumnProgram):
    """Runs a ``scaler`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``scaler``.

    Raises:
        SpecError: If the types or the shift/scale sizes do not fit the input.
    """

    def __init__(self, spec: Any) -> None:
        self.input = only(inputs_of(spec), "scaler", "input", _NUMERIC)
        self.output = only(outputs_of(spec), "scaler", "output", _NUMERIC)
        allowed = ("int64", "double") if self.input.type == "int64" else (self.input.type,)
        if self.output.type not in allowed:
            raise SpecError(f"The scaler turns a {self.input.type} into a {self.output.type}; its output must be "
                            f"{' or '.join(allowed)}.")
        size = 1
        if self.input.type == "multiArray":
            if len(self.input.shape) != 1 or self.output.shape != self.input.shape:
                raise SpecError("The scaler takes a 1-D multiarray and returns one of the same shape; fix the shapes "
                                f"(input {list(self.input.shape)}, output {list(self.output.shape)}).")
            size = self.input.shape[0]
        msg = spec.scaler
        for name, values in (("shiftValue", msg.shiftValue), ("scaleValue", msg.scaleValue)):
            if len(values) not in (0, 1, size):
                raise SpecError(f"The scaler has {len(values)} {name}s; give none, one, or one per element ({size}).")
        self.shift = np.asarray(msg.shiftValue or [0.0], dtype=np.float64)
        self.scale = np.asarray(msg.scaleValue or [1.0], dtype=np.float64)
        self.inputs = [self.input]

    def compute(self, cols: Columns, n: int) -> Columns:
        """The scaled column: ``{output: values}``."""
        x = np.asarray(cols[self.input.name], dtype=np.float64).reshape(n, -1)
        y = self.scale * (x + self.shift)
        if self.output.type == "int64" and not (y == np.trunc(y)).all():
            bad = float(y[~(y == np.trunc(y))][0])
            raise FeatureError(f"The scaler's int64 output '{self.output.name}' would be {bad}; the cast to an "
                               "integer would lose the fraction. Declare the output as a double.")
        return {self.output.name: output_column(y, self.output)}


class ImputerProgram(ColumnProgram):
    """Runs an ``imputer`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``imputer``.

    Raises:
        SpecError: If the imputed value, the replace value and the feature type do not fit together.
    """

    _COMPATIBLE = {"imputedDoubleValue": (("double", "multiArray"), "replaceDoubleValue"),
                   "imputedInt64Value": (("int64",), "replaceInt64Value"),
                   "imputedDoubleArray": (("multiArray",), "replaceDoubleValue"),
                   "imputedStringValue": (("string",), "replaceStringValue"),
                   "imputedInt64Array": (("multiArray",), "replaceInt64Value"),
                   "imputedStringDictionary": (("dictionary",), None),
                   "imputedInt64Dictionary": (("dictionary",), None)}

    def __init__(self, spec: Any) -> None:
        msg = spec.imputer
        self.input = only(inputs_of(spec), "imputer", "input", (*_NUMERIC, "string", "dictionary"))
        self.output = only(outputs_of(spec), "imputer", "output", (self.input.type,))
        which = msg.WhichOneof("ImputedValue")
        if which is None:
            raise SpecError("The imputer has no imputed value; set one of the ImputedValue fields.")
        types, replace_field = self._COMPATIBLE[which]
        replace = msg.WhichOneof("ReplaceValue")
        if self.input.type not in types or (replace is not None and replace != replace_field):
            raise SpecError(f"The imputer's {which}{f' and {replace}' if replace else ''} do not fit its "
                            f"{self.input.type} input '{self.input.name}'; use an imputed (and replace) value of the "
                            "input's type.")
        value = getattr(msg, which)
        self.imputed: Any = (np.asarray(value.vector, dtype=np.float64) if which.endswith("Array")
                             else dict(value.map) if which.endswith("Dictionary") else value)
        if which.endswith("Array") and (len(self.input.shape) != 1 or self.input.shape[0] != self.imputed.size):
            raise SpecError(f"The imputer's {which} has {self.imputed.size} values but its input has shape "
                            f"{list(self.input.shape)}; give one value per element of a 1-D array.")
        self.replace = getattr(msg, replace) if replace else None
        self.inputs = [self.input]

    def impute(self, value: Any) -> Any:
        """One present value with the replace value(s) imputed."""
        x = _read(value, self.input)
        if self.input.type == "dictionary":
            return x
        if self.input.type != "multiArray":
            hit = (math.isnan(x) if _is_nan(self.replace) else x == self.replace) if self.input.type == "double" \
                else self.replace is not None and x == self.replace
            return self.imputed if hit else x
        mask = np.isnan(x) if _is_nan(self.replace) else x == self.replace
        x = x.copy()
        x[mask] = self.imputed[mask] if isinstance(self.imputed, np.ndarray) else self.imputed
        return x

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[dict[str, Any]]:
        """Impute every example: ``{output: value}`` (a whole batch of present values in one step)."""
        if all(ex.get(self.input.name) is not None for ex in examples):
            return rows(self.compute(to_columns(examples, self.inputs), len(examples)), len(examples))
        out = []
        for ex in examples:
            value = ex.get(self.input.name)
            if value is None:
                if self.input.type == "multiArray" and not isinstance(self.imputed, np.ndarray):
                    raise FeatureError(f"Missing input '{self.input.name}' ({self.input}); the imputer fills "
                                       "missing elements of an array, not a missing array. Pass the array.")
                value = self.imputed
            else:
                value = self.impute(value)
            out.append({self.output.name: output(value, self.output)})
        return out

    def compute(self, cols: Columns, n: int) -> Columns:
        """The imputed column of present values: ``{output: values}``."""
        col = cols[self.input.name]
        if self.input.type in ("double", "multiArray") and isinstance(col, np.ndarray):
            x = col.astype(np.float64)
            mask = np.isnan(x) if _is_nan(self.replace) else x == self.replace
            imputed = np.broadcast_to(np.asarray(self.imputed, dtype=np.float64), x.shape)
            return {self.output.name: output_column(np.where(mask, imputed, x), self.output)}
        values = [self.impute(v) for v in (col.tolist() if isinstance(col, np.ndarray) else dicts_of(col))]
        if self.input.type == "multiArray":
            return {self.output.name: [output(v, self.output) for v in values]}
        return {self.output.name: values if self.input.type == "dictionary" else np.asarray(
            values, dtype=object if self.input.type == "string" else np.int64)}


def _is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class NormalizerProgram(ColumnProgram):
    """Runs a ``normalizer`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``normalizer``.

    Raises:
        SpecError: If the norm type or the interface is wrong.
    """

    def __init__(self, spec: Any) -> None:
        self.input = only(inputs_of(spec), "normalizer", "input", ("multiArray",))
        self.output = only(outputs_of(spec), "normalizer", "output", ("multiArray",))
        self.norm = int(spec.normalizer.normType)
        if self.norm not in (0, 1, 2):
            raise SpecError(f"The normalizer's normType is {self.norm}; use LMax, L1 or L2.")
        self.inputs = [self.input]

    def _one(self, x: np.ndarray) -> np.ndarray:
        norm = (np.abs(x).max(initial=0.0), np.abs(x).sum(), np.sqrt((x * x).sum()))[self.norm]
        return x / norm if norm else x

    def compute(self, cols: Columns, n: int) -> Columns:
        """The normalized column: ``{output: arrays}``."""
        col = cols[self.input.name]
        if isinstance(col, list):  # flexible shapes: each example on its own
            return {self.output.name: [output(self._one(x), self.output) for x in col]}
        batch = col.reshape(n, -1)
        a = np.abs(batch)
        norms = (a.max(axis=1, initial=0.0), a.sum(axis=1), np.sqrt((batch * batch).sum(axis=1)))[self.norm]
        ys = (batch / np.where(norms == 0, 1.0, norms)[:, None]).reshape(col.shape)
        return {self.output.name: output_column(ys, self.output)}


class ArrayFeatureExtractorProgram(ColumnProgram):
    """Runs an ``arrayFeatureExtractor`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``arrayFeatureExtractor``.

    Raises:
        SpecError: If the indexes are missing, out of the input's range or too many for the output.
    """

    def __init__(self, spec: Any) -> None:
        self.input = only(inputs_of(spec), "arrayFeatureExtractor", "input", ("multiArray",))
        self.output = only(outputs_of(spec), "arrayFeatureExtractor", "output", _NUMERIC)
        self.index = np.asarray(spec.arrayFeatureExtractor.extractIndex, dtype=np.uint64)
        if not self.index.size or (self.output.type != "multiArray" and self.index.size != 1):
            raise SpecError(f"The arrayFeatureExtractor has {self.index.size} extractIndex values; a "
                            f"{self.output.type} output takes exactly one (a multiarray output at least one).")
        size = math.prod(self.input.shape) if self.input.shape and not self.input.flexible else None
        if size is not None and int(self.index.max()) >= size:
            raise SpecError(f"The arrayFeatureExtractor extracts index {int(self.index.max())} from "
                            f"'{self.input.name}' of {size} values; indexes are 0-based and must be below {size}.")
        self.inputs = [self.input]

    def compute(self, cols: Columns, n: int) -> Columns:
        """The extracted column: ``{output: value(s)}``."""
        col = cols[self.input.name]
        sizes = {x.size for x in col} if isinstance(col, list) else {int(np.prod(col.shape[1:]))}
        if int(self.index.max()) >= min(sizes, default=0):
            raise FeatureError(f"Input '{self.input.name}' has {min(sizes, default=0)} values; the "
                               f"arrayFeatureExtractor reads index {int(self.index.max())}. Pass a longer array.")
        index = self.index.astype(np.int64)
        vals = np.stack([x.reshape(-1)[index] for x in col]) if isinstance(col, list) else col.reshape(n, -1)[:, index]
        if self.output.type == "int64":
            vals = np.trunc(vals.astype(np.float64))
        return {self.output.name: output_column(vals, self.output)}


class IdentityProgram(ColumnProgram):
    """Runs an ``identity`` spec: inputs come back, unchanged, as the outputs in the same positions.

    Args:
        spec: A ``Model_pb2.Model`` of type ``identity``.

    Raises:
        SpecError: If the model declares a different number of outputs than inputs.
    """

    def __init__(self, spec: Any) -> None:
        self.inputs = inputs_of(spec)
        self.outputs = outputs_of(spec)
        if len(self.outputs) != len(self.inputs):
            raise SpecError(f"The identity model declares {len(self.inputs)} inputs but {len(self.outputs)} outputs; "
                            "give one output per input.")

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[dict[str, Any]]:
        """Pass every example through unchanged: ``{output_i: input_i}``."""
        return [{o.name: feature(ex, i) for i, o in zip(self.inputs, self.outputs, strict=True)} for ex in examples]

    def compute(self, cols: Columns, n: int) -> Columns:
        """Every input column as the output in the same position."""
        return {o.name: cols[i.name] for i, o in zip(self.inputs, self.outputs, strict=True)}
