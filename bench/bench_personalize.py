"""Proof of value (issue 4): accuracy on the pets test split before and after personalisation.

Two models, each updated with ``mlupdate.UpdateTask`` on 1, 5 and 20 photos per class (Cat, Dog) drawn at
random from the train split, for several seeds; every model (before, and each updated ``ctx.model``) predicts
all test photos once with ``predict_batch``.

- ``fresh``: a pretrained EfficientNet-Lite0 (features + global pooling, frozen) converted with
  ``mlupdate.convert``, plus a freshly initialised head ``dense_5`` (1280 -> 32) ReLU ``dense_6`` (32 -> 2)
  softmax, both updatable (CCE, SGD). The head has never seen a cat or a dog: what it knows after the update
  comes from the update alone. Each seed initialises its own head (``torch.manual_seed(seed)``).
- ``demo``: the demo model (``mlupdate.demo.demo_model_path()``, confused about Sphynx cats and Great
  Pyrenees dogs), updated with its own defaults.

Seed ``s`` draws a random order of each class's train photos (``numpy.random.default_rng(s)``); ``n`` examples
per class are the first ``n`` of that order (so the 5 include the 1), and ``s`` is also the update's shuffle seed.

    python bench/bench_personalize.py [--pets ../shared/data/pets] [--seeds 0 1 2 3 4] [--lr 0.01 --batch 5 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("MLUPDATE_BENCH_DIR", "/tmp/mlupdate-bench"))
CLASSES = {"cat": "Cat", "dog": "Dog"}
EPOCHS_ALLOWED = tuple(range(1, 201))
BATCH_SIZES = (1, 2, 4, 5, 8, 10, 16, 20, 32, 40)
CHUNK = 32  # test photos per predict_batch call (bounds memory)


def machine() -> str:
    """``lscpu``'s model name and ``nproc``."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, nproc {os.cpu_count()}"


def photos(pets: Path, split: str) -> dict[str, list[Path]]:
    """Label -> sorted photo paths of one split."""
    found = {label: sorted((pets / split / sub).glob("*.jpg")) for sub, label in CLASSES.items()}
    for label, paths in found.items():
        if not paths:
            raise SystemExit(f"No photos in {pets / split}/{label.lower()}; pass --pets <folder with train/, test/>.")
    return found


def draw(train: dict[str, list[Path]], n: int, seed: int) -> list[tuple[Path, str]]:
    """The first ``n`` photos of each class in the seed's random order (nested across ``n``)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[Path, str]] = []
    for label in sorted(train):
        order = rng.permutation(len(train[label]))
        out += [(train[label][i], label) for i in order[:n]]
    return out


def base_model(lr: float, batch: int, momentum: float, epochs: int) -> Path:
    """EfficientNet-Lite0 + an updatable 1280-32-2 head, converted once and cached in ``$MLUPDATE_BENCH_DIR``."""
    path = WORK / f"personalize_effnet_head_lr{lr}_b{batch}_m{momentum}_e{epochs}.mlmodel"
    if path.is_file():
        return path
    import torch

    import mlupdate
    from mlupdate.demo import model as demo

    torch.manual_seed(0)
    net = demo.DemoNet(demo.Backbone(demo.load_backbone()), demo.Head()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Warning)  # the softmaxND -> softmax repair note
        plain = mlupdate.convert(net, torch.zeros(1, 3, demo.IMAGE_SIZE, demo.IMAGE_SIZE),
                                 image_input={"scale": demo.IMAGE_SCALE, "bias": demo.IMAGE_BIAS},
                                 class_labels=demo.CLASS_LABELS, output_name="classLabelProbs")
        model = mlupdate.make_updatable(
            plain, ["dense_5", "dense_6"], loss="categorical_cross_entropy",
            optimizer=mlupdate.SGD(learning_rate=lr, mini_batch_size=batch, momentum=momentum,
                                   mini_batch_sizes=sorted({*BATCH_SIZES, batch})),
            epochs=epochs, epochs_allowed=sorted({*EPOCHS_ALLOWED, epochs}))
    path.parent.mkdir(parents=True, exist_ok=True)
    return model.write(path)


def fresh_head(spec: Any, seed: int) -> Any:
    """``spec`` with ``dense_5``/``dense_6`` set to PyTorch's default initialisation under ``manual_seed(seed)``."""
    import torch

    from mlupdate.demo.model import Head

    torch.manual_seed(seed)
    head = Head()
    layers = {layer.name: layer for layer in spec.neuralNetworkClassifier.layers}
    for name in ("dense_5", "dense_6"):
        ip = layers[name].innerProduct  # Core ML stores innerProduct weights [out, in], as nn.Linear
        lin = getattr(head, name)
        assert layers[name].WhichOneof("layer") == "innerProduct" and len(ip.weights.floatValue) == lin.weight.numel()
        ip.weights.floatValue[:] = lin.weight.detach().numpy().reshape(-1).tolist()
        ip.bias.floatValue[:] = lin.bias.detach().numpy().tolist()
    return spec


