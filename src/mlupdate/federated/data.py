"""Labelled photos from folders, and their partition into simulated users.

A DATA folder holds ``<label>/<image>`` files (``mlupdate update``'s layout), or ``train/`` and ``test/``
folders of that layout: users share ``train/``, the server evaluates on ``test/``. They are read by
:func:`mlupdate.update.files.labelled`, ``mlupdate update``'s reader, with its label rule.

Partitions (seeded, numpy only): ``iid`` (shuffled, equal shares), ``by-label`` (each user holds one label;
labels go round the users) and ``dirichlet:ALPHA`` (per label, shares drawn from Dirichlet(ALPHA); small
ALPHA is very skewed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlupdate.errors import ParameterError, TrainingDataError
from mlupdate.spec.description import Description
from mlupdate.update import files

Pair = tuple[str, Any]  # (image path, class label)


def io_names(spec: Any) -> tuple[str, str, list[Any]]:
    """The model's image input, label training input and class labels.

    Raises:
        TrainingDataError: The model is not an image classifier with a label training input.
    """
    desc = Description.from_spec(spec)
    images = [f.name for f in desc.inputs.values() if f.type == "image"]
    label = next((n for n in desc.training_inputs if n not in desc.inputs), None)
    if len(images) != 1 or label is None or not desc.class_labels:
        raise TrainingDataError("Federating photos needs an image classifier with one image input and a label "
                                f"training input; this model has inputs {list(desc.inputs)}, training inputs "
                                f"{list(desc.training_inputs)}.")
    return images[0], label, list(desc.class_labels)


def split_dirs(data: str | Path) -> tuple[Path, Path | None]:
    """The users' folder and the held-out folder of DATA (``train/`` and ``test/`` when it has them)."""
    root = Path(data)
    if (root / "train").is_dir():
        return root / "train", (root / "test") if (root / "test").is_dir() else None
    return root, None


def labelled(folder: str | Path, labels: Sequence[Any], announce: bool = False) -> list[Pair]:
    """``(path, class label)`` pairs of a user's folder (:func:`mlupdate.update.files.labelled`).

    Nodes read quietly (``announce=False``): the command that starts them announces a case-insensitive
    reading of the folder names once.

    Raises:
        TrainingDataError: No images, or a folder that names no class label.
    """
    return files.labelled(folder, labels, announce=announce)


def examples(pairs: Sequence[Pair], image: str, label: str) -> list[dict[str, Any]]:
    """Training examples (feature dicts) for an ``UpdateTask``."""
    return [{image: path, label: lab} for path, lab in pairs]


def hold_out(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Split pairs into (train, held-out), ``fraction`` of every label held out (at least one if it has two)."""
    rng = np.random.default_rng(seed)
    train: list[Pair] = []
    test: list[Pair] = []
    for lab in dict.fromkeys(lab for _, lab in pairs):
        idx = [i for i, (_, x) in enumerate(pairs) if x == lab]
        rng.shuffle(idx)
        k = min(len(idx) - 1, max(1, round(len(idx) * fraction))) if len(idx) > 1 else 0
        test += [pairs[i] for i in sorted(idx[:k])]
        train += [pairs[i] for i in sorted(idx[k:])]
    return train, test


def federation_split(data: str | Path, labels: Sequence[Any], seed: int, announce: bool = False) \
        -> tuple[list[Pair], list[Pair]]:
    """(users' pairs, server's held-out pairs) of DATA: ``train/`` and ``test/``, else 20% of every label held out.

    ``announce``: warn once when folder names match the labels only ignoring case (the command does).

    Raises:
        TrainingDataError: No DATA configured, no images, or a folder that is no class label.
    """
    if not str(data):
        raise TrainingDataError("No DATA folder configured: set 'data' in the run config (a folder of <label>/ "
                                "folders, or of train/ and test/ ones).")
    users, test = split_dirs(data)
    pairs = labelled(users, labels, announce)
    return (pairs, labelled(test, labels, announce)) if test is not None else hold_out(pairs, 0.2, seed)


def partition(labels: Sequence[Any], users: int, scheme: str = "iid", seed: int = 0) -> list[list[int]]:
    """Indices of each user's examples.

    Args:
        labels: The label of every example.
        users: Number of users (>= 1).
        scheme: ``iid``, ``by-label`` or ``dirichlet:ALPHA``.
        seed: Seed of the shuffle and the Dirichlet draws.

    Raises:
        ParameterError: An unknown scheme, a bad ALPHA, or fewer examples than users.
        TrainingDataError: A scheme that would leave a user without examples.
    """
    n = len(labels)
    if users < 1 or n < users:
        raise ParameterError(f"Cannot split {n} examples among {users} users: use between 1 and {n} users.")
    rng = np.random.default_rng(seed)
    classes = list(dict.fromkeys(labels))
    per_class = [rng.permutation([i for i, lab in enumerate(labels) if lab == c]) for c in classes]
    if scheme == "iid":
        parts = np.array_split(rng.permutation(n), users)
    elif scheme == "by-label":
        parts = [[] for _ in range(users)]
        for c, idx in enumerate(per_class):
            owners = range(c, users, len(classes)) if users >= len(classes) else [c % users]
            for u, chunk in zip(owners, np.array_split(idx, len(owners)), strict=True):
                parts[u] += chunk.tolist()
    elif scheme.startswith("dirichlet:"):
        parts = _dirichlet(per_class, users, _alpha(scheme), rng)
    else:
        raise ParameterError(f"Unknown partition '{scheme}': use iid, by-label or dirichlet:ALPHA (e.g. "
                             "dirichlet:0.5).")
    out = [sorted(int(i) for i in p) for p in parts]
    empty = [u for u, p in enumerate(out) if not p]
    if empty:
        raise TrainingDataError(f"Partition '{scheme}' leaves user(s) {empty} without examples ({n} examples, "
                                f"{len(classes)} labels, {users} users). Use fewer users or another partition.")
    return out


def _alpha(scheme: str) -> float:
    try:
        alpha = float(scheme.split(":", 1)[1])
    except ValueError:
        alpha = -1.0
    if not alpha > 0:
        raise ParameterError(f"'{scheme}': ALPHA must be a positive number, e.g. dirichlet:0.5.")
    return alpha


def _dirichlet(per_class: list[np.ndarray], users: int, alpha: float, rng: np.random.Generator) -> list[list[int]]:
    """Per class, cut its examples by Dirichlet shares; redraw (up to 100 times) until every user has one."""
    for _ in range(100):
        parts: list[list[int]] = [[] for _ in range(users)]
        for idx in per_class:
            cuts = (np.cumsum(rng.dirichlet([alpha] * users)) * len(idx)).astype(int)[:-1]
            for u, chunk in enumerate(np.split(idx, cuts)):
                parts[u] += chunk.tolist()
        if all(parts):
            break
    return parts
