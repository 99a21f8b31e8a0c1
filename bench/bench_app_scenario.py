"""The cat/dog app scenario in numbers (issue 5).

The demo model calls one cat breed Dog and one dog breed Cat. Through the app's JSON API (FastAPI's
TestClient, so every request goes through the real routes) we add 1, 5 and 10 corrected photos from the
train split, press Train once with the model's defaults, and measure accuracy on the test split (overall,
on each confused breed, on all other breeds), plus how long one Train takes.

Scenarios: the photos of both confused breeds corrected (n of each), or of one breed only.

    python bench/bench_app_scenario.py [--pets ../shared/data/pets]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        name = info.get("Model name", platform.processor()).strip()
        return f"{name}, {info.get('CPU(s)', '?').strip()} CPUs"
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()


def evaluate(client, test: list[tuple[str, str, str]], confused: tuple[str, str]) -> dict[str, float]:
    ok = []
    for sample, truth, breed in test:
        r = client.post("/api/predict", data={"sample": sample})
        r.raise_for_status()
        ok.append((r.json()["label"] == truth, breed))
    res = {"overall": sum(o for o, _ in ok) / len(ok)}
    for b in confused:
        sel = [o for o, br in ok if br == b]
        res[b] = sum(sel) / len(sel)
    others = [o for o, br in ok if br not in confused]
    res["others"] = sum(others) / len(others)
    return res


def run_train(client) -> dict:
    t0 = time.perf_counter()
    r = client.post("/api/train")
    r.raise_for_status()
    while True:
        st = client.get("/api/train").json()
        if st["state"] != "running":
            break
        time.sleep(0.02)
    st["wall_s"] = time.perf_counter() - t0
    if st["state"] != "completed":
        raise SystemExit(f"Train failed: {st['error']}")
    return st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pets", type=Path, default=ROOT.parent / "shared" / "data" / "pets")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "app_scenario.json")
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from mlupdate.demo import demo_info, demo_model_path
    from mlupdate.web import create_app

    info = demo_info()
    confused = (info["cat_as_dog"], info["dog_as_cat"])
    true_label = {info["cat_as_dog"]: "Cat", info["dog_as_cat"]: "Dog"}
    test = [(f"test/{sub}/{p.name}", "Cat" if sub == "cat" else "Dog", p.stem.rsplit("_", 1)[0])
            for sub in ("cat", "dog") for p in sorted((args.pets / "test" / sub).glob("*.jpg"))]

    def train_photos(breed: str) -> list[str]:
        sub = "cat" if breed[0].isupper() else "dog"
        return [f"train/{sub}/{p.name}" for p in sorted((args.pets / "train" / sub).glob(f"{breed}_*.jpg"))]

    t0 = time.perf_counter()
    model = demo_model_path()
    print(f"demo model ready in {time.perf_counter() - t0:.1f}s: {model}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        with TestClient(create_app(model, Path(tmp) / "base", args.pets), base_url="http://127.0.0.1",
                        headers={"X-Requested-With": "bench"}) as c:
            base = evaluate(c, test, confused)
        rows.append({"scenario": "demo model", "photos": 0, **base})
        print(json.dumps(rows[-1]))
        for scen in [confused, (confused[0],), (confused[1],)]:
            for n in (1, 5, 10):
                with TestClient(create_app(model, Path(tmp) / f"{'+'.join(scen)}-{n}", args.pets),
                                base_url="http://127.0.0.1", headers={"X-Requested-With": "bench"}) as c:
                    for breed in scen:
                        for sample in train_photos(breed)[:n]:
                            r = c.post("/api/examples", data={"label": true_label[breed], "sample": sample})
                            r.raise_for_status()
                    st = run_train(c)
                    acc = evaluate(c, test, confused)
                rows.append({"scenario": " + ".join(scen), "photos": n * len(scen), **acc,
                             "train_s": st["duration_s"], "train_wall_s": round(st["wall_s"], 3),
                             "final_loss": st["loss"]})
                print(json.dumps(rows[-1]))
    result = {"machine": machine(), "confused": confused, "defaults": {k: info[k] for k in
                                                                       ("learning_rate", "mini_batch_size", "epochs")},
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))

    a, b = confused
    print(f"\nMachine: {result['machine']}. Defaults: {result['defaults']}\n")
    print(f"| corrected photos | overall | {a} | {b} | other breeds | one Train (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        what = "none (demo model)" if r["photos"] == 0 else f"{r['photos']} ({r['scenario']})"
        t = f"{r['train_s']:.2f}" if "train_s" in r else "–"
        print(f"| {what} | {r['overall']:.1%} | {r[a]:.0%} | {r[b]:.0%} | {r['others']:.1%} | {t} |")


if __name__ == "__main__":
    main()
