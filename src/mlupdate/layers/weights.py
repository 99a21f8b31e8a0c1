"""Reading and writing ``WeightParams``: every encoding NeuralNetwork.proto defines.

* ``floatValue``: repeated float32.
* ``float16Value``: little-endian IEEE half floats, two bytes each.
* ``rawValue`` without ``quantization``: little-endian float32 bytes (accepted for old files;
  Core ML itself only reads ``rawValue`` as quantized codes).
* ``rawValue`` with ``quantization``: unsigned ``numberOfBits``-bit codes (1..8), packed
  most-significant bit first, code after code, across byte boundaries (the order coremltools'
  quantization utilities write); the last byte is zero-padded. Codes decode by
  ``linearQuantization`` (``w = code * scale + bias``, one scale/bias or one per output channel)
  or ``lookupTableQuantization`` (``w = table[code]``, ``2**numberOfBits`` entries).
* ``int8RawValue`` with 8-bit linear quantization: signed int8 codes, ``w = code * scale``
  (+ bias, which the proto requires to be empty); used by ``int8DynamicQuantize`` layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlupdate.errors import SpecError

_FIELDS = ("floatValue", "float16Value", "rawValue", "int8RawValue")


def _bad(what: str, why: str) -> SpecError:
    return SpecError(f"{what} {why}. The model file is inconsistent; re-export it from its source framework.")


def _filled(wp: Any) -> list[str]:
    return [f for f in _FIELDS if len(getattr(wp, f))]


def weight_array(wp: Any, expected: int | None, what: str, *, channels: int | None = None,
                 shape: Sequence[int] | None = None, channel_axis: int = 0) -> np.ndarray:
    """Decode a ``WeightParams`` into a flat float32 array (row-major).

    Args:
        wp: The ``WeightParams`` message.
        expected: Element count the layer's shape implies, or None to skip the check.
        what: ``"InnerProduct layer 'name' weights"`` for error messages (names the layer).
        channels: Output channels: a per-channel linear quantization must have 1 or this many
            scales. None accepts any scale count that divides the element count.
        shape: Shape of the weight tensor, needed only when the per-channel axis is not the first
            (deconvolution kernels); defaults to ``[channels or scales, rest]``.
        channel_axis: Axis of ``shape`` that per-channel scales run along.

    Raises:
        SpecError: If more than one value field is set, a byte field has a partial element, the
            count does not match ``expected``, or the quantization parameters are invalid.
    """
    filled = _filled(wp)
    if len(filled) > 1:
        raise _bad(what, f"set more than one value field ({', '.join(filled)})")
    field = filled[0] if filled else None
    if wp.HasField("quantization") and field in ("rawValue", "int8RawValue"):
        arr = _dequantize(wp, field, expected, what, channels, shape, channel_axis)
    elif field == "int8RawValue":
        raise _bad(what, "hold int8RawValue without linear quantization parameters")
    elif field == "floatValue":
        arr = np.asarray(wp.floatValue, dtype=np.float32)
    elif field == "float16Value":
        raw = bytes(wp.float16Value)
        if len(raw) % 2:
            raise _bad(what, f"hold {len(raw)} float16 bytes, not a whole number of values")
        arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    elif field == "rawValue":
        raw = bytes(wp.rawValue)
        if len(raw) % 4:
            raise _bad(what, f"hold {len(raw)} raw float32 bytes, not a whole number of values")
        arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    else:
        arr = np.zeros(0, dtype=np.float32)
    if expected is not None and arr.size != expected:
        raise _bad(what, f"hold {arr.size} values but the declared shape needs {expected}")
    return arr


def unpack_codes(raw: bytes, count: int, nbits: int) -> np.ndarray:
    """The first ``count`` unsigned ``nbits``-bit codes of ``raw``, most-significant bit first."""
    data = np.frombuffer(raw, dtype=np.uint8)
    if nbits == 8:
        return data[:count].astype(np.int64)
    bits = np.unpackbits(data, bitorder="big")[: count * nbits].reshape(count, nbits)
    return bits.astype(np.int64) @ (1 << np.arange(nbits - 1, -1, -1, dtype=np.int64))


def quantization_params(wp: Any, what: str) -> tuple[int, str]:
    """Validated ``(numberOfBits, kind)`` of a quantized ``WeightParams``.

    ``kind`` is ``"linearQuantization"`` or ``"lookupTableQuantization"``.

    Raises:
        SpecError: If ``numberOfBits`` is outside 1..8, the quantization type is missing, the
            lookup table does not hold ``2**numberOfBits`` entries, or a linear bias count differs
            from the scale count.
    """
    q = wp.quantization
    nbits = int(q.numberOfBits)
    if not 1 <= nbits <= 8:
        raise _bad(what, f"are quantized with numberOfBits={nbits}; Core ML allows 1 to 8")
    kind = q.WhichOneof("QuantizationType")
    if kind == "lookupTableQuantization":
        size = len(q.lookupTableQuantization.floatValue)
        if size != 1 << nbits:
            raise _bad(what, f"have a lookup table of {size} entries; {nbits}-bit codes need {1 << nbits}")
    elif kind == "linearQuantization":
        lq = q.linearQuantization
        if not len(lq.scale):
            raise _bad(what, "have linear quantization without a scale")
        if len(lq.bias) not in (0, len(lq.scale)):
            raise _bad(what, f"have {len(lq.scale)} linear quantization scales but {len(lq.bias)} biases")
    else:
        raise _bad(what, "are quantized with neither linear nor lookup-table parameters")
    return nbits, kind


def _dequantize(wp: Any, field: str, expected: int | None, what: str, channels: int | None,
                shape: Sequence[int] | None, channel_axis: int) -> np.ndarray:
    nbits, kind = quantization_params(wp, what)
    raw = bytes(getattr(wp, field))
    if field == "int8RawValue":
        if nbits != 8 or kind != "linearQuantization":
            raise _bad(what, "hold int8RawValue, which needs 8-bit linear quantization")
        n = len(raw) if expected is None else expected
        if len(raw) < n:
            raise _bad(what, f"hold {len(raw)} int8 values but the declared shape needs {n}")
        codes = np.frombuffer(raw, dtype=np.int8)[:n].astype(np.float64)
    else:
        n = (len(raw) * 8) // nbits if expected is None else expected
        need = -(-n * nbits // 8)
        if len(raw) < need:
            raise _bad(what, f"hold {len(raw)} bytes of {nbits}-bit codes but {n} values need {need}")
        codes = unpack_codes(raw, n, nbits)
    if kind == "lookupTableQuantization":
        table = np.asarray(wp.quantization.lookupTableQuantization.floatValue, dtype=np.float32)
        return table[codes.astype(np.int64)]
    lq = wp.quantization.linearQuantization
    scale = np.asarray(lq.scale, dtype=np.float64)
    bias = np.asarray(lq.bias, dtype=np.float64) if len(lq.bias) else np.zeros_like(scale)
    if scale.size == 1:
        return (codes * scale[0] + bias[0]).astype(np.float32)
    if channels is not None and scale.size != channels:
        raise _bad(what, f"have {scale.size} linear quantization scales; Core ML allows 1 or {channels} "
                   "(the output channels)")
    if shape is None:
        if n % scale.size:
            raise _bad(what, f"have {scale.size} linear quantization scales, which do not divide {n} values")
        shape, channel_axis = (scale.size, n // scale.size), 0
    if int(np.prod(shape)) != n or shape[channel_axis] != scale.size:
        raise _bad(what, f"have {scale.size} linear quantization scales for a {list(shape)} tensor")
    view = [1] * len(shape)
    view[channel_axis] = scale.size
    w = codes.reshape(shape) * scale.reshape(view) + bias.reshape(view)
    return w.reshape(-1).astype(np.float32)


def set_weights(wp: Any, values: np.ndarray) -> None:
    """Store float32 values into a ``WeightParams``, keeping its ``isUpdatable`` flag."""
    updatable = wp.isUpdatable
    wp.Clear()
    wp.floatValue.extend(np.asarray(values, dtype=np.float32).reshape(-1).tolist())
    wp.isUpdatable = updatable
