"""Multiarray features: checking user arrays and laying them out as network blobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mlupdate.errors import FeatureError

if TYPE_CHECKING:  # features/ sits below spec/: only the annotations name its descriptions
    from mlupdate.spec.description import FeatureDescription


def check_array(value: Any, fd: FeatureDescription, sequence: bool = False) -> np.ndarray:
    """Validate a multiarray feature against its description and return it as float32.

    Args:
        value: The user's array.
        fd: The input's description.
        sequence: The input of a legacy (rank-5) network, which also takes ``[Seq, 1, C, H, W]`` for a declared
            ``[C, H, W]`` (or ``[C]``, with ``H = W = 1``): NeuralNetwork.proto's RANK5_ARRAY_MAPPING lets the
            sequence axis take any length at run time. The batch axis must be 1 (one example per array).

    Raises:
        FeatureError: If the value is not numeric or its shape does not match.
    """
    if type(value).__module__.startswith("PIL."):
        raise FeatureError(
            f"Input '{fd.name}' is a multiarray of shape {fd.shape_text()}, but an image was passed. Convert the "
            "image to an array with the model's own preprocessing (numpy.asarray, scaling, channel order) first."
        )
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - any conversion failure is the user's input
        arr = None
    if arr is None or arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise FeatureError(
            f"Input '{fd.name}' must be a numeric array of shape {list(fd.shape)}, got "
            f"{type(value).__name__}. Pass a numpy array."
        )
    want = tuple(fd.shape)
    if fd.flexible:
        if not fd.accepts_shape(arr.shape):
            raise FeatureError(
                f"Input '{fd.name}' has shape {list(arr.shape)} but the model accepts {fd.shape_text()}. "
                "Reshape the array to one of the accepted shapes."
            )
    elif want and arr.shape != want and not (sequence and _sequence_of(arr.shape, want)):
        if sequence and len(want) in (1, 3):
            raise FeatureError(
                f"Input '{fd.name}' has shape {list(arr.shape)} but the model expects {list(want)} or a sequence "
                f"[Seq, 1, {', '.join(str(d) for d in (*want, 1, 1)[:3])}]. Reshape the array (numpy's reshape)."
            )
        raise FeatureError(
            f"Input '{fd.name}' has shape {list(arr.shape)} but the model expects {list(want)} (Core ML checks "
            "the rank too). Reshape the array (numpy's reshape) to the declared shape."
        )
    return arr.astype(np.float32, copy=False)


def _sequence_of(shape: tuple[int, ...], declared: tuple[int, ...]) -> bool:
    """Whether ``shape`` is ``[Seq, 1, C, H, W]`` for the legacy declared ``[C, H, W]`` or ``[C]``."""
    chw = declared + (1, 1) if len(declared) == 1 else declared
    return len(declared) in (1, 3) and len(shape) == 5 and shape[0] >= 1 and shape[1] == 1 and shape[2:] == chw


def to_blob(arr: np.ndarray, nd: bool) -> np.ndarray:
    """One example's array as the network holds it, without the graph's leading example axis.

    ND networks hold the declared Core ML shape as it is. Legacy (rank-5) networks see ``[C]`` as
    ``[C, 1, 1]``, ``[C, H, W]`` as it is, and a rank-5 ``[Seq, 1, C, H, W]`` as ``[C, H, W]``
    when ``Seq == 1`` and as ``[Seq, C, H, W]`` otherwise (see :mod:`mlupdate.layers`).
    """
    if nd:
        return arr
    if arr.ndim == 1:
        return arr.reshape(-1, 1, 1)
    if arr.ndim == 5:
        return arr.reshape(arr.shape[-3:]) if arr.shape[0] == 1 else arr.reshape(arr.shape[0], *arr.shape[-3:])
    return arr


def image_blob(chw: np.ndarray, nd: bool, rank4: bool) -> np.ndarray:
    """One example's ``[C, H, W]`` image as the network holds it (see :func:`to_blob`).

    ND networks see an image as ``[1, C, H, W]`` (RANK4_IMAGE_MAPPING) or ``[1, 1, C, H, W]``.
    """
    if not nd:
        return chw
    return chw[None] if rank4 else chw[None, None]
