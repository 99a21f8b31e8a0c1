"""Feature values in and out of the classic (non-network) model types.

Inputs are read as Core ML reads them:

* ``double`` and ``int64`` features take Python or numpy numbers (an ``int64`` feature also takes a
  float with an integral value, and both take a one-element array);
* ``string`` features take ``str``; ``dictionary`` features take a ``dict`` whose keys are of the
  declared key type (``str`` or ``int``) and whose values are numbers;
* multiarray features take anything numpy turns into a numeric array of the declared shape (an array
  with the declared number of values is reshaped, as a pipeline stage may hand ``[1, n]`` on), and are
  converted to the declared data type (``DOUBLE`` stays float64).

"Vectorizable" models (GLM, SVM, tree ensembles) concatenate all their inputs, in the order the
model declares them, into one feature vector per example, as Core ML does.

Outputs: ``double`` as ``float``, ``int64`` as ``int``, ``string`` as ``str``, multiarrays as numpy
arrays of the declared data type and shape, dictionaries as ``dict``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlupdate.errors import FeatureError, SpecError
from mlupdate.features.arrays import check_array
from mlupdate.spec.description import FeatureDescription
from mlupdate.spec.limits import MAX_ARRAY_ELEMENTS_ENV, max_array_elements

VECTOR_TYPES = ("double", "int64", "multiArray")


def within_limit(count: int, what: str) -> None:
    """Refuse a spec whose parameters would make ``count`` values (per example, or in a table) past the limit.

    Raises:
        SpecError: Naming ``what`` and the environment variable that raises the limit.
    """
    if count > max_array_elements():
        raise SpecError(f"{what} would make {count} values, more than the limit of {max_array_elements()} (set "
                        f"{MAX_ARRAY_ELEMENTS_ENV} to allow more); check the model's counts and sizes.")


def logistic(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` elementwise, as a new float64 array (several times faster than scipy's expit here).

    A large negative ``z`` overflows ``exp`` to infinity, which gives the limit 0.
    """
    out = np.negative(z, dtype=np.float64)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


def inputs_of(spec: Any) -> list[FeatureDescription]:
    """The model's declared inputs."""
    return [FeatureDescription.from_proto(f) for f in spec.description.input]


def outputs_of(spec: Any) -> list[FeatureDescription]:
    """The model's declared outputs."""
    return [FeatureDescription.from_proto(f) for f in spec.description.output]


def only(features: list[FeatureDescription], kind: str, what: str, types: Sequence[str]) -> FeatureDescription:
    """The single input or output (``what``) of a model that has exactly one, of one of ``types``."""
    if len(features) != 1:
        raise SpecError(f"A {kind} has exactly one {what}, but this one declares {len(features)}. Fix the "
                        "model's description.")
    fd = features[0]
    if fd.type not in types:
        raise SpecError(f"The {kind}'s {what} '{fd.name}' is {fd.type}; it must be {' or '.join(types)}. Fix the "
                        "model's description.")
    return fd


def vector_inputs(spec: Any, kind: str) -> tuple[list[FeatureDescription], int | None]:
    """The inputs of a vectorizable model and the length of the vector they make (None when unknown)."""
    fds = inputs_of(spec)
    for fd in fds:
        if fd.type not in VECTOR_TYPES:
            raise SpecError(f"The {kind}'s input '{fd.name}' is {fd.type}, but this model type reads only double, "
                            "int64 and multiarray inputs. Put a dictVectorizer, oneHotEncoder or featureVectorizer "
                            "before it in a pipeline.")
    if any(fd.type == "multiArray" and not fd.shape for fd in fds):
        return fds, None
    return fds, sum(math.prod(fd.shape) if fd.type == "multiArray" else 1 for fd in fds)


def feature(example: dict[str, Any], fd: FeatureDescription) -> Any:
    """The example's value of ``fd``, or a FeatureError when it is missing."""
    value = example.get(fd.name)
    if value is None:
        raise FeatureError(f"Missing input '{fd.name}' ({fd}). Pass it in the features dictionary.")
    return value


def number(value: Any, fd: FeatureDescription) -> float:
    """A ``double`` feature's value."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise FeatureError(f"Input '{fd.name}' is a {fd.type}; pass a number, got {type(value).__name__}.")
    return float(value)


def integer(value: Any, fd: FeatureDescription) -> int:
    """An ``int64`` feature's value."""
    x = number(value, fd)
    if not x.is_integer():
        raise FeatureError(f"Input '{fd.name}' is an int64; pass an integer, got {value!r}.")
    return int(x)


def string(value: Any, fd: FeatureDescription) -> str:
    """A ``string`` feature's value."""
    if not isinstance(value, str):
        raise FeatureError(f"Input '{fd.name}' is a string; pass a str, got {type(value).__name__}.")
    return str(value)


