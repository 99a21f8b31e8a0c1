"""Small pet-photo folders for the federated tests (symlinks into the shared pets data)."""

from __future__ import annotations

from pathlib import Path

CONFUSED = ("Sphynx", "great_pyrenees")  # the demo model's deliberately wrong breeds


def pick(pets: Path, split: str, label: str, confused: int, others: int, offset: int = 0) -> list[Path]:
    """``confused`` photos of the label's confused breed, then ``others`` of its other breeds (every 7th)."""
    photos = sorted((pets / split / label).glob("*.jpg"))
    bad = [p for p in photos if p.name.startswith(CONFUSED)]
    good = [p for p in photos if not p.name.startswith(CONFUSED)]
    return bad[offset:offset + confused] + good[offset::7][:others]


def link(photos: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for p in photos:
        (folder / p.name).symlink_to(p)


def pets_subset(pets: Path, root: Path, train: tuple[int, int], test: tuple[int, int], offset: int = 0) -> Path:
    """``root/train`` and ``root/test``, each with ``cat/`` and ``dog/`` folders (``(confused, others)`` each)."""
    for split, (confused, others) in (("train", train), ("test", test)):
        for label in ("cat", "dog"):
            link(pick(pets, split, label, confused, others, offset), root / split / label)
    return root
