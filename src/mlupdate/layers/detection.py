"""Detection layers: ``NonMaximumSuppression`` and ``cropResize``.

``NonMaximumSuppression`` (an ND layer) reads boxes ``[B, N, 4]`` as ``[x_center, y_center, width,
height]`` and class scores ``[B, N, C]``, plus optional ``[1]`` inputs that replace ``iouThreshold``,
``scoreThreshold`` and ``maxBoxes``. A box's score is its largest class score; boxes scoring below
the score threshold are rejected; the rest are visited from the highest score down, and a box is
kept unless a kept box (of the same class, with ``perClassSuppression``: the class of its largest
score) overlaps it with an IoU above the IoU threshold. At most ``maxBoxes`` boxes are kept, in
that order. Outputs: boxes ``[B, M, 4]`` and scores ``[B, M, C]`` padded with 0, box indices
``[B, M]`` padded with -1, and the count ``[B]``; when no box passes the score threshold, the
highest-scoring box is returned alone (count 1), as the proto says. The greedy loop runs exactly
``maxBoxes`` steps of tensor operations, so the layer exports to ONNX; only the fifth input (whose
value is the output length) makes it run on torch, one example at a time.

``cropResize`` reads an image ``[1, Batch, C, H, W]`` and boxes ``[R, 1, 4, 1, 1]`` (every box is
cropped from every image: ``[R, Batch, C, H_out, W_out]``) or ``[R, 1, 5, 1, 1]`` (the first value
is the image index: ``[R, 1, C, H_out, W_out]``). Box coordinates follow ``boxIndicesMode``; they are
scaled by ``(H - 1, W - 1)`` when ``normalizedCoordinates`` and by ``spatialScale`` (0, unset, is
1). Within a box ``[start, end]`` of one axis the ``mode`` grid is the SamplingMode formula for the
interval ``[0, X - 1]`` with ``X - 1 = end - start``, shifted by ``start``; values are sampled by
bilinear interpolation, positions clamped to the image. Blobs as held: legacy networks hold the
image as ``[N, C, H, W]`` and the boxes as ``[N, 4|5, 1, 1]`` (one box) or ``[N, R, 4|5, 1, 1]``,
and give ``[N, C, H_out, W_out]`` or ``[N, R, C, H_out, W_out]``; ND networks hold the rank-5 Core
ML tensors with the example axis in front.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import check_size, int_list

STRICT_ALIGN, ALIGN, UPSAMPLE, ROI_ALIGN = range(4)
CORNERS_HW, CORNERS_WH, CENTER_HW, CENTER_WH = range(4)


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def center_iou(boxes: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``[.., N, N]`` of ``[.., N, 4]`` boxes ``[x_center, y_center, width, height]``."""
    x, y, w, h = boxes.unbind(-1)
    x0, x1, y0, y1 = x - w / 2, x + w / 2, y - h / 2, y + h / 2
    iw = (torch.minimum(x1[..., :, None], x1[..., None, :]) - torch.maximum(x0[..., :, None], x0[..., None, :]))
    ih = (torch.minimum(y1[..., :, None], y1[..., None, :]) - torch.maximum(y0[..., :, None], y0[..., None, :]))
    inter = iw.clamp(min=0) * ih.clamp(min=0)
    area = (w * h).abs()
    return inter / (area[..., :, None] + area[..., None, :] - inter)


