"""resize, upsample, crop, affine, resample (MIL image_resizing.py).

Sampling grids are the definitions' formulas (``resize_bilinear``'s notes), computed when the op is compiled
and sampled with the neural-network layers' kernels (``linear_along`` / ``nearest_along``, ``bilinear_crops``),
so every op exports to ONNX; only ``resize`` with a target shape computed at run time is torch only.
The iOS15 nearest-neighbour ops read ``floor(i * in / out)``; iOS17's ``resize`` with ``NEAREST_NEIGHBOR`` reads
the pixel nearest its ``sampling_mode`` grid point, ties to the lower one (both fit coremltools' op tests;
docs/differences.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mlupdate.layers.common import linear_along, nearest_along
from mlupdate.layers.detection import ALIGN, ROI_ALIGN, STRICT_ALIGN, UPSAMPLE, bilinear_crops, sampling_grid
from mlupdate.layers.resize import sampling_grid as size_grid
from mlupdate.layers.resize import upsample_grid
from mlupdate.ops import OpContext
from mlupdate.ops.tensor import flag, ints_of, kernel, op_error, sized

#: resize_bilinear's sampling modes -> the layers' SamplingMode methods (UNALIGN_CORNERS is separate).
_MODES = {"STRICT_ALIGN_CORNERS": STRICT_ALIGN, "ALIGN_CORNERS": ALIGN, "DEFAULT": UPSAMPLE,
          "OFFSET_CORNERS": ROI_ALIGN}
_UNALIGN = "UNALIGN_CORNERS"


def _mode(ctx: OpContext, param: str = "sampling_mode") -> str:
    mode = str(flag(ctx, param, "DEFAULT")).upper()
    if mode not in _MODES and mode != _UNALIGN:
        raise op_error(ctx, f"{param} '{mode}' is not one of {', '.join([*_MODES, _UNALIGN])}")
    return mode


def grid(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """The sampling positions of ``resize_bilinear``'s ``mode`` along an axis of ``n_in`` -> ``n_out``."""
    if mode == _UNALIGN:
        return upsample_grid(n_in, n_out, 2)
    return size_grid(n_in, n_out, _MODES[mode])


def _spatial(ctx: OpContext, x: torch.Tensor, rank: int = 3) -> None:
    if x.dim() < rank:
        raise op_error(ctx, f"the input must have rank {rank} or more, got shape {list(x.shape)}")


def _resample(x: torch.Tensor, dims: list[int], sizes: list[int], mode: str, linear: bool) -> torch.Tensor:
    """Resize axes ``dims`` to ``sizes``: linear on ``mode``'s grid, or the pixel nearest its grid points."""
    for dim, n_out in zip(dims, sizes, strict=True):
        n_in = int(x.shape[dim])
        g = grid(n_in, n_out, mode)
        if linear:
            x = linear_along(x, dim, g)
        else:
            x = nearest_along(x, dim, np.clip(np.ceil(g - 0.5), 0, n_in - 1))
    return x


