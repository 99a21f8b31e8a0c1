"""How an ML Program's declared types are held while it runs on the CPU (and on CUDA).

fp16 is stored, not computed in: every value whose declared type is fp16 is held in float32 and rounded to fp16
(round to nearest even, overflow to infinity) after the op that produces it, so each op computes in float32 on
fp16-rounded inputs and its result is stored as fp16 again. That is what Apple's GPU and Neural Engine do with
fp16 tensors (fp16 storage, wider accumulation); see the "ML Programs" section of ``docs/differences.md`` for how
far results can differ from Apple hardware. Integer and bool values take exactly their declared type (int16 and
the unsigned types are held in the next wider signed torch type, sub-byte types in int8 / uint8).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mlupdate.errors import LayerError, SpecError
from mlupdate.ops import OpContext
from mlupdate.spec.mil import OtherType, TensorType

#: Declared dtype -> the numpy dtype it is held in.
HELD_NUMPY: dict[str, str] = {
    "float16": "float32", "bfloat16": "float32", "float8e4m3fn": "float32", "float8e5m2": "float32",
    "float32": "float32", "float64": "float64", "bool": "bool", "int8": "int8", "int16": "int16", "int32": "int32",
    "int64": "int64", "uint8": "uint8", "uint16": "int32", "uint32": "int64", "uint64": "int64", "int4": "int8",
    "uint1": "uint8", "uint2": "uint8", "uint3": "uint8", "uint4": "uint8", "uint6": "uint8",
}

_TORCH = {"float32": torch.float32, "float64": torch.float64, "bool": torch.bool, "int8": torch.int8,
          "int16": torch.int16, "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8}

#: Ops whose fp16 outputs are fp16 inputs moved or selected, never computed: no rounding needed after them.
EXACT_OPS = frozenset({
    "reshape", "transpose", "squeeze", "expand_dims", "slice_by_index", "slice_by_size", "concat", "stack",
    "split", "gather", "gather_nd", "gather_along_axis", "identity", "relu", "max_pool", "reduce_max", "reduce_min",
    "flatten2d", "tile", "pixel_shuffle", "pixel_unshuffle", "space_to_depth", "depth_to_space", "reverse",
    "reverse_sequence", "sliding_windows", "crop", "upsample_nearest_neighbor", "pad", "select", "clip",
})


def torch_dtype(dtype: str) -> torch.dtype | None:
    """The torch dtype a declared MIL dtype is held in (None for strings)."""
    held = HELD_NUMPY.get(dtype)
    return _TORCH.get(held) if held else None


def hold(value: Any, declared: TensorType | OtherType, where: str) -> Any:
    """A compile-time constant as it is held: rounded to fp16 where declared so, in the held dtype.

    Raises:
        SpecError: When the value's shape differs from a fully declared shape.
    """
    if not isinstance(value, np.ndarray) or value.dtype.kind in "OUS" or not isinstance(declared, TensorType):
        return value
    if declared.shape is not None and None not in declared.shape and tuple(value.shape) != declared.shape:
        raise SpecError(f"The constant of op '{where}' has shape {list(value.shape)} but is declared "
                        f"{list(declared.shape)}. Save the model again with coremltools.")
    if declared.dtype == "float16":
        value = value.astype(np.float16)
    return value.astype(HELD_NUMPY.get(declared.dtype, value.dtype.name))


def held_tensor(value: Any, declared: TensorType | OtherType, ctx: OpContext, exact: bool) -> Any:
    """An op's output as it is held: its declared dtype, fp16 rounded (unless the op is ``exact``).

    Raises:
        LayerError: When a fully declared shape differs from what the op computed.
    """
    target = torch_dtype(declared.dtype) if isinstance(declared, TensorType) else None
    if target is None or not isinstance(value, torch.Tensor):  # strings, lists, states, classifier outputs
        return value
    if declared.shape is not None and None not in declared.shape and tuple(value.shape) != declared.shape:
        raise LayerError(f"Op '{ctx.name}' ({ctx.op_type}) computed shape {list(value.shape)} where the program "
                         f"declares {list(declared.shape)}: the inputs do not fit the program.")
    if declared.dtype == "float16":
        if not exact or value.dtype != torch.float32:
            value = value.to(torch.float16).to(torch.float32)
        return value
    return value if value.dtype == target else value.to(target)
