"""Reading and writing ``WeightParams`` (float, float16, raw bytes, quantized)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlupdate.errors import SpecError


def weight_array(wp: Any, expected: int | None, what: str) -> np.ndarray:
    """Decode a ``WeightParams`` into a flat float32 array.

    Args:
        wp: The ``WeightParams`` message.
        expected: Element count the layer's shape implies, or None to skip the check.
        what: ``"layer 'name' weights"`` for error messages.

    Raises:
        SpecError: If the count does not match ``expected``.
    """
    if len(wp.floatValue):
        arr = np.asarray(wp.floatValue, dtype=np.float32)
    elif len(wp.float16Value):
        arr = np.frombuffer(wp.float16Value, dtype=np.float16).astype(np.float32)
    elif wp.HasField("quantization"):
        arr = _dequantize(wp, expected, what)
    elif len(wp.rawValue):
        arr = np.frombuffer(wp.rawValue, dtype=np.float32).copy()
    else:
        arr = np.zeros(0, dtype=np.float32)
    if expected is not None and arr.size != expected:
        raise SpecError(
            f"{what} hold {arr.size} values but the declared shape needs {expected}. The model file is "
            "inconsistent; re-export it from its source framework."
        )
    return arr


def _dequantize(wp: Any, expected: int | None, what: str) -> np.ndarray:
    q = wp.quantization
    nbits = int(q.numberOfBits)
    raw = np.frombuffer(wp.rawValue, dtype=np.uint8)
    bits = np.unpackbits(raw, bitorder="little")
    n = expected if expected is not None else bits.size // nbits
    codes = bits[: n * nbits].reshape(n, nbits).dot(1 << np.arange(nbits)).astype(np.int64)
    which = q.WhichOneof("QuantizationType")
    if which == "lookupTableQuantization":
        table = np.asarray(q.lookupTableQuantization.floatValue, dtype=np.float32)
        return table[codes]
    if which == "linearQuantization":
        scale = np.asarray(q.linearQuantization.scale, dtype=np.float32)
        bias = np.asarray(q.linearQuantization.bias, dtype=np.float32)
        if scale.size == 1:
            return (codes * scale[0] + bias[0]).astype(np.float32)
        per = n // scale.size
        rows = codes.reshape(scale.size, per)
        return (rows * scale[:, None] + bias[:, None]).reshape(-1).astype(np.float32)
    raise SpecError(f"{what} use an unknown quantization; dequantize the model with coremltools first.")


def set_weights(wp: Any, values: np.ndarray) -> None:
    """Store float32 values into a ``WeightParams``, keeping its ``isUpdatable`` flag."""
    updatable = wp.isUpdatable
    wp.Clear()
    wp.floatValue.extend(np.asarray(values, dtype=np.float32).reshape(-1).tolist())
    wp.isUpdatable = updatable
