"""Image features under Core ML's rules: colour spaces, sizes and Vision's crop-and-scale.

An image reaches the network as float32 ``[C, H, W]`` pixels in ``[0, 255]`` in the colour
order the model declares (RGB, BGR or one grey channel); the network's own preprocessing
(scaler or mean image) is applied afterwards by the runtime.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mlupdate.errors import ImageError

COLOR_SPACES = {10: "GRAYSCALE", 20: "RGB", 30: "BGR", 40: "GRAYSCALE_FLOAT16"}
CROP_AND_SCALE = ("center_crop", "scale_fit", "scale_fill")
DEFAULT_MAX_PIXELS = 64_000_000
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageConstraint:
    """The size and colour space an image input accepts (Core ML's ``MLImageConstraint``).

    Attributes:
        width: Default width in pixels.
        height: Default height in pixels.
        color_space: ``RGB``, ``BGR``, ``GRAYSCALE`` or ``GRAYSCALE_FLOAT16``.
        enumerated_sizes: Allowed ``(width, height)`` pairs, if the model enumerates sizes.
        width_range: ``(min, max)`` allowed widths (max -1 = unbounded), if the model gives a range.
        height_range: ``(min, max)`` allowed heights, likewise.
    """

    width: int
    height: int
    color_space: str = "RGB"
    enumerated_sizes: tuple[tuple[int, int], ...] = ()
    width_range: tuple[int, int] | None = None
    height_range: tuple[int, int] | None = None

    @classmethod
    def from_proto(cls, it: Any) -> ImageConstraint:
        """Build from an ``ImageFeatureType`` message."""
        enumerated: tuple[tuple[int, int], ...] = ()
        wr = hr = None
        flex = it.WhichOneof("SizeFlexibility")
        if flex == "enumeratedSizes":
            enumerated = tuple((int(s.width), int(s.height)) for s in it.enumeratedSizes.sizes)
        elif flex == "imageSizeRange":
            r = it.imageSizeRange
            wr = (int(r.widthRange.lowerBound), int(r.widthRange.upperBound))
            hr = (int(r.heightRange.lowerBound), int(r.heightRange.upperBound))
        return cls(int(it.width), int(it.height), COLOR_SPACES.get(it.colorSpace, "RGB"), enumerated, wr, hr)

    @property
    def flexible(self) -> bool:
        """Whether the model accepts sizes other than the default one."""
        return bool(self.enumerated_sizes) or (self.width_range is not None and self.height_range is not None)

    @property
    def channels(self) -> int:
        """Number of channels the network sees (1 for grayscale, else 3)."""
        return 1 if self.color_space.startswith("GRAYSCALE") else 3

    def accepts(self, width: int, height: int) -> bool:
        """Whether the model accepts an image of this size as it is."""
        if (width, height) == (self.width, self.height):
            return True
        if self.enumerated_sizes:
            return (width, height) in self.enumerated_sizes
        if self.width_range and self.height_range:
            def inside(v: int, r: tuple[int, int]) -> bool:
                return v >= r[0] and (r[1] < 0 or v <= r[1])
            return inside(width, self.width_range) and inside(height, self.height_range)
        return False

    def prepare(self, image: Any, crop_and_scale: str = "center_crop",
                max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
        """Decode an image and bring it to a size this constraint accepts.

        Like ``MLFeatureValue(imageAt:constraint:options:)`` with Vision's crop-and-scale option:
        ``center_crop`` scales the short side to fit and crops the centre, ``scale_fit`` scales the
        long side to fit and pads (black), ``scale_fill`` stretches. Images already of an accepted
        size are left as they are.

        Args:
            image: A PIL image, a path, bytes, or an ``HxWxC`` / ``HxW`` uint8 array.
            crop_and_scale: One of ``center_crop``, ``scale_fit``, ``scale_fill``.
            max_pixels: Images with more pixels are refused (decompression bombs).

        Returns:
            A PIL image in mode ``RGB`` or ``L`` of an accepted size.

        Raises:
            ImageError: If the image cannot be decoded, is too large, or the option is unknown.
        """
        if crop_and_scale not in CROP_AND_SCALE:
            raise ImageError(f"Unknown crop_and_scale {crop_and_scale!r}: use one of {', '.join(CROP_AND_SCALE)}.")
        img = to_pil(image, max_pixels=max_pixels)
        mode = "L" if self.channels == 1 else "RGB"
        if img.mode != mode:
            img = img.convert(mode)  # alpha is ignored, as Core ML ignores it
        if self.accepts(*img.size):
            return img
        w, h = self.width, self.height
        if crop_and_scale == "scale_fill":
            return img.resize((w, h), Image.Resampling.BILINEAR)
        if crop_and_scale == "center_crop":
            return ImageOps.fit(img, (w, h), Image.Resampling.BILINEAR, centering=(0.5, 0.5))
        return ImageOps.pad(img, (w, h), Image.Resampling.BILINEAR, color=0, centering=(0.5, 0.5))

    def to_array(self, image: Image.Image) -> np.ndarray:
        """Pixels of a prepared image as float32 ``[C, H, W]`` in the model's channel order."""
        arr = np.asarray(image)
        if arr.ndim == 2:
            return arr[None].astype(np.float32)
        if self.color_space == "BGR":
            arr = arr[:, :, ::-1]
        return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)  # one pass: layout and dtype

    def __str__(self) -> str:
        extra = ""
        if self.enumerated_sizes:
            extra = f", sizes {list(self.enumerated_sizes)}"
        elif self.width_range:
            extra = f", width {self.width_range} height {self.height_range}"
        return f"Image({self.color_space} {self.width}x{self.height}{extra})"