def accuracy(model: Any, test: list[tuple[Path, str]], label_name: str) -> float:
    """Fraction of test photos whose predicted label is right (``predict_batch`` in chunks)."""
    right = 0
    for i in range(0, len(test), CHUNK):
        chunk = test[i:i + CHUNK]
        outs = model.predict_batch([{"image": str(p)} for p, _ in chunk])
        right += sum(o[label_name] == truth for o, (_, truth) in zip(outs, chunk, strict=True))
    return right / len(test)


def personalise(model: Any, examples: list[tuple[Path, str]], parameters: dict[str, Any]) -> tuple[Any, float]:
    """Run one update; returns the updated model and the update's wall time (s)."""
    import mlupdate

    names = list(model.description.training_inputs)  # [image input, label]
    data = [{names[0]: str(p), names[1]: label} for p, label in examples]
    t0 = time.perf_counter()
    ctx = mlupdate.UpdateTask(model, data, parameters=parameters).run()
    return ctx.model, time.perf_counter() - t0


def block(name: str, models: dict[int, Any], train: dict[str, list[Path]], test: list[tuple[Path, str]],
          sizes: list[int], parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """Accuracy before and after each update, per seed; ``models[seed]`` is the model before."""
    rows = []
    seen: dict[int, float] = {}  # the same model before, under several seeds: predict it once
    for seed, model in models.items():
        label_name = model.description.predicted_feature_name
        before = seen[id(model)] if id(model) in seen else accuracy(model, test, label_name)
        seen[id(model)] = before
        rows.append({"model": name, "seed": seed, "n": 0, "accuracy": before, "update_s": None})
        print(f"{name} seed {seed}: before {before:.3f}", flush=True)
        for n in sizes:
            updated, secs = personalise(model, draw(train, n, seed), {**parameters, "seed": seed})
            acc = accuracy(updated, test, label_name)
            rows.append({"model": name, "seed": seed, "n": n, "accuracy": acc, "update_s": secs})
            print(f"{name} seed {seed}: {n}/class -> {acc:.3f} (update {secs:.1f} s)", flush=True)
    return rows


def table(rows: list[dict[str, Any]], titles: dict[str, str]) -> str:
    """Markdown: one line per model and number of examples, accuracy mean [min, max] over seeds."""
    lines = ["| model | examples per class | accuracy, mean | min | max | update time, mean |",
             "|---|---|---|---|---|---|"]
    for name, title in titles.items():
        for n in sorted({r["n"] for r in rows if r["model"] == name}):
            sel = [r for r in rows if r["model"] == name and r["n"] == n]
            accs = [100 * r["accuracy"] for r in sel]
            secs = [r["update_s"] for r in sel if r["update_s"] is not None]
            label = "0 (before)" if n == 0 else str(n)
            when = f"{statistics.mean(secs):.1f} s" if secs else "–"
            lines.append(f"| {title} | {label} | {statistics.mean(accs):.1f}% | {min(accs):.1f}% | "
                         f"{max(accs):.1f}% | {when} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pets", type=Path, default=ROOT.parent / "shared" / "data" / "pets",
                    help="folder holding train/{cat,dog} and test/{cat,dog}")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 20], help="examples per class")
    ap.add_argument("--lr", type=float, default=0.01, help="fresh head: SGD learning rate")
    ap.add_argument("--batch", type=int, default=5, help="fresh head: mini-batch size")
    ap.add_argument("--momentum", type=float, default=0.9, help="fresh head: SGD momentum")
    ap.add_argument("--epochs", type=int, default=20, help="fresh head: epochs")
    ap.add_argument("--models", nargs="+", choices=["fresh", "demo"], default=["fresh", "demo"])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "personalize.json")
    args = ap.parse_args()

    # Every updated model exports its own ONNX graph: keep those out of the user's cache.
    os.environ.setdefault("MLUPDATE_CACHE_DIR", tempfile.mkdtemp(prefix="mlupdate-personalize-"))
    import mlupdate

    train = photos(args.pets, "train")
    test = [(p, label) for label, paths in photos(args.pets, "test").items() for p in paths]
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    titles: dict[str, str] = {}
    if "fresh" in args.models:
        base = mlupdate.load(base_model(args.lr, args.batch, args.momentum, args.epochs))
        models = {s: mlupdate.Model(fresh_head(base.spec, s), compute_units="cpu_only") for s in args.seeds}
        rows += block("fresh", models, train, test, args.sizes, {})
        titles["fresh"] = "EfficientNet-Lite0 + fresh head"
    if "demo" in args.models:
        from mlupdate.demo import demo_model_path

        demo = mlupdate.load(demo_model_path(), compute_units="cpu_only")
        rows += block("demo", dict.fromkeys(args.seeds, demo), train, test, args.sizes, {})
        titles["demo"] = "demo model (confused)"
    total = time.perf_counter() - t0
    print()
    print(f"Machine: {machine()}. Test split: {len(test)} photos. Fresh head: SGD lr {args.lr}, momentum "
          f"{args.momentum}, batch {args.batch}, {args.epochs} epochs, shuffle on. Total {total:.0f} s.")
    print()
    print(table(rows, titles))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                    "total_s": total, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