def dictionary(value: Any, fd: FeatureDescription) -> dict[Any, float]:
    """A ``dictionary`` feature's value: keys of the declared type, values as floats."""
    if not isinstance(value, dict):
        raise FeatureError(f"Input '{fd.name}' is a dictionary ({fd}); pass a dict, got {type(value).__name__}.")
    want = str if fd.dtype == "str" else int
    out: dict[Any, float] = {}
    for key, v in value.items():
        ok = isinstance(key, str) if want is str else isinstance(key, (int, np.integer)) and not isinstance(key, bool)
        if not ok:
            raise FeatureError(f"Input '{fd.name}' has {want.__name__} keys, but key {key!r} is a "
                               f"{type(key).__name__}. Pass a dict with {want.__name__} keys.")
        out[want(key)] = number(v, FeatureDescription(f"{fd.name}[{key!r}]", "double"))
    return out


def array(value: Any, fd: FeatureDescription) -> np.ndarray:
    """A multiarray feature's value, of the declared shape and data type."""
    if isinstance(value, (list, tuple)):
        try:
            value = np.asarray(value)
        except ValueError as exc:
            raise FeatureError(f"Input '{fd.name}' must be a numeric array of shape {fd.shape_text()}: {exc}") from None
    if (isinstance(value, np.ndarray) and fd.shape and not fd.flexible and value.dtype != object
            and value.size == math.prod(fd.shape)):
        value = value.reshape(fd.shape)
    check_array(value, fd)
    return np.asarray(value).astype(fd.dtype or "float64")


def vector(example: dict[str, Any], fd: FeatureDescription) -> np.ndarray:
    """One vectorizable input's values as float64."""
    value = feature(example, fd)
    if fd.type == "double":
        return np.asarray([number(value, fd)])
    if fd.type == "int64":
        return np.asarray([integer(value, fd)], dtype=np.float64)
    return array(value, fd).reshape(-1).astype(np.float64)


def stack_exact(examples: Sequence[dict[str, Any]], fd: FeatureDescription) -> np.ndarray | None:
    """The batch in one step when every value is a numeric array of exactly the declared shape, else None.

    What :func:`array` does per example (the declared data type, then float64), without its per-value checks,
    which such values pass; any other value takes the checked path.
    """
    values = [ex.get(fd.name) for ex in examples]
    shape = tuple(fd.shape)
    if not all(isinstance(v, np.ndarray) and v.shape == shape and (v.dtype.kind in "biuf") for v in values):
        return None
    return np.stack(values).astype(fd.dtype or "float64").reshape(len(values), -1).astype(np.float64)


def output(value: Any, fd: FeatureDescription) -> Any:
    """A computed value as the declared output type returns it."""
    if fd.type == "multiArray":
        arr = np.asarray(value).astype(fd.dtype or "float64")
        return arr.reshape(fd.shape) if fd.shape and math.prod(fd.shape) == arr.size else arr
    if fd.type in ("double", "int64"):
        flat = np.asarray(value).reshape(-1)
        if flat.size != 1:
            raise SpecError(f"Output '{fd.name}' is a {fd.type} but the model computes {flat.size} values; declare it "
                            "as a multiarray.")
        return float(flat[0]) if fd.type == "double" else int(flat[0])
    return value


def regressor_output(spec: Any, kind: str, dims: int) -> FeatureDescription:
    """The output a regressor writes its prediction to (``predictedFeatureName``, else the only output)."""
    outs = outputs_of(spec)
    name = spec.description.predictedFeatureName
    found = [fd for fd in outs if fd.name == name] if name else outs[:1] if len(outs) == 1 else []
    if not found:
        raise SpecError(f"The {kind} does not say which output holds its prediction; set "
                        "description.predictedFeatureName to the name of a declared output.")
    fd = found[0]
    if fd.type not in ("double", "multiArray") or (fd.type == "double" and dims != 1):
        raise SpecError(f"The {kind}'s output '{fd.name}' is {fd.type} but the model predicts {dims} value(s); "
                        f"declare it as {'a double or ' if dims == 1 else ''}a multiarray.")
    return fd


def class_labels(msg: Any, kind: str) -> list[Any]:
    """The ``stringClassLabels`` / ``int64ClassLabels`` of a classifier message, in score order."""
    which = msg.WhichOneof("ClassLabels")
    if which is None:
        raise SpecError(f"The {kind} has no class labels; set stringClassLabels or int64ClassLabels.")
    if which == "stringClassLabels":
        return list(msg.stringClassLabels.vector)
    return [int(v) for v in msg.int64ClassLabels.vector]
