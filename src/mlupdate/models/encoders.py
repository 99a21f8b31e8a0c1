"""Encoders (``oneHotEncoder``, ``dictVectorizer``, ``featureVectorizer``, ``categoricalMapping``).

Semantics (Core ML's ``OneHotEncoder.proto``, ``DictVectorizer.proto``, ``FeatureVectorizer.proto``,
``CategoricalMapping.proto`` and their validators; where Core ML documents nothing, mlupdate's choice,
marked *choice*):

* oneHotEncoder: one int64 or string input; the category's position in the model's list gets 1.0.
  Dense output: a multiarray with one value per category. ``outputSparse``: a dictionary
  ``{position: 1.0}`` (int64 keys). An unknown category is an error (``ErrorOnUnknown``) or all zeros
  (``IgnoreUnknown``: an empty dictionary when sparse).
* dictVectorizer: one dictionary input; each key's position in the model's list receives its value,
  keys not in the input stay 0. Multiarray output: the dense vector; dictionary output (what
  coremltools writes): ``{position: value}`` for the keys given. A key the model does not list is an
  error (the proto: "All keys in the input dictionary must be present in the index mapping vector").
* featureVectorizer: the listed inputs, in list order, concatenated into one multiarray: a double or
  int64 gives one value, a multiarray its values (``inputDimensions`` of them), an int64-keyed
  dictionary a dense vector of ``inputDimensions`` values with ``value[key]`` at position ``key``.
* categoricalMapping: string to int64 or int64 to string through the model's map, the
  ``ValueOnUnknown`` for other inputs (an error when unset); a sequence input maps each element.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlupdate.errors import FeatureError, SpecError
from mlupdate.models.columns import ColumnProgram, Columns, Keyed, dicts_of, output_column
from mlupdate.models.values import (
    inputs_of,
    integer,
    only,
    outputs_of,
    string,
    within_limit,
)


class OneHotEncoderProgram(ColumnProgram):
    """Runs a ``oneHotEncoder`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``oneHotEncoder``.

    Raises:
        SpecError: If the categories, input or output do not fit together.
    """

    def __init__(self, spec: Any) -> None:
        ohe = spec.oneHotEncoder
        which = ohe.WhichOneof("CategoryType")
        if which is None:
            raise SpecError("The oneHotEncoder has no categories; set stringCategories or int64Categories.")
        want = "string" if which == "stringCategories" else "int64"
        self.input = only(inputs_of(spec), "oneHotEncoder", "input", (want,))
        self.sparse = bool(ohe.outputSparse)
        self.output = only(outputs_of(spec), "oneHotEncoder", "output", ("dictionary",) if self.sparse
                           else ("multiArray",))
        values = getattr(ohe, which).vector
        self.index = {v if want == "string" else int(v): i for i, v in reversed(list(enumerate(values)))}
        self.size = len(values)
        self.ignore_unknown = ohe.handleUnknown == 1
        self.inputs = [self.input]
        if want == "int64":
            self.sorted_keys = np.asarray(sorted(self.index), dtype=np.int64)
            self.sorted_pos = np.asarray([self.index[k] for k in self.sorted_keys.tolist()], dtype=np.int64)

    def compute(self, cols: Columns, n: int) -> Columns:
        """The encoded column: ``{output: one-hot arrays or {position: 1.0} dicts}``."""
        col = cols[self.input.name]
        if self.input.type == "int64" and not self.size:
            pos = np.full(n, -1)
        elif self.input.type == "int64":  # a sorted lookup of the whole column
            at = np.searchsorted(self.sorted_keys, col)
            at = np.minimum(at, len(self.sorted_keys) - 1)
            pos = np.where(self.sorted_keys[at] == col, self.sorted_pos[at], -1)
        else:
            index = self.index
            pos = np.fromiter((index.get(v, -1) for v in col.tolist()), dtype=np.int64, count=n)
        if not self.ignore_unknown and (pos < 0).any():
            value = col[int(np.argmax(pos < 0))]
            raise FeatureError(f"Input '{self.input.name}' is {value!r}, which is not one of the encoder's "
                               f"{self.size} categories; pass a known category (or set handleUnknown to "
                               "IgnoreUnknown).")
        dense = np.zeros((n, self.size + 1))  # one spare column takes the unknown categories (-1)
        dense[np.arange(n), pos] = 1.0
        if self.sparse:
            return {self.output.name: Keyed(range(self.size), dense[:, :self.size], dense[:, :self.size] > 0)}
        return {self.output.name: output_column(dense[:, :self.size], self.output)}


class DictVectorizerProgram(ColumnProgram):
    """Runs a ``dictVectorizer`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``dictVectorizer``.

    Raises:
        SpecError: If the map, input or output do not fit together.
    """

    def __init__(self, spec: Any) -> None:
        dv = spec.dictVectorizer
        which = dv.WhichOneof("Map")
        if which is None:
            raise SpecError("The dictVectorizer has no index map; set stringToIndex or int64ToIndex.")
        self.input = only(inputs_of(spec), "dictVectorizer", "input", ("dictionary",))
        want = "str" if which == "stringToIndex" else "int64"
        if self.input.dtype != want:
            raise SpecError(f"The dictVectorizer maps {want} keys but its input '{self.input.name}' has "
                            f"{self.input.dtype} keys; they must agree.")
        self.output = only(outputs_of(spec), "dictVectorizer", "output", ("multiArray", "dictionary"))
        keys = getattr(dv, which).vector
        self.index = {k if want == "str" else int(k): i for i, k in reversed(list(enumerate(keys)))}
        self.size = len(keys)
        self.inputs = [self.input]

    def compute(self, cols: Columns, n: int) -> Columns:
        """The vectorized column: ``{output: arrays or {position: value} dicts}``."""
        sparse = []
        for given in dicts_of(cols[self.input.name]):
            try:
                sparse.append({self.index[k]: v for k, v in given.items()})
            except KeyError:
                unknown = [k for k in given if k not in self.index]
                raise FeatureError(f"Input '{self.input.name}' has keys {unknown[:5]} that the dictVectorizer does "
                                   f"not map; it knows {list(self.index)[:10]}. Drop the unknown keys.") from None
        if self.output.type == "dictionary":
            return {self.output.name: sparse}
        dense = np.zeros((n, self.size))
        for i, entries in enumerate(sparse):
            dense[i, list(entries)] = list(entries.values())
        return {self.output.name: output_column(dense, self.output)}


class FeatureVectorizerProgram(ColumnProgram):
    """Runs a ``featureVectorizer`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``featureVectorizer``.

    Raises:
        SpecError: If a listed column is not a declared input or its size does not fit its type.
    """

    def __init__(self, spec: Any) -> None:
        declared = {fd.name: fd for fd in inputs_of(spec)}
        self.columns = []
        for col in spec.featureVectorizer.inputList:
            fd = declared.get(col.inputColumn)
            size = int(col.inputDimensions)
            if fd is None:
                raise SpecError(f"The featureVectorizer lists column '{col.inputColumn}', which is not one of its "
                                f"inputs {list(declared)}; declare it as an input.")
            if size <= 0 or fd.type not in ("double", "int64", "multiArray", "dictionary") or (
                    fd.type in ("double", "int64") and size != 1) or (fd.type == "dictionary" and fd.dtype != "int64"):
                raise SpecError(f"The featureVectorizer's column '{fd.name}' ({fd}) cannot give {size} values: "
                                "doubles and int64s give 1, multiarrays their size, int64-keyed dictionaries "
                                "inputDimensions (string-keyed ones need a dictVectorizer first).")
            if fd.type == "multiArray" and fd.shape and not fd.flexible and math.prod(fd.shape) != size:
                raise SpecError(f"The featureVectorizer's column '{fd.name}' has shape {list(fd.shape)} but "
                                f"inputDimensions {size}; they must agree.")
            self.columns.append((fd, size))
        within_limit(sum(size for _, size in self.columns), "The featureVectorizer's inputDimensions")
        if not self.columns:
            raise SpecError("The featureVectorizer lists no input columns; add inputList entries.")
        self.output = only(outputs_of(spec), "featureVectorizer", "output", ("multiArray",))
        self.inputs = list({fd.name: fd for fd, _ in self.columns}.values())

    @staticmethod
    def block(col: Any, fd: Any, size: int, n: int) -> np.ndarray:
        """One listed input's ``[N, size]`` values."""
        if isinstance(col, Keyed) and all(isinstance(k, int) for k in col.keys):
            keys = np.asarray(list(col.keys), dtype=np.int64)
            used = col.present.any(axis=0) if col.present is not None else np.ones(len(keys), dtype=bool)
            if ((keys[used] < 0) | (keys[used] >= size)).any():
                bad = int(keys[used][(keys[used] < 0) | (keys[used] >= size)][0])
                raise FeatureError(f"Input '{fd.name}' has key {bad}, outside the featureVectorizer's 0..{size - 1}.")
            dense = np.zeros((n, size))
            values = col.values if col.present is None else np.where(col.present, col.values, 0.0)
            dense[:, keys[used]] = values[:, used]
            return dense
        if fd.type == "dictionary":
            dense = np.zeros((n, size))
            for i, given in enumerate(dicts_of(col)):
                for key, v in given.items():
                    if not 0 <= key < size:
                        raise FeatureError(f"Input '{fd.name}' has key {key}, outside the featureVectorizer's "
                                           f"0..{size - 1}.")
                    dense[i, key] = v
            return dense
        if isinstance(col, list):  # flexible arrays: each example on its own
            col = [a.reshape(-1) for a in col]
            if {a.size for a in col} != {size}:
                bad = next(a.size for a in col if a.size != size)
                raise FeatureError(f"Input '{fd.name}' has {bad} values; the featureVectorizer takes {size}.")
            return np.stack(col).astype(np.float64)
        arr = np.asarray(col, dtype=np.float64).reshape(n, -1)
        if arr.shape[1] != size:
            raise FeatureError(f"Input '{fd.name}' has {arr.shape[1]} values; the featureVectorizer takes {size}.")
        return arr

    def compute(self, cols: Columns, n: int) -> Columns:
        """The listed inputs concatenated: ``{output: arrays}``."""
        blocks = [self.block(cols[fd.name], fd, size, n) for fd, size in self.columns]
        return {self.output.name: output_column(np.concatenate(blocks, axis=1), self.output)}


class CategoricalMappingProgram(ColumnProgram):
    """Runs a ``categoricalMapping`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``categoricalMapping``.

    Raises:
        SpecError: If the map, the default or the interface types disagree.
    """

    def __init__(self, spec: Any) -> None:
        cm = spec.categoricalMapping
        which = cm.WhichOneof("MappingType")
        if which is None:
            raise SpecError("The categoricalMapping has no map; set stringToInt64Map or int64ToStringMap.")
        to_int = which == "stringToInt64Map"
        source, target = ("string", "int64") if to_int else ("int64", "string")
        self.input = only(inputs_of(spec), "categoricalMapping", "input", (source, "sequence"))
        self.output = only(outputs_of(spec), "categoricalMapping", "output", (target, "sequence"))
        if (self.input.type == "sequence") != (self.output.type == "sequence"):
            raise SpecError("The categoricalMapping maps a sequence to a single value (or back); make the input and "
                            "the output both sequences or both single values.")
        for fd, kind in ((spec.description.input[0], source), (spec.description.output[0], target)):
            element = fd.type.sequenceType.WhichOneof("Type")
            if fd.type.WhichOneof("Type") == "sequenceType" and element != f"{kind}Type":
                raise SpecError(f"The categoricalMapping's '{fd.name}' must be a sequence of {kind}s, as its map "
                                "needs; fix the description.")
        self.source = source
        self.map = dict(getattr(cm, which).map)
        default = cm.WhichOneof("ValueOnUnknown")
        if default == ("strValue" if to_int else "int64Value"):
            raise SpecError(f"The categoricalMapping produces {target} but its ValueOnUnknown is a {source}; set "
                            f"{'int64Value' if to_int else 'strValue'} instead.")
        self.default = getattr(cm, default) if default else None
        self.inputs = [self.input]

    def convert(self, value: Any) -> Any:
        """One value through the map."""
        key = (string if self.source == "string" else integer)(value, self.input)
        if key in self.map:
            return self.map[key]
        if self.default is None:
            raise FeatureError(f"Input '{self.input.name}' is {key!r}, which the categoricalMapping does not map and "
                               "it has no ValueOnUnknown; pass a mapped value.")
        return self.default

    def compute(self, cols: Columns, n: int) -> Columns:
        """The mapped column: ``{output: values}`` (lists for sequences)."""
        col = cols[self.input.name]
        if self.input.type == "sequence":
            for value in col:
                if not isinstance(value, (list, tuple)):
                    raise FeatureError(f"Input '{self.input.name}' is a sequence; pass a list.")
            return {self.output.name: [[self.convert(v) for v in value] for value in col]}
        mapping, default = self.map, self.default
        values = col.tolist()
        out = [mapping.get(v, default) for v in values]
        if default is None and None in out:
            self.convert(values[out.index(None)])  # raises the error naming the unmapped value
        return {self.output.name: np.asarray(out, dtype=object if self.source == "int64" else np.int64)}
