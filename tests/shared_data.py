"""Where the tests find the data that is not in the repository, and the reason they skip without it.

The pet photos (Oxford-IIIT Pet head crops, ``train/`` and ``test/`` of ``cat/`` and ``dog/``) and the
third-party ``.mlmodel`` files live beside a checkout, in ``../shared/data/pets`` and ``../shared/models``;
``MLUPDATE_PETS`` and ``MLUPDATE_MODELS`` point elsewhere. Tests that need them are skipped, never
failed, when they are absent (a fresh clone).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PETS = Path(os.environ.get("MLUPDATE_PETS") or ROOT.parent / "shared" / "data" / "pets")
MODELS = Path(os.environ.get("MLUPDATE_MODELS") or ROOT.parent / "shared" / "models")


def pets_or_skip() -> Path:
    """The pet photos' folder, or skip the test saying how to provide them."""
    if not (PETS / "train" / "cat").is_dir():
        pytest.skip(f"needs the pet photos at {PETS}: check out ../shared beside the repo or set MLUPDATE_PETS")
    return PETS


def model_or_skip(name: str) -> Path:
    """A third-party model of ``../shared/models`` (or ``$MLUPDATE_MODELS``), or skip the test saying how."""
    path = MODELS / name
    if not path.is_file():
        pytest.skip(f"needs {name} at {MODELS}: check out ../shared beside the repo or set MLUPDATE_MODELS")
    return path