class NonMaximumSuppression(nn.Module):
    """``NonMaximumSuppression`` (see the module docstring); examples are independent rows.

    Args:
        iou: IoU threshold (replaced by a third input).
        score: Score threshold (replaced by a fourth input).
        max_boxes: Output length (replaced by a fifth input).
        per_class: Suppress only within the class of each box's largest score.
    """

    def __init__(self, iou: float, score: float, max_boxes: int, per_class: bool) -> None:
        super().__init__()
        self.iou, self.score, self.max_boxes, self.per_class = iou, score, max_boxes, per_class

    @staticmethod
    def _threshold(t: torch.Tensor | None, default: float, like: torch.Tensor) -> torch.Tensor:
        if t is None:
            return torch.full((like.shape[0], 1, 1), default, dtype=like.dtype, device=like.device)
        if t[0].numel() != 1:
            raise ValueError(f"a threshold input must hold one value per example, got shape {list(t.shape[1:])}")
        return t.reshape(-1, 1, 1).to(like.dtype)

    def forward(self, boxes: torch.Tensor, scores: torch.Tensor,
                *extra: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if boxes.dim() != 4 or boxes.shape[-1] != 4 or scores.dim() != 4 or scores.shape[:3] != boxes.shape[:3]:
            raise ValueError(f"boxes must be [B, N, 4] and scores [B, N, C] with the same B and N, got "
                             f"{list(boxes.shape[1:])} and {list(scores.shape[1:])}")
        extra = extra + (None,) * (3 - len(extra))
        iou_t = self._threshold(extra[0], self.iou, scores)
        score_t = self._threshold(extra[1], self.score, scores)
        m = self.max_boxes
        if extra[2] is not None:
            values = {int(v) for v in extra[2].reshape(-1).round().long().tolist()}
            if len(values) != 1 or min(values) <= 0:
                raise ValueError(f"the maxBoxes input must be one positive number, got {sorted(values)}")
            m = values.pop()
        check_size([scores.shape[1], m, max(4, int(scores.shape[-1]))], f"maxBoxes {m}")
        best, cls = scores.max(dim=-1)  # [n, B, N]
        iou = center_iou(boxes)  # [n, B, N, N]
        if self.per_class:
            iou = torch.where(cls[..., :, None] == cls[..., None, :], iou, torch.full_like(iou, float("-inf")))
        count_n = best.shape[-1]
        alive = best >= score_t
        positions = torch.arange(count_n, device=best.device)
        low = torch.tensor(float("-inf"), dtype=best.dtype, device=best.device)
        picks = []
        for _ in range(min(m, count_n)):  # each step keeps a box or none; past N boxes none are left
            masked = torch.where(alive, best, low)
            top, idx = masked.max(dim=-1)  # [n, B]
            ok = top > low
            picks.append(torch.where(ok, idx, torch.full_like(idx, -1)))
            row = torch.gather(iou, -2, idx[..., None, None].expand(*idx.shape, 1, count_n)).squeeze(-2)
            alive = alive & ~(row > iou_t) & (positions != idx[..., None])
        sel = torch.stack(picks, dim=-1)  # [n, B, min(M, N)]
        if m > count_n:
            sel = torch.cat([sel, sel.new_full((*sel.shape[:-1], m - count_n), -1)], dim=-1)
        fallback = best.argmax(dim=-1)
        first = torch.where(sel[..., 0] >= 0, sel[..., 0], fallback)
        sel = torch.cat([first[..., None], sel[..., 1:]], dim=-1)
        valid = sel >= 0
        gather_at = sel.clamp(min=0)
        out_boxes = torch.gather(boxes, -2, gather_at[..., None].expand(*sel.shape, 4))
        out_scores = torch.gather(scores, -2, gather_at[..., None].expand(*sel.shape, scores.shape[-1]))
        keep = valid[..., None].to(boxes.dtype)
        count = valid.sum(dim=-1).to(boxes.dtype)
        return out_boxes * keep, out_scores * keep, sel.to(boxes.dtype), count


class NonMaximumSuppressionDynamic(NonMaximumSuppression):
    """``NonMaximumSuppression`` with a fifth input: its value is the output length."""

    per_example = True
    exportable = False


@register("NonMaximumSuppression")
def _nms(p: Any, ctx: BuildContext) -> nn.Module:
    if not ctx.nd:
        raise SpecError(f"Layer '{ctx.name}' is a NonMaximumSuppression layer, which Core ML accepts only in "
                        "networks with ND array mapping (EXACT_ARRAY_MAPPING). Rebuild the network with ND shapes.")
    n_in = len(ctx.inputs) if ctx.inputs else 2
    if not 2 <= n_in <= 5:
        raise SpecError(f"NonMaximumSuppression layer '{ctx.name}' has {n_in} inputs; it takes 2 to 5 (boxes, "
                        "scores, and optionally IoU threshold, score threshold, maxBoxes).")
    if n_in < 5 and p.maxBoxes <= 0:
        raise SpecError(f"NonMaximumSuppression layer '{ctx.name}' has maxBoxes {p.maxBoxes}; it must be "
                        "positive.")
    cls = NonMaximumSuppressionDynamic if n_in == 5 else NonMaximumSuppression
    return cls(float(p.iouThreshold), float(p.scoreThreshold), int(p.maxBoxes), bool(p.perClassSuppression))


def sampling_grid(start: torch.Tensor, end: torch.Tensor, n: int, mode: int) -> torch.Tensor:
    """SamplingMode grid of ``n`` points within each box ``[start, end]`` (``[K]`` each) -> ``[K, n]``."""
    ext = (end - start)[:, None]
    i = torch.arange(n, dtype=start.dtype, device=start.device)[None, :]
    if mode in (STRICT_ALIGN, ALIGN):
        if n == 1:
            g = ext * (0.5 if mode == ALIGN else 0.0) + 0 * i
        else:
            g = ext * i / (n - 1)
    elif mode == UPSAMPLE:
        size = ext + 1
        g = torch.minimum(i * (size - size / n) / max(n - 1, 1), ext)
    else:
        spacing = torch.clamp(ext, min=1.0) / n
        g = torch.minimum(spacing * (i + 0.5), ext)
    return start[:, None] + g


def _corners(pos: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pos = pos.clamp(0, size - 1)
    lo = pos.floor()
    return lo.long(), (lo + 1).clamp(max=size - 1).long(), pos - lo


def bilinear_crops(images: torch.Tensor, gy: torch.Tensor, gx: torch.Tensor) -> torch.Tensor:
    """Sample ``images [K, C, H, W]`` at rows ``gy [K, Ho]`` and columns ``gx [K, Wo]`` -> ``[K, C, Ho, Wo]``."""
    k, c, h, w = images.shape
    y0, y1, wy = _corners(gy, h)
    x0, x1, wx = _corners(gx, w)
    ho, wo = gy.shape[1], gx.shape[1]

    def rows(idx: torch.Tensor) -> torch.Tensor:
        return torch.gather(images, 2, idx[:, None, :, None].expand(k, c, ho, w))

    def cols(r: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return torch.gather(r, 3, idx[:, None, None, :].expand(k, c, ho, wo))

    top, bottom = rows(y0), rows(y1)
    fx = wx[:, None, None, :]
    upper = cols(top, x0) + (cols(top, x1) - cols(top, x0)) * fx
    lower = cols(bottom, x0) + (cols(bottom, x1) - cols(bottom, x0)) * fx
    return upper + (lower - upper) * wy[:, None, :, None]


class CropResize(nn.Module):
    """``cropResize`` (see the module docstring).

    Args:
        size: ``(H_out, W_out)``.
        normalized: Box coordinates are fractions of ``(H - 1, W - 1)``.
        mode: SamplingMode method.
        box_mode: BoxCoordinatesMode.
        scale: Spatial scale multiplying the coordinates.
        nd: ND network (rank-5 Core ML tensors held with the example axis in front).
    """

    def __init__(self, size: tuple[int, int], normalized: bool, mode: int, box_mode: int, scale: float,
                 nd: bool) -> None:
        super().__init__()
        self.size, self.normalized, self.mode, self.box_mode, self.scale, self.nd = (
            size, normalized, mode, box_mode, scale, nd)

    def _layout(self, x: torch.Tensor, roi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The image as ``[N, Batch, C, H, W]`` and the boxes as ``[N, R, 4 or 5]``."""
        if self.nd:
            if x.dim() != 6 or x.shape[1] != 1 or roi.dim() != 6 or roi.shape[2] != 1 or roi.shape[-2:] != (1, 1):
                raise ValueError(f"cropResize needs an image [1, Batch, C, H, W] and boxes [R, 1, 4 or 5, 1, 1], "
                                 f"got {list(x.shape[1:])} and {list(roi.shape[1:])}")
            return x[:, 0], roi.reshape(roi.shape[0], roi.shape[1], roi.shape[3])
        if x.dim() != 4:
            raise ValueError(f"cropResize needs an image [1, Batch, C, H, W] with sequence length 1, got a held "
                             f"blob {list(x.shape)}")
        if roi.shape[-2:] != (1, 1) or roi.dim() not in (4, 5):
            raise ValueError(f"cropResize needs boxes [R, 1, 4 or 5, 1, 1], got a held blob {list(roi.shape)}")
        seq = roi if roi.dim() == 5 else roi[:, None]
        return x[:, None], seq.reshape(seq.shape[0], seq.shape[1], seq.shape[2])

    def _box_edges(self, box: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, ...]:
        a, b, c, d = box.unbind(-1)
        if self.box_mode == CORNERS_HW:
            h0, w0, h1, w1 = a, b, c, d
        elif self.box_mode == CORNERS_WH:
            w0, h0, w1, h1 = a, b, c, d
        elif self.box_mode == CENTER_HW:
            h0, w0, h1, w1 = a - c / 2, b - d / 2, a + c / 2, b + d / 2
        else:
            w0, h0, w1, h1 = a - c / 2, b - d / 2, a + c / 2, b + d / 2
        sh, sw = self.scale, self.scale
        if self.normalized:
            sh, sw = sh * (h - 1), sw * (w - 1)
        return h0 * sh, w0 * sw, h1 * sh, w1 * sw

    def forward(self, x: torch.Tensor, roi: torch.Tensor) -> torch.Tensor:
        img, boxes = self._layout(x, roi)
        n, batch, c, h, w = img.shape
        r, width = boxes.shape[1], boxes.shape[2]
        check_size([r, batch if width == 4 else 1, c, *self.size], f"{r} crops of targetSize {list(self.size)}")
        flat = img.reshape(n * batch, c, h, w)
        base = torch.arange(n, device=x.device)[:, None] * batch  # [n, 1]
        if width == 4:
            ids = (base[:, :, None] + torch.arange(batch, device=x.device)).expand(n, r, batch)  # [n, R, Batch]
            coords = boxes[:, :, None, :].expand(n, r, batch, 4)
            per = batch
        elif width == 5:
            index = boxes[..., 0].round().long()
            if not _tracing() and bool(((index < 0) | (index >= batch)).any()):
                raise ValueError(f"a box's image index {index.tolist()} is outside [0, {batch - 1}]")
            ids, coords, per = (base + index)[..., None], boxes[:, :, None, 1:], 1
        else:
            raise ValueError(f"cropResize boxes need 4 or 5 values each, got {width}")
        h0, w0, h1, w1 = self._box_edges(coords.reshape(-1, 4).to(x.dtype), h, w)
        gy = sampling_grid(h0, h1, self.size[0], self.mode)
        gx = sampling_grid(w0, w1, self.size[1], self.mode)
        out = bilinear_crops(flat.index_select(0, ids.reshape(-1)), gy, gx)
        out = out.reshape(n, r, per, c, *self.size)
        if self.nd:
            return out
        out = out.reshape(n, r, c, *self.size)  # legacy: Batch is 1 per example
        return out[:, 0] if r == 1 else out


@register("cropResize")
def _crop_resize(p: Any, ctx: BuildContext) -> nn.Module:
    size = int_list(p.targetSize) or [1, 1]
    if len(size) != 2 or min(size) <= 0:
        raise SpecError(f"CropResize layer '{ctx.name}' has targetSize {size}; it needs [H_out, W_out], both "
                        "positive.")
    scale = float(p.spatialScale) or 1.0
    return CropResize((size[0], size[1]), bool(p.normalizedCoordinates), int(p.mode.samplingMethod),
                      int(p.boxIndicesMode.boxMode), scale, ctx.nd)