def to_pil(image: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode a PIL image, path, bytes or uint8 array into a PIL image (EXIF orientation applied).

    Raises:
        ImageError: If the input is not an image, is truncated, or has more than ``max_pixels``.
    """
    if isinstance(image, Image.Image):
        _check_pixels(image.size, max_pixels, "image")
        return image
    if isinstance(image, np.ndarray):
        img = _from_array(image)
        _check_pixels(img.size, max_pixels, "image array")
        return img
    if isinstance(image, (bytes, bytearray)):
        return _decode(io.BytesIO(image), "uploaded image", max_pixels)
    if isinstance(image, (str, os.PathLike)):
        p = Path(image)
        if p.is_dir():
            raise ImageError(f"{p} is a folder, not an image file: give the image files in it (e.g. {p}/*.jpg).")
        if not p.is_file():
            raise ImageError(f"No image file at {p}: check the path.")
        return _decode(p, str(p), max_pixels)
    raise ImageError(
        f"Cannot use a {type(image).__name__} as an image: pass a PIL image, a file path, bytes, "
        "or an HxWxC uint8 numpy array."
    )


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    if size[0] * size[1] > max_pixels:
        raise ImageError(
            f"{name} is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, over the limit of "
            f"{max_pixels:,}; downscale it first (or raise max_pixels if you trust the file)."
        )


def _decode(src: Any, name: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(src)
            _check_pixels(img.size, max_pixels, name)
            img.load()
        if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
        return img
    except ImageError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError(f"{name} is too large to decode safely ({exc}); downscale it first.") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image Pillow can read (JPEG, PNG, ...): choose an image file.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name} could not be decoded ({exc}); the file may be truncated or damaged.") from None


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8:
        raise ImageError(f"Image arrays must be uint8 HxWxC (or HxW), got dtype {arr.dtype}; convert with "
                         "arr.astype(np.uint8) after scaling to 0..255.")
    if arr.ndim == 2:
        return Image.fromarray(arr, "L")
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        if arr.shape[2] == 1:
            return Image.fromarray(arr[:, :, 0], "L")
        return Image.fromarray(arr, "RGB" if arr.shape[2] == 3 else "RGBA")
    raise ImageError(f"Image arrays must be HxWxC with C in 1, 3 or 4 (or HxW), got shape {arr.shape}.")
