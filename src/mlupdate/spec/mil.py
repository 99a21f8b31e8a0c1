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
from mlupdate.spec.package import BLOB_DTYPES, SUB_BYTE, Weights, unpack

#: MIL.proto DataType codes to dtype names (numpy names, or the packed types of :func:`package.unpack`).
DATA_TYPES: dict[int, str] = {
    1: "bool", 2: "str", 10: "float16", 11: "float32", 12: "float64", 13: "bfloat16", 21: "int8", 22: "int16",
    23: "int32", 24: "int64", 25: "int4", 31: "uint8", 32: "uint16", 33: "uint32", 34: "uint64", 35: "uint4",
    36: "uint2", 37: "uint1", 38: "uint6", 39: "uint3", 40: "float8e4m3fn", 41: "float8e5m2",
}

#: The numpy dtype a decoded value of each type is held in.
HELD: dict[str, str] = {**{k: "int8" if k == "int4" else "uint8" for k in SUB_BYTE},
                        "bfloat16": "float32", "float8e4m3fn": "float32", "float8e5m2": "float32"}


#: Bits per stored element of the types blobs (and immediate bytes) hold.
STORED_BITS: dict[str, int] = dict(BLOB_DTYPES.values())


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


def immediate_tensor(tv: Any, tt: TensorType, where: str) -> Any:
    """An immediate ``TensorValue`` as a numpy array of its declared type and shape (a scalar string as a str)."""
    shape = tuple(int(d) for d in tt.shape or ())
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if n > max_array_elements():
        raise SpecError(f"{where} declares {n} values, more than the limit of {max_array_elements()} (set "
                        f"{MAX_ARRAY_ELEMENTS_ENV} to allow more).")
    field = tv.WhichOneof("value")
    if field == "bytes":
        raw = tv.bytes.values
        bits = STORED_BITS.get(tt.dtype) or np.dtype(tt.dtype).itemsize * 8
        if tt.dtype in ("bool", "str") or len(raw) != -(-n * bits // 8):
            raise SpecError(f"{where} declares {n} {tt.dtype} values but stores {len(raw)} bytes.")
        return unpack(raw, tt.dtype, shape)
    if field is None:
        values: list[Any] = []
    else:
        values = list(getattr(tv, field).values)
    if len(values) != n:
        raise SpecError(f"{where} declares shape {list(shape)} ({n} values) but stores {len(values)}.")
    if tt.dtype == "str":  # a mode or name: a Python str, or an array of them
        return str(values[0]) if not shape else np.array(values, dtype=str).reshape(shape)
    held = HELD.get(tt.dtype, tt.dtype)
    return np.array(values, dtype=held).reshape(shape)


def select_function(spec: Any, name: str | None) -> Any:
    """The spec with the interface of function ``name`` (None: the default one) as its description.

    A multifunction model (``coremltools.utils.save_multifunction``) lists each function's inputs and outputs in
    ``description.functions``; the chosen one becomes the spec's own description and ``defaultFunctionName``,
    which is what :mod:`mlupdate.runtime.mlprogram` runs. Other specs come back unchanged (``name`` None or
    ``main``).

    Raises:
        SpecError: For a function the model does not have.
    """
    d = spec.description
    if not d.functions:
        if name not in (None, "main") and (spec.WhichOneof("Type") != "mlProgram"
                                           or name not in spec.mlProgram.functions):
            raise SpecError(f"The model has no function '{name}'; it has one function (main): leave "
                            "function_name out.")
        if name not in (None, "main"):
            d.defaultFunctionName = name
        return spec
    chosen = name or d.defaultFunctionName or d.functions[0].name
    found = [f for f in d.functions if f.name == chosen]
    if not found:
        raise SpecError(f"The model has no function '{chosen}'; its functions are "
                        f"{[f.name for f in d.functions]}. Pass one of those as function_name.")
    f = found[0]
    for field in ("input", "output", "state"):
        d.ClearField(field)
        getattr(d, field).extend(getattr(f, field))
    d.predictedFeatureName = f.predictedFeatureName
    d.predictedProbabilitiesName = f.predictedProbabilitiesName
    d.defaultFunctionName = chosen
    return spec


def function_names(program: Any) -> list[str]:
    """The functions of a ``Program`` message, ``main`` first."""
    return sorted(program.functions, key=lambda n: (n != "main", n))


def function_of(spec: Any) -> str:
    """The function a spec runs: its ``defaultFunctionName``, else ``main``."""
    return spec.description.defaultFunctionName or "main"


def check_program(spec: Any, where: str = "The model") -> None:
    """Check what can be checked of an ML Program without compiling it: its function, opset and interface.

    Raises:
        SpecError: For a program without the function it should run, a function without the block of its opset,
            or a model without inputs.
    """
    program = spec.mlProgram
    name = function_of(spec)
    if name not in program.functions:
        raise SpecError(f"{where} is an ML Program without a function '{name}' (it has {sorted(program.functions)}). "
                        "Save the model again with coremltools, or pass function_name.")
    fn = program.functions[name]
    if fn.opset not in fn.block_specializations:
        raise SpecError(f"{where}: function '{name}' names opset '{fn.opset}' but holds no block for it.")
    if not spec.description.input and not spec.description.state:
        raise SpecError(f"{where} declares no inputs; Core ML models need at least one. Fix the model's description.")


def program_summary(spec: Any) -> dict[str, Any]:
    """The functions of an ML Program with their opset, inputs, outputs and op counts (nested blocks included)."""
    functions = []
    for name in function_names(spec.mlProgram):
        fn = spec.mlProgram.functions[name]
        counts: dict[str, int] = {}
        block = fn.block_specializations.get(fn.opset)
        if block is not None:
            _count_ops(block, counts)
        functions.append({"name": name, "opset": fn.opset, "inputs": [i.name for i in fn.inputs],
                          "outputs": list(block.outputs) if block is not None else [],
                          "ops": dict(sorted(counts.items()))})
    return {"default_function": function_of(spec), "functions": functions}


def _count_ops(block: Any, counts: dict[str, int]) -> None:
    for op in block.operations:
        counts[op.type] = counts.get(op.type, 0) + 1
        for inner in op.blocks:
            _count_ops(inner, counts)


def classifier_of(spec: Any, function: str) -> tuple[str, str, list[Any]] | None:
    """The ``classify`` op of a function's block: its label and probabilities outputs and its classes; else None.

    Raises:
        SpecError: For a classify op whose classes are not a constant list of strings or integers.
    """
    fn = spec.mlProgram.functions[function]
    block = fn.block_specializations[fn.opset]
    consts = {op.outputs[0].name: op.attributes["val"] for op in block.operations
              if op.type == "const" and op.outputs and "val" in op.attributes}
    for op in block.operations:
        if op.type != "classify" or "classes" not in op.inputs or not op.inputs["classes"].arguments:
            continue
        binding = op.inputs["classes"].arguments[0]
        value = binding.value if binding.WhichOneof("binding") == "value" else consts.get(binding.name)
        if value is None:
            raise SpecError(f"The classify op of function '{function}' takes its classes from '{binding.name}', "
                            "which is not a constant.")
        classes = _flat(decode_value(value, Weights(None), "The classify op's classes"))
        if not all(isinstance(c, (str, int)) for c in classes):
            raise SpecError("The classify op's classes must be strings or integers.")
        outputs = [o.name for o in op.outputs]
        return outputs[0], outputs[1] if len(outputs) > 1 else "", classes
    return None


def _flat(value: Any) -> list[Any]:
    if isinstance(value, np.ndarray):
        return [v.item() if isinstance(v, np.generic) else v for v in value.reshape(-1)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flat(v)]
    return [value]
