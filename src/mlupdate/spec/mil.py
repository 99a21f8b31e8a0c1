"""Decode the values and types of an ML Program (``MIL.proto``) into numpy, without torch.

Immediate tensors are stored as coremltools writes them (``converters/mil/backend/mil/helper.py``): fp32 in
``floats``, fp64 in ``doubles``, int16/uint16/int32 in ``ints``, int64/uint64 in ``longInts``, bools, strings,
and fp16, int8, uint8, uint32 and the sub-byte types packed little-endian in ``bytes``. Blob file values are read
from the model's weights (:class:`mlupdate.spec.package.Weights`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlupdate.errors import SpecError
from mlupdate.spec.limits import MAX_ARRAY_ELEMENTS_ENV, max_array_elements
from mlupdate.spec.package import SUB_BYTE, Weights, unpack

#: MIL.proto DataType codes to dtype names (numpy names, or the packed types of :func:`package.unpack`).
DATA_TYPES: dict[int, str] = {
    1: "bool", 2: "str", 10: "float16", 11: "float32", 12: "float64", 13: "bfloat16", 21: "int8", 22: "int16",
    23: "int32", 24: "int64", 25: "int4", 31: "uint8", 32: "uint16", 33: "uint32", 34: "uint64", 35: "uint4",
    36: "uint2", 37: "uint1", 38: "uint6", 39: "uint3", 40: "float8e4m3fn", 41: "float8e5m2",
}

#: The numpy dtype a decoded value of each type is held in.
HELD: dict[str, str] = {**{k: "int8" if k == "int4" else "uint8" for k in SUB_BYTE},
                        "bfloat16": "float32", "float8e4m3fn": "float32", "float8e5m2": "float32", "str": "object"}


@dataclass(frozen=True)
class TensorType:
    """A declared tensor type: dtype name and shape (None for a symbolic dimension; shape None: unknown rank)."""

    dtype: str
    shape: tuple[int | None, ...] | None


@dataclass(frozen=True)
class OtherType:
    """A declared list, tuple, dictionary or state type (``kind``), with the tensor type inside, if any."""

    kind: str
    inner: TensorType | None = None


def value_type(vt: Any, where: str) -> TensorType | OtherType:
    """Decode a ``ValueType``.

    Raises:
        SpecError: For a value without a type or a data type MIL does not define.
    """
    kind = vt.WhichOneof("type")
    if kind == "tensorType":
        return tensor_type(vt.tensorType, where)
    if kind == "stateType":
        inner = value_type(vt.stateType.wrappedType, where)
        return OtherType("state", inner if isinstance(inner, TensorType) else None)
    if kind == "listType":
        inner = value_type(vt.listType.type, where) if vt.listType.HasField("type") else None
        return OtherType("list", inner if isinstance(inner, TensorType) else None)
    if kind in ("tupleType", "dictionaryType"):
        return OtherType(kind[:-4])
    raise SpecError(f"{where} has no type; every value of an ML Program declares one. Save the model again.")


def tensor_type(tt: Any, where: str) -> TensorType:
    """Decode a ``TensorType`` (its data type and dimensions)."""
    dtype = DATA_TYPES.get(tt.dataType)
    if dtype is None:
        raise SpecError(f"{where} has data type code {tt.dataType}, which MIL does not define.")
    dims = [d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in tt.dimensions]
    if any(d is None and t.unknown.variadic for d, t in zip(dims, tt.dimensions, strict=True)):
        return TensorType(dtype, None)
    if len(dims) != tt.rank and tt.rank >= 0:
        raise SpecError(f"{where} declares rank {tt.rank} with {len(dims)} dimensions.")
    return TensorType(dtype, tuple(dims))


def decode_value(value: Any, weights: Weights, where: str) -> Any:
    """A ``Value`` as numpy: a tensor, or a tuple / list / dict of decoded values.

    Raises:
        SpecError: For a value whose stored data does not fit its declared type or shape, or exceeds the limits.
    """
    kind = value.WhichOneof("value")
    vt = value_type(value.type, where)
    if kind == "blobFileValue":
        if not isinstance(vt, TensorType) or vt.shape is None or None in vt.shape:
            raise SpecError(f"{where} is stored in a weights file without a fixed tensor shape.")
        blob = value.blobFileValue
        shape = tuple(int(d) for d in vt.shape)  # type: ignore[arg-type]
        return weights.file(blob.fileName).read(int(blob.offset), vt.dtype, shape, where)
    if kind != "immediateValue":
        raise SpecError(f"{where} holds no value (neither immediate nor in a weights file).")
    imm = value.immediateValue
    which = imm.WhichOneof("value")
    if which == "tensor":
        if not isinstance(vt, TensorType) or vt.shape is None or None in vt.shape:
            raise SpecError(f"{where} is an immediate tensor without a fixed shape.")
        return immediate_tensor(imm.tensor, vt, where)
    if which in ("tuple", "list"):
        items = [decode_value(v, weights, f"{where}[{i}]") for i, v in enumerate(getattr(imm, which).values)]
        return tuple(items) if which == "tuple" else items
    if which == "dictionary":
        return {_key(decode_value(kv.key, weights, where)): decode_value(kv.value, weights, where)
                for kv in imm.dictionary.values}
    raise SpecError(f"{where} is an empty immediate value.")


def _key(value: Any) -> Any:
    return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


def immediate_tensor(tv: Any, tt: TensorType, where: str) -> np.ndarray:
    """An immediate ``TensorValue`` as a numpy array of its declared type and shape."""
    shape = tuple(int(d) for d in tt.shape or ())
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if n > max_array_elements():
        raise SpecError(f"{where} declares {n} values, more than the limit of {max_array_elements()} (set "
                        f"{MAX_ARRAY_ELEMENTS_ENV} to allow more).")
    field = tv.WhichOneof("value")
    if field == "bytes":
        raw = tv.bytes.values
        bits = SUB_BYTE.get(tt.dtype) or np.dtype(HELD.get(tt.dtype, tt.dtype)).itemsize * 8
        if tt.dtype in ("bool", "str") or len(raw) != -(-n * bits // 8):
            raise SpecError(f"{where} declares {n} {tt.dtype} values but stores {len(raw)} bytes.")
        return unpack(raw, tt.dtype, shape)
    if field is None:
        values: list[Any] = []
    else:
        values = list(getattr(tv, field).values)
    if len(values) != n:
        raise SpecError(f"{where} declares shape {list(shape)} ({n} values) but stores {len(values)}.")
    if tt.dtype == "str":
        return np.array(values, dtype=object).reshape(shape)
    held = HELD.get(tt.dtype, tt.dtype)
    return np.array(values, dtype=held).reshape(shape)
