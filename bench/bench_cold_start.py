"""Cold start benchmark (issue 10): a fresh process that loads a model and predicts one photo.

For the demo model (EfficientNet-Lite0 backbone and the cat/dog head) and a small CNN, each run a
new Python process, measured from outside (wall time from start to exit) and inside (peak RSS):

* ``mlupdate warm``: ``mlupdate.load(model).predict({"image": photo})`` with the model compiled
  (its ONNX artifact in the cache), as after ``mlupdate compile``;
* ``mlupdate cold``: the same with an empty cache (the first load compiles);
* ``mlupdate predict``: the command line (``python -m mlupdate predict MODEL PHOTO --threads N``), time only;
* ``ort``: a bare onnxruntime script doing the same work on the same exported graph (the cached
  artifact): Pillow decode, centre crop, resize, float32 NCHW, ``InferenceSession.run``, argmax.

Both sides run with the same threads (``--threads``, default 2) and alternate, so drift hits
both alike. Ten warm runs must leave one artifact in the cache; the script prints the count.

Usage: ``python bench/bench_cold_start.py [--repeats 10] [--cold-repeats 3] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import prepare  # noqa: E402
from common import PETS, machine  # noqa: E402

RSS = """
def _rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

OURS = RSS + """
import json, sys
import mlupdate
model = mlupdate.load(sys.argv[1], threads=int(sys.argv[3]))
out = model.predict({"image": sys.argv[2]})
label = next(v for k, v in out.items() if not isinstance(v, dict))
print(json.dumps({"label": str(label), "rss": _rss(), "torch": "torch" in sys.modules}))
"""

BARE = RSS + """
import json, sys
import numpy as np
import onnxruntime as ort
from PIL import Image
opts = ort.SessionOptions()
opts.intra_op_num_threads, opts.inter_op_num_threads = int(sys.argv[3]), 1
session = ort.InferenceSession(sys.argv[1], sess_options=opts, providers=["CPUExecutionProvider"])
shape = session.get_inputs()[0].shape
h, w = int(shape[-2]), int(shape[-1])
im = Image.open(sys.argv[2]).convert("RGB")
side = min(im.size)
left, top = (im.width - side) // 2, (im.height - side) // 2
im = im.crop((left, top, left + side, top + side)).resize((w, h), Image.Resampling.BILINEAR)
x = np.asarray(im, np.float32).transpose(2, 0, 1)[None]
x = x.reshape([1] * (len(shape) - 4) + list(x.shape))
outs = session.run(None, {session.get_inputs()[0].name: x})
print(json.dumps({"label": int(np.argmax(outs[-1])), "rss": _rss()}))
"""


def run(code: str, args: list[str], cache: Path) -> tuple[float, dict]:
    """Wall time of a fresh process running ``code`` (``CLI``: the command), and the JSON it prints."""
    env = {**os.environ, "MLUPDATE_CACHE_DIR": str(cache), "OMP_NUM_THREADS": args[-1]}
    cmd = ([sys.executable, "-m", "mlupdate", "predict", args[0], args[1], "--threads", args[2]] if code == "CLI"
           else [sys.executable, "-c", code, *args])
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    secs = time.perf_counter() - t0
    return secs, {} if code == "CLI" else json.loads(done.stdout.strip().splitlines()[-1])


def models(work: Path) -> dict[str, Path]:
    """The demo model (built once into the user's data folder) and the small CNN of bench_predict."""
    from mlupdate.demo import demo_model_path

    return {"demo (EfficientNet-Lite0 + head)": demo_model_path(), "small CNN": prepare(work)["small_cnn"]["mlmodel"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--cold-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mlupdate-bench")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    photo = str(sorted((PETS / "test" / "cat").iterdir())[0])
    threads = str(a.threads)
    print(f"machine: {machine()}; python {sys.version.split()[0]}; {a.threads} threads on every side")
    print("| model | mlupdate warm s | ort s | ratio | mlupdate predict (CLI) s | ratio | mlupdate cold s "
          "| mlupdate warm MiB | ort MiB | ratio | torch imported (warm) | artifacts after warm runs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, path in models(a.work).items():
        with tempfile.TemporaryDirectory() as tmp:
            warm_cache = Path(tmp) / "warm"
            cold = [run(OURS, [str(path), photo, threads], Path(tmp) / f"cold{i}")[0]
                    for i in range(a.cold_repeats)]
            run(OURS, [str(path), photo, threads], warm_cache)  # compiles once, as `mlupdate compile` does
            (artifact,) = list(warm_cache.rglob("*.onnx"))
            times: dict[str, list[float]] = {"ours": [], "cli": [], "bare": []}
            ours_rss, bare_rss, torch_seen = [], [], False
            sides = [("ours", OURS, str(path)), ("cli", "CLI", str(path)), ("bare", BARE, str(artifact))]
            for r in range(a.repeats):
                for side, code, target in sides[r % 3:] + sides[:r % 3]:
                    t, res = run(code, [target, photo, threads], warm_cache)
                    times[side].append(t)
                    if side != "cli":
                        (ours_rss if side == "ours" else bare_rss).append(res["rss"])
                    torch_seen |= bool(res.get("torch"))
            artifacts = len(list(warm_cache.rglob("*.onnx")))
        ot, ct, bt = (statistics.median(times[k]) for k in ("ours", "cli", "bare"))
        orss, brss = statistics.median(ours_rss), statistics.median(bare_rss)
        print(f"| {name} | {ot:.2f} | {bt:.2f} | {ot / bt:.2f}x | {ct:.2f} | {ct / bt:.2f}x | "
              f"{statistics.median(cold):.1f} | {orss:.0f} | {brss:.0f} | {orss / brss:.2f}x | "
              f"{'yes' if torch_seen else 'no'} | {artifacts} |", flush=True)


if __name__ == "__main__":
    main()