def _nearest(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """The iOS15 nearest-neighbour ops: output position ``i`` of an axis reads ``floor(i * in / out)``."""
    for dim, n_out in zip((x.dim() - 2, x.dim() - 1), sizes, strict=True):
        n_in = int(x.shape[dim])
        x = nearest_along(x, dim, np.floor(np.arange(n_out) * n_in / n_out))
    return x


def _scaled(ctx: OpContext, x: torch.Tensor) -> list[int]:
    sizes = []
    for param, dim in (("scale_factor_height", -2), ("scale_factor_width", -1)):
        scale = float(flag(ctx, param, 1))
        if scale <= 0:
            raise op_error(ctx, f"{param} {scale} must be positive")
        sizes.append(int(np.floor(int(x.shape[dim]) * scale)))
    return sized(ctx, [*(int(d) for d in x.shape[:-2]), *sizes])[-2:]


@kernel("upsample_nearest_neighbor")
def _upsample_nearest_neighbor(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    _spatial(ctx, x)
    return _nearest(x, _scaled(ctx, x))


@kernel("resize_nearest_neighbor")
def _resize_nearest_neighbor(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    _spatial(ctx, x)
    sizes = [int(flag(ctx, "target_size_height")), int(flag(ctx, "target_size_width"))]
    sized(ctx, [*(int(d) for d in x.shape[:-2]), *sizes])
    return _nearest(x, sizes)


@kernel("upsample_bilinear")
@kernel("upsample_bilinear", since=16)
def _upsample_bilinear(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """Grids by the recomputed scale ``in / out``; iOS16's ``half_pixel_centers`` defaults to ``!align_corners``."""
    x = inputs["x"]
    _spatial(ctx, x)
    align = bool(flag(ctx, "align_corners", True))
    half = bool(flag(ctx, "half_pixel_centers", not align)) if ctx.opset >= 16 else not align
    if align and half:
        raise op_error(ctx, "align_corners and half_pixel_centers cannot both be true")
    mode = "STRICT_ALIGN_CORNERS" if align else _UNALIGN if half else "DEFAULT"
    return _resample(x, [x.dim() - 2, x.dim() - 1], _scaled(ctx, x), mode, linear=True)


@kernel("resize_bilinear")
def _resize_bilinear(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    _spatial(ctx, x)
    sizes = [int(flag(ctx, "target_size_height", 1)), int(flag(ctx, "target_size_width", 1))]
    sized(ctx, [*(int(d) for d in x.shape[:-2]), *sizes])
    return _resample(x, [x.dim() - 2, x.dim() - 1], sizes, _mode(ctx), linear=True)


@kernel("resize", since=17)
def _resize(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """The last ``resized_dims`` axes take their sizes from ``shape`` (right-aligned; 0 keeps x's size)."""
    x = inputs["x"]
    shape = ints_of(ctx, inputs, "shape")
    r = int(flag(ctx, "resized_dims"))
    if not 0 <= r <= min(len(shape), x.dim()):
        raise op_error(ctx, f"resized_dims {r} exceeds the size of shape {shape} or the rank of x")
    dims = list(range(x.dim() - r, x.dim()))
    sizes = [int(x.shape[d]) if s == 0 else s for d, s in zip(dims, shape[len(shape) - r:], strict=True)]
    sized(ctx, [*(int(d) for d in x.shape[:x.dim() - r]), *sizes])
    interpolation = str(flag(ctx, "interpolation_mode", "LINEAR")).upper()
    if interpolation not in ("LINEAR", "NEAREST_NEIGHBOR"):
        raise op_error(ctx, f"interpolation_mode '{interpolation}' is not LINEAR or NEAREST_NEIGHBOR")
    return _resample(x, dims, sizes, _mode(ctx), linear=interpolation == "LINEAR")


@kernel("crop")
def _crop(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    _spatial(ctx, x)
    (top, bottom), (left, right) = ints_of(ctx, inputs, "crop_height"), ints_of(ctx, inputs, "crop_width")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if min(top, bottom, left, right) < 0 or top + bottom > h or left + right > w:
        raise op_error(ctx, f"crops {[top, bottom]}, {[left, right]} do not fit the {h}x{w} input")
    return x[..., top:h - bottom, left:w - right]


def _box_edges(ctx: OpContext, box: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, ...]:
    a, b, c, d = box.unbind(-1)
    mode = str(flag(ctx, "box_coordinate_mode", "CORNERS_HEIGHT_FIRST")).upper()
    edges = {"CORNERS_HEIGHT_FIRST": lambda: (a, b, c, d), "CORNERS_WIDTH_FIRST": lambda: (b, a, d, c),
             "CENTER_SIZE_HEIGHT_FIRST": lambda: (a - c / 2, b - d / 2, a + c / 2, b + d / 2),
             "CENTER_SIZE_WIDTH_FIRST": lambda: (b - d / 2, a - c / 2, b + d / 2, a + c / 2)}
    if mode not in edges:
        raise op_error(ctx, f"box_coordinate_mode '{mode}' is not one of {', '.join(edges)}")
    h0, w0, h1, w1 = edges[mode]()
    sh = sw = float(flag(ctx, "spatial_scale", 1.0))
    if bool(flag(ctx, "normalized_coordinates", False)):
        sh, sw = sh * (h - 1), sw * (w - 1)
    return h0 * sh, w0 * sw, h1 * sh, w1 * sw


def _box_grid(start: torch.Tensor, end: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """``n`` sampling rows within each box ``[start, end]`` by the resize grid of ``mode`` -> ``[K, n]``."""
    if mode != _UNALIGN:
        return sampling_grid(start, end, n, _MODES[mode])
    size = (end - start + 1)[:, None]
    i = torch.arange(n, dtype=start.dtype, device=start.device)[None, :]
    return start[:, None] + torch.minimum(((i + 0.5) * size / n - 0.5).clamp(min=0), size - 1)


def _crops(ctx: OpContext, x: torch.Tensor, ids: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Crops ``[K, C, Ho, Wo]`` of images ``x[ids]`` at ``boxes [K, 4]``; samples off the image take pad_value."""
    if x.dim() != 4:
        raise op_error(ctx, f"x must have rank 4 [B, C, H, W], got {list(x.shape)}")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    size = [int(flag(ctx, "target_height", 1)), int(flag(ctx, "target_width", 1))]
    sized(ctx, [int(ids.shape[0]), int(x.shape[1]), *size])
    if not torch.jit.is_tracing() and bool(((ids < 0) | (ids >= int(x.shape[0]))).any()):
        raise op_error(ctx, f"a box's image index {ids.tolist()} is outside [0, {int(x.shape[0]) - 1}]")
    h0, w0, h1, w1 = _box_edges(ctx, boxes.to(torch.float32), h, w)
    mode = _mode(ctx)
    gy, gx = _box_grid(h0, h1, size[0], mode), _box_grid(w0, w1, size[1], mode)
    out = bilinear_crops(x.index_select(0, ids.long()).to(torch.float32), gy, gx)
    inside = ((gy >= 0) & (gy <= h - 1))[:, None, :, None] & ((gx >= 0) & (gx <= w - 1))[:, None, None, :]
    pad = float(flag(ctx, "pad_value", 0.0))
    return torch.where(inside, out, torch.full_like(out, pad)).to(x.dtype)


@kernel("crop_resize")
@kernel("crop_resize", since=16)
def _crop_resize(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """``roi [N, 1, 4|5, 1, 1]``: ``[N, B, C, Ho, Wo]`` (every image) or ``[N, 1, C, Ho, Wo]`` (indexed)."""
    x, roi = inputs["x"], inputs["roi"]
    if roi.dim() != 5 or int(roi.shape[2]) not in (4, 5):
        raise op_error(ctx, f"roi must be [N, 1, 4 or 5, 1, 1], got {list(roi.shape)}")
    n, b = int(roi.shape[0]), int(x.shape[0])
    boxes = roi.reshape(n, -1)
    if boxes.shape[1] == 5:
        out = _crops(ctx, x, boxes[:, 0].round().long(), boxes[:, 1:])
        return out[:, None]
    ids = torch.arange(b, device=x.device).repeat(n)
    out = _crops(ctx, x, ids, boxes.repeat_interleave(b, 0))
    return out.reshape(n, b, *out.shape[1:])


@kernel("crop_resize", since=17)
def _crop_resize_17(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """``boxes [N, 4]`` applied to ``x[box_indices]`` (default ``arange(N)``) -> ``[N, C, Ho, Wo]``."""
    boxes = inputs["boxes"]
    ids = inputs.get("box_indices")
    ids = torch.arange(int(boxes.shape[0]), device=boxes.device) if ids is None else ids.reshape(-1).long()
    return _crops(ctx, inputs["x"], ids, boxes)


def _pixels(coords: torch.Tensor, size: int, mode: str, align: bool) -> torch.Tensor:
    """Coordinates along an axis of ``size`` pixels as pixel-centre positions (0 .. size-1 in the image)."""
    if mode == "unnormalized":
        return coords
    unit = coords if mode == "normalized_zero_to_one" else (coords + 1) / 2
    return unit * (size - 1) if align else unit * size - 0.5


def _fold(p: torch.Tensor, size: int, padding: str) -> torch.Tensor:
    """Pixel positions folded back into the image by ``reflection`` / ``symmetric`` padding."""
    if size == 1:
        return torch.zeros_like(p)
    if padding == "reflection":  # mirror about the centres of the edge pixels
        q = torch.remainder(p, 2 * (size - 1))
        return torch.where(q > size - 1, 2 * (size - 1) - q, q)
    q = torch.remainder(p + 0.5, 2 * size)  # symmetric: mirror about the outer edges
    return (torch.where(q > size, 2 * size - q, q) - 0.5).clamp(0, size - 1)


def _grid_sample(ctx: OpContext, x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """``resample``: sample ``x [B, C, H, W]`` at ``coords [B, Ho, Wo, (x, y)]``."""
    if x.dim() != 4 or coords.dim() != 4 or int(coords.shape[-1]) != 2:
        raise op_error(ctx, f"x must be [B, C, H, W] and coordinates [B, H, W, 2], got {list(x.shape)} and "
                            f"{list(coords.shape)}")
    sampling, padding = str(flag(ctx, "sampling_mode")), str(flag(ctx, "padding_mode"))
    mode, align = str(flag(ctx, "coordinates_mode")), bool(flag(ctx, "align_corners"))
    checks = ((sampling, ("bilinear", "nearest")), (padding, ("constant", "border", "reflection", "symmetric")),
              (mode, ("unnormalized", "normalized_minus_one_to_one", "normalized_zero_to_one")))
    for value, allowed in checks:
        if value not in allowed:
            raise op_error(ctx, f"'{value}' is not one of {', '.join(allowed)}")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    c = coords.to(torch.float32)
    px, py = _pixels(c[..., 0], w, mode, align), _pixels(c[..., 1], h, mode, align)
    if padding in ("reflection", "symmetric"):
        px, py = _fold(px, w, padding), _fold(py, h, padding)
    grid_xy = torch.stack([2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1], -1)
    torch_pad = "zeros" if padding == "constant" else "border"
    value = float(flag(ctx, "padding_value", 0.0)) if padding == "constant" else 0.0
    out = F.grid_sample(x.to(torch.float32) - value, grid_xy, mode=sampling, padding_mode=torch_pad,
                        align_corners=True) + value
    return out.to(x.dtype)


@kernel("resample")
@kernel("resample", since=16)
@kernel("resample", since=17)
def _resample_op(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    return _grid_sample(ctx, inputs["x"], inputs["coordinates"])


@kernel("affine")
def _affine(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """Output positions ``(x, y)`` on the ``[-1, 1]`` grid map to ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``."""
    x, matrix = inputs["x"], inputs["transform_matrix"]
    if x.dim() != 4 or matrix.dim() != 2 or int(matrix.shape[1]) != 6 or int(matrix.shape[0]) not in (1,
                                                                                                       int(x.shape[0])):
        raise op_error(ctx, f"x must be [B, C, H, W] and transform_matrix [B or 1, 6], got {list(x.shape)} and "
                            f"{list(matrix.shape)}")
    ho, wo = int(flag(ctx, "output_height")), int(flag(ctx, "output_width"))
    sized(ctx, [*(int(d) for d in x.shape[:2]), ho, wo])
    theta = matrix.to(torch.float32).reshape(-1, 1, 2, 3)  # [B or 1, 1, (x', y'), (a, b, c)]

    def unit(n: int) -> np.ndarray:  # output positions on [-1, 1], corners at the pixel centres
        return np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)

    gx, gy = np.meshgrid(unit(wo), unit(ho))
    base = np.stack([gx, gy, np.ones_like(gx)], -1).reshape(1, ho * wo, 1, 3).astype(np.float32)
    base = torch.from_numpy(base).to(x.device)
    coords = (base * theta).sum(-1).reshape(-1, ho, wo, 2).expand(int(x.shape[0]), ho, wo, 2)
    return _grid_sample(ctx, x, coords)
