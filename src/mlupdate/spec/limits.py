"""The size limits a model must fit: declared images and arrays, and what a layer may produce per example."""

from __future__ import annotations

import os

#: Largest declared image (width x height) and multiarray (element count) a model may have; every
#: real model fits. Loading allocates sample inputs of the declared size, so a file that declares
#: more is refused before anything is allocated. Environment variables raise them.
MAX_IMAGE_PIXELS_ENV = "MLUPDATE_MAX_IMAGE_PIXELS"
MAX_ARRAY_ELEMENTS_ENV = "MLUPDATE_MAX_ARRAY_ELEMENTS"
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
DEFAULT_MAX_ARRAY_ELEMENTS = 1 << 26


def _limit(env: str, default: int) -> int:
    value = os.environ.get(env, "")
    return int(value) if value.isdigit() else default


def max_array_elements() -> int:
    """The largest array (element count) a model may declare or a layer may produce per example."""
    return _limit(MAX_ARRAY_ELEMENTS_ENV, DEFAULT_MAX_ARRAY_ELEMENTS)


def max_image_pixels() -> int:
    """The largest image (width x height) a model may declare."""
    return _limit(MAX_IMAGE_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS)
