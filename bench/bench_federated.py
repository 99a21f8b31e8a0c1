"""Benchmark: fleet personalisation and federated rounds on Ray, on this machine (issue 13, item 5).

The demo model (``mlupdate.demo.demo_model_path()``, confused about Sphynx cats and Great Pyrenees dogs), the
pets photos of ../shared/data/pets, the model's own update parameters (10 epochs, SGD, batch 5) everywhere.
Every measurement runs the CLI (or, for the central update, this script) in a fresh subprocess; a thread here
samples ``/proc`` every 0.5 s for the subprocess and all its descendants (the Ray workers, raylet, GCS...) and
keeps each process's ``VmHWM`` (peak RSS; psutil is not installed with this venv's Ray, so no psutil).

1. Fleet throughput: ``mlupdate personalize-fleet`` on 10 user folders (symlinks into pets/train: per label
   2 photos of the confused breed + 5 others to train on, 1 + 2 held out; 14 trained, 6 held out per user),
   ``--workers 0`` (one UpdateTask after another, no Ray) with 1 and with 2 torch threads, ``--workers 1``
   and ``--workers 2`` (one thread per Ray worker: ``OMP_NUM_THREADS=1``, as Ray sets it). Same users,
   photos, parameters and epochs in every mode; wall time includes Python start-up and, on Ray, ray.init.
2. Round cost: ``mlupdate federate`` (Flower simulation on a local Ray, 2 CPUs), 10 iid users of pets/train,
   the server evaluating on pets/test. Per-round times come from the history file (``time`` is seconds since
   the server started; round 0 is the original model's evaluation). Measured on the IID run of part 3: its
   first 5 rounds are the 10 users x 5 rounds run (a round does not depend on how many follow).
3. Rounds to the clean-label accuracy: one central UpdateTask on all the training photos the federation uses
   (same epochs), its accuracy on pets/test (``predict_batch``) is the target; then ``federate
   --partition iid`` and ``--partition by-label``, 10 users, up to ``--max-rounds`` rounds: the first round
   whose held-out accuracy is within 1 point of the target.
4. Memory: peak RSS of the driver (the CLI process) and of each Ray worker process (``ray::...``) during
   every Ray run above.
5. On paper: 10,000 users on K nodes of 2 cores / 2 workers each, from the 2-worker figures.

Sizes are chosen to keep the whole run under ~12 minutes on 2 cores (about 7 when the machine is idle): 10
users; the federation trains on 120 photos per label of pets/train (all 38 confused-breed photos, the others
evenly spaced; 240 in all, 24 per user) and evaluates on all 138 of pets/test; 8 rounds per partition;
10 epochs (the only value the demo model allows). ``--fed-train 0`` uses all 436 training photos (~3 min more).
Each mode runs once (no repeats: the run is too long to repeat); the load average is printed at both ends.

    python bench/bench_federated.py [--users 10 --rounds 5 --max-rounds 8 --fed-train 120 --keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import PETS, machine  # noqa: E402

CLI = [sys.executable, "-m", "mlupdate"]
CONFUSED = ("Sphynx", "great_pyrenees")  # the demo model's deliberately wrong breeds (tests/unit/federated_support)
CLOSE = 0.01  # "within 1 point" of the clean-label accuracy


# ---------------------------------------------------------------------------------------------------- data


def link(photos: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for p in photos:
        (folder / p.name).symlink_to(p)


def fleet_users(root: Path, users: int, conf_train: int = 2, other_train: int = 5, conf_test: int = 1,
                other_test: int = 2) -> Path:
    """``root/userNN/{train,test}/{cat,dog}``: confused-breed photos go round (shared between users, never
    between one user's train and test); the other photos are disjoint between users."""
    for label in ("cat", "dog"):
        photos = sorted((PETS / "train" / label).glob("*.jpg"))
        bad = [p for p in photos if p.name.startswith(CONFUSED)]
        good = [p for p in photos if not p.name.startswith(CONFUSED)]
        per_conf, per_other = conf_train + conf_test, other_train + other_test
        for u in range(users):
            conf = [bad[(u * per_conf + i) % len(bad)] for i in range(per_conf)]
            other = good[u * per_other:(u + 1) * per_other]
            user = root / f"user{u:02d}"
            link(conf[:conf_train] + other[:other_train], user / "train" / label)
            link(conf[conf_train:] + other[other_train:], user / "test" / label)
    return root


def federation_data(root: Path, per_label: int) -> Path:
    """``root/train`` (``per_label`` photos of each label, every confused one first; 0: all) and ``root/test``
    (all of pets/test)."""
    for label in ("cat", "dog"):
        photos = sorted((PETS / "train" / label).glob("*.jpg"))
        if per_label:
            bad = [p for p in photos if p.name.startswith(CONFUSED)]
            good = [p for p in photos if not p.name.startswith(CONFUSED)]
            step = max(1, len(good) // max(1, per_label - len(bad)))
            photos = sorted(bad + good[::step][:max(0, per_label - len(bad))])
        link(photos, root / "train" / label)
        link(sorted((PETS / "test" / label).glob("*.jpg")), root / "test" / label)
    return root


# ---------------------------------------------------------------------------------------------------- memory


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:", "PPid:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class Sampler(threading.Thread):
    """Every ``interval`` s: each descendant of ``root``'s peak RSS (VmHWM, MiB) and the total RSS of the tree."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak: dict[int, float] = {}
        self.titles: dict[int, set[str]] = {}
        self.total_peak = 0.0
        self.samples = 0
        self._halt = threading.Event()

    def tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as fh:
                        ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += children.get(pid, [])
        return out

    def run(self) -> None:
        while not self._halt.is_set():
            total = 0.0
            for pid in self.tree():
                st = _status(pid)
                if "VmHWM" not in st:
                    continue
                total += st["VmRSS"] / 1024
                self.peak[pid] = max(self.peak.get(pid, 0.0), st["VmHWM"] / 1024)
                name = _cmdline(pid)  # a Ray worker renames itself: ray::IDLE, ray::ClientAppActor.run, ...
                if name:
                    self.titles.setdefault(pid, set()).add(name.split()[0])
            self.total_peak = max(self.total_peak, total)
            self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def report(self) -> dict[str, Any]:
        def ray_titles(pid: int) -> set[str]:  # Ray's own agents (ray::DashboardAgent...) are no workers
            return {t for t in self.titles.get(pid, ()) if t.startswith("ray::") and not t.endswith("Agent")}

        workers = {pid: mb for pid, mb in self.peak.items() if ray_titles(pid)}
        busy = {pid: mb for pid, mb in workers.items() if ray_titles(pid) - {"ray::IDLE"}}
        return {"driver": self.peak.get(self.root), "workers": len(workers), "busy": len(busy),
                "worker_max": max(busy.values(), default=None),
                "worker_median": statistics.median(busy.values()) if busy else None,
                "idle_max": max((mb for pid, mb in workers.items() if pid not in busy), default=None),
                "worker_names": sorted({t for p in workers for t in ray_titles(p)}),
                "tree_total": self.total_peak, "processes": len(self.peak), "samples": self.samples}


def run_measured(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` as a subprocess, sampling its process tree; wall seconds, output, memory report."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, cwd=ROOT)
    sampler = Sampler(proc.pid)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.stop()
    if log is not None:
        log.write_text(out)
    if proc.returncode:
        print(f"!! {' '.join(cmd[2:5])}... exited {proc.returncode}; last output:\n{out[-3000:]}", file=sys.stderr)
    return {"wall": wall, "rc": proc.returncode, "out": out, "mem": sampler.report()}


# ---------------------------------------------------------------------------------------------------- parts


def fleet(model: Path, users_dir: Path, work: Path, epochs: int) -> list[dict[str, Any]]:
    modes = [("loop, 1 thread", 0, "1"), ("loop, 2 threads", 0, "2"), ("Ray, 1 worker", 1, "1"),
             ("Ray, 2 workers", 2, "1")]
    rows = []
    for name, workers, threads in modes:
        tag = f"fleet-w{workers}-t{threads}"
        js = work / f"{tag}.json"
        cmd = CLI + ["personalize-fleet", str(model), str(users_dir), "--out", str(work / tag), "--workers",
                     str(workers), "--epochs", str(epochs), "--json", str(js)]
        progress(f"fleet: {name}")
        r = run_measured(cmd, {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}, work / f"{tag}.log")
        data = json.loads(js.read_text()) if js.exists() else {"users": [], "summary": {}}
        m = re.search(r"(\d+) users in ([\d.]+) s", r["out"])
        r.update(name=name, workers=workers, threads=int(threads), summary=data["summary"], users=data["users"],
                 inside=float(m.group(2)) if m else None,
                 task_seconds=sum(u.get("seconds", 0.0) for u in data["users"]))
        rows.append(r)
    return rows


def central(model: Path, data: Path, epochs: int, work: Path) -> dict[str, Any]:
    progress("central update (clean-label accuracy)")
    r = run_measured([sys.executable, __file__, "--child-central", str(model), str(data), str(epochs)],
                     log=work / "central.log")
    last = [line for line in r["out"].splitlines() if line.startswith("{")]
    if r["rc"] or not last:
        raise SystemExit("the central update failed; see the output above")
    return {**r, **json.loads(last[-1])}


def child_central(model_path: str, data: str, epochs: int) -> None:
    """In a fresh process: one UpdateTask on every training photo, accuracy on the test split before/after."""
    import mlupdate

    model = mlupdate.load(model_path)
    image, label = list(model.description.training_inputs)
    by_lower = {str(c).lower(): c for c in model.description.class_labels}

    def pairs(split: str) -> list[tuple[str, Any]]:
        return [(str(p), by_lower[d.name.lower()]) for d in sorted((Path(data) / split).iterdir())
                for p in sorted(d.iterdir())]

    def accuracy(m: Any, test: list[tuple[str, Any]]) -> float:
        right = 0
        for i in range(0, len(test), 32):
            chunk = test[i:i + 32]
            outs = m.predict_batch([{image: p} for p, _ in chunk])
            right += sum(o[label] == truth for o, (_, truth) in zip(outs, chunk, strict=True))
        return right / len(test)

    train, test = pairs("train"), pairs("test")
    before = accuracy(model, test)
    t0 = time.perf_counter()
    ctx = mlupdate.UpdateTask(model, [{image: p, label: lab} for p, lab in train],
                              parameters={"epochs": epochs}).run()
    seconds = time.perf_counter() - t0
    print(json.dumps({"before": before, "after": accuracy(ctx.model, test), "update_seconds": seconds,
                      "train": len(train), "test": len(test)}))


def empty_rounds(model: Path, users: int, rounds: int, work: Path) -> dict[str, Any]:
    """The floor's Flower part: the same simulation engine and settings, clients that echo the weights."""
    progress(f"empty Flower rounds (floor), {users} users, {rounds} rounds")
    r = run_measured([sys.executable, __file__, "--child-empty", str(model), str(users), str(rounds)],
                     log=work / "empty.log")
    last = [line for line in r["out"].splitlines() if line.startswith("{")]
    return {**r, "times": json.loads(last[-1])["times"] if last else []}


def child_empty(model_path: str, users: int, rounds: int) -> None:
    """In a fresh process: FedAvg over ``users`` clients that reply with the weights they got (no training)."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from mlupdate.federated.config import RAY_OBJECT_STORE_BYTES
    from mlupdate.federated.local import load_spec
    from mlupdate.federated.weights import updatable_arrays

    client, server = ClientApp(), ServerApp()
    times: list[float] = []

    @client.train()
    def train(msg: Message, context: Context) -> Message:
        metrics = MetricRecord({"num-examples": 1})
        return Message(RecordDict({"arrays": msg.content["arrays"], "metrics": metrics}), reply_to=msg)

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        from flwr.app import Array

        initial = ArrayRecord({k: Array(v) for k, v in updatable_arrays(load_spec(model_path)).items()})
        start = time.perf_counter()

        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            times.append(round(time.perf_counter() - start, 3))
            return MetricRecord({})

        FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1, min_evaluate_nodes=0,
               min_available_nodes=users).start(grid=grid, initial_arrays=initial, num_rounds=rounds,
                                                train_config=ConfigRecord(), evaluate_config=ConfigRecord(),
                                                evaluate_fn=evaluate)

    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    run_simulation(server_app=server, client_app=client, num_supernodes=users,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": 2, "include_dashboard": False,
                                                 "object_store_memory": RAY_OBJECT_STORE_BYTES}})
    print(json.dumps({"times": times}))


def federate(model: Path, data: Path, users: int, rounds: int, partition: str, epochs: int,
             work: Path) -> dict[str, Any]:
    tag = f"federate-{partition}"
    out, hist = work / f"{tag}.mlmodel", work / f"{tag}.history.json"
    cmd = CLI + ["federate", str(model), str(data), "--users", str(users), "--rounds", str(rounds), "--partition",
                 partition, "--epochs", str(epochs), "--cpus", "2", "--out", str(out), "--history", str(hist)]
    progress(f"federate --partition {partition}, {users} users, {rounds} rounds")
    r = run_measured(cmd, log=work / f"{tag}.log")
    r["history"] = json.loads(hist.read_text())["rounds"] if hist.exists() else []
    r["partition"] = partition
    return r


# ---------------------------------------------------------------------------------------------------- report


START = time.perf_counter()


def progress(msg: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f} s] {msg}", file=sys.stderr, flush=True)


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def mb(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f}"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def round_times(history: list[dict[str, Any]]) -> list[float]:
    """Seconds of each round 1..R (differences of the cumulative ``time``)."""
    t = [e["time"] for e in history]
    return [b - a for a, b in zip(t, t[1:], strict=False)]


def print_fleet(rows: list[dict[str, Any]], users: int) -> None:
    base = {r["threads"]: r["wall"] for r in rows if r["workers"] == 0}
    print("\n## 1. Fleet personalisation throughput (`mlupdate personalize-fleet`)\n")
    print(f"{users} users, each 14 photos trained (2 confused-breed + 5 others per label) and 6 held out; "
          "wall time = the whole CLI process (Python start, imports, Ray start).\n")
    print("| mode | processes x threads | wall s | inside fleet s | sum of user s | users/min | x loop (1 thread) "
          "| x loop (2 threads) | better / worse / same / failed | mean accuracy before -> after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["summary"]
        n = s.get("users", 0) - s.get("failed", 0)
        procs = "1" if r["workers"] == 0 else f"{r['workers']} workers"
        print(f"| {r['name']} | {procs} x {r['threads']} | {r['wall']:.1f} | "
              f"{r['inside'] if r['inside'] is not None else float('nan'):.1f} | {r['task_seconds']:.1f} | "
              f"{n / r['wall'] * 60:.1f} | {base.get(1, float('nan')) / r['wall']:.2f} | "
              f"{base.get(2, float('nan')) / r['wall']:.2f} | {s.get('better')} / {s.get('worse')} / "
              f"{s.get('unchanged')} / {s.get('failed')} | {pct(s.get('mean-before'))} -> {pct(s.get('mean-after'))} |")
    same = {tuple((u["user"], u.get("accuracy-after")) for u in r["users"]) for r in rows}
    print(f"\nPer-user accuracy after the update identical in every mode: {'yes' if len(same) == 1 else 'NO'}. "
          "Per user, held-out accuracy before -> after (train loss), and the task's seconds:\n")
    print("| user | " + " | ".join(r["name"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for i, u in enumerate(rows[0]["users"]):
        cells = []
        for r in rows:
            v = r["users"][i] if i < len(r["users"]) else {"error": "missing"}
            cells.append("failed" if "error" in v else f"{pct(v['accuracy-before'])} -> {pct(v['accuracy-after'])} "
                         f"({v['train-loss']:.3f}), {v['seconds']:.1f} s")
        print(f"| {u['user']} | " + " | ".join(cells) + " |")


def print_rounds(fed: dict[str, Any], first_rounds: int, users: int) -> None:
    times = round_times(fed["history"])
    print(f"\n## 2. Round cost with the cached frozen features (`federate --partition {fed['partition']}`, "
          f"{users} users)\n")
    print("| round | seconds | held-out accuracy | users |")
    print("|---|---|---|---|")
    h = fed["history"]
    print(f"| 0 (original model, server evaluation) | {h[0]['time']:.1f} | {pct(h[0]['accuracy'])} | - |")
    for e, t in zip(h[1:], times, strict=True):
        print(f"| {e['round']} | {t:.1f} | {pct(e['accuracy'])} | {e['clients']} ({e['failures']} failed) |")
    if len(times) < 2:
        return
    later5 = times[1:first_rounds]
    later = times[1:]
    print(f"\nFirst round {times[0]:.1f} s; rounds 2-{min(first_rounds, len(times))}: median "
          f"{statistics.median(later5):.1f} s (min {min(later5):.1f}, max {max(later5):.1f}); first / later = "
          f"**{times[0] / statistics.median(later5):.1f}x**. Rounds 2-{len(times)}: median "
          f"{statistics.median(later):.1f} s ({times[0] / statistics.median(later):.1f}x). Whole CLI run "
          f"{fed['wall']:.1f} s, of which {fed['wall'] - h[-1]['time']:.1f} s outside the server's rounds "
          "(Python start, Ray and Flower start-up and shut-down).")


def print_floor(fed: dict[str, Any], empty: dict[str, Any], first_rounds: int, users: int) -> None:
    """A later round against its floor's Flower part (empty rounds on the same engine and settings)."""
    later = round_times(fed["history"][:first_rounds + 1])[1:]
    t = empty["times"]
    floor = [b - a for a, b in zip(t[1:], t[2:], strict=False)]
    print(f"\n## A later round against its floor ({users} users)\n")
    print("| | median later round (s) |\n|---|---:|")
    if later:
        print(f"| mlupdate federate (rounds 2..{first_rounds}) | {statistics.median(later):.2f} |")
    print(f"| empty Flower round (clients echo the weights) | {statistics.median(floor):.3f} |" if floor else "")
    if later and floor:
        print(f"\nRatio to the empty round: {statistics.median(later) / statistics.median(floor):.1f}x "
              "(the floor adds the head steps on cached features; not yet measured here).")


def print_target(cen: dict[str, Any], feds: list[dict[str, Any]], users: int) -> None:
    target = cen["after"]
    print(f"\n## 3. Rounds to reach the clean-label accuracy (within 1 point), {users} users\n")
    print(f"Clean-label accuracy: one UpdateTask on all {cen['train']} training photos "
          f"({cen['update_seconds']:.1f} s), "
          f"then `predict_batch` on the {cen['test']} test photos: **{pct(target)}** (original model "
          f"{pct(cen['before'])}). Target: >= {pct(target - CLOSE)}.\n")
    rounds = max(len(f["history"]) for f in feds)
    print("| partition | " + " | ".join(f"r{r}" for r in range(rounds)) + " | reaches the target at |")
    print("|---|" + "---|" * rounds + "---|")
    for f in feds:
        h = f["history"]
        accs = [pct(e["accuracy"]) for e in h] + [""] * (rounds - len(h))
        hit = next((e["round"] for e in h[1:] if e["accuracy"] is not None and e["accuracy"] >= target - CLOSE), None)
        reach = f"round {hit}" if hit is not None else f"not within {len(h) - 1} rounds"
        print(f"| {f['partition']} | " + " | ".join(accs) + f" | {reach} |")
    print("\nr0 is the original model evaluated by the server (its evaluator: argmax on the cached features); "
          f"compare with the central run's `predict_batch` figure for the same model, {pct(cen['before'])}.")


def print_memory(runs: list[tuple[str, dict[str, Any]]]) -> None:
    print("\n## 4. Peak memory (RSS, MiB; VmHWM sampled every 0.5 s)\n")
    print("| run | driver peak | Ray worker processes (ran tasks) | max per busy worker | median per busy worker "
          "| max per idle worker | whole process tree at its peak |")
    print("|---|---|---|---|---|---|---|")
    for name, r in runs:
        m = r["mem"]
        print(f"| {name} | {mb(m['driver'])} | {m['workers']} ({m['busy']}) | {mb(m['worker_max'])} | "
              f"{mb(m['worker_median'])} | {mb(m['idle_max'])} | {mb(m['tree_total'])} |")
    names = sorted({n for _, r in runs for n in r["mem"]["worker_names"]})
    print(f"\nRay worker titles seen: {', '.join(names) or 'none'}.")


def print_paper(fleet2: dict[str, Any], fed: dict[str, Any], users: int, total_users: int = 10_000) -> None:
    times = round_times(fed["history"])
    per_user_fleet = fleet2["wall"] / users * 2  # seconds of one worker per user, start-up included
    per_user_steady = fleet2["task_seconds"] / users  # one Ray task's own seconds
    per_user_round = statistics.median(times[1:]) / users * 2 if len(times) > 1 else float("nan")
    per_user_first = times[0] / users * 2
    print(f"\n## 5. On paper: {total_users:,} users on K nodes (2 cores, 2 workers each)\n")
    print("Assumptions: throughput scales linearly with workers (2 per node, as measured here), no network or "
          "scheduling cost between nodes, every user as in this run (14 photos, 10 epochs; federation: "
          f"{fed['history'][0]['held-out']} server test photos, users' shares as here), the server's aggregation "
          "and evaluation not growing with users. Per-user worker-seconds, from the 2-worker runs: fleet "
          f"{per_user_fleet:.2f} s (wall x 2 workers / {users} users, Ray start included), steady state "
          f"{per_user_steady:.2f} s (a Ray task's own time); federated round {per_user_first:.2f} s (first round) "
          f"and {per_user_round:.2f} s (later rounds).\n")
    print("| K nodes | workers | fleet personalisation (measured) | fleet (steady state) | federated first round "
          "| federated later round |")
    print("|---|---|---|---|---|---|")
    for k in (1, 10, 100):
        w = 2 * k
        print(f"| {k} | {w} | {hours(total_users * per_user_fleet / w)} | {hours(total_users * per_user_steady / w)} "
              f"| {hours(total_users * per_user_first / w)} | {hours(total_users * per_user_round / w)} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the round-cost figure (part 2)")
    ap.add_argument("--max-rounds", type=int, default=8, help="rounds of each partition (part 3)")
    ap.add_argument("--fed-train", type=int, default=120, help="training photos per label for the federation (0: all)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs of every update (the demo model allows only 10)")
    ap.add_argument("--skip-fleet", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, histories, models)")
    ap.add_argument("--child-central", nargs=3, metavar=("MODEL", "DATA", "EPOCHS"), help=argparse.SUPPRESS)
    ap.add_argument("--child-empty", nargs=3, metavar=("MODEL", "USERS", "ROUNDS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_empty:
        child_empty(args.child_empty[0], int(args.child_empty[1]), int(args.child_empty[2]))
        return 0
    if args.child_central:
        child_central(args.child_central[0], args.child_central[1], int(args.child_central[2]))
        return 0

    from mlupdate.demo import demo_model_path

    model = demo_model_path()
    work = Path(tempfile.mkdtemp(prefix="mlupdate-bench-fed-"))
    print("# Federated learning and fleet personalisation (bench/bench_federated.py)\n")
    print(f"Machine: {machine()}  ")
    print(f"Load average at start: {loadavg()}  ")
    rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT)
    import mlupdate

    print(f"mlupdate: {Path(mlupdate.__file__).parent} (code {rev.stdout.strip() or 'n/a'} of {ROOT})  ")
    print(f"Model: {model.name}; epochs {args.epochs}; work folder {work}")
    try:
        users_dir = fleet_users(work / "users", args.users)
        data = federation_data(work / "pets", args.fed_train)
        rows = [] if args.skip_fleet else fleet(model, users_dir, work, args.epochs)
        cen = central(model, data, args.epochs, work)
        feds = [federate(model, data, args.users, max(args.max_rounds, args.rounds), p, args.epochs, work)
                for p in ("iid", "by-label")]
        empty = empty_rounds(model, args.users, args.rounds, work)
        progress("done")
        if rows:
            print_fleet(rows, args.users)
        if len(feds[0]["history"]) > 1:
            print_rounds(feds[0], args.rounds, args.users)
        if len(feds[0]["history"]) > 2:
            print_floor(feds[0], empty, args.rounds, args.users)
        print_target(cen, feds, args.users)
        print_memory([(r["name"], r) for r in rows if r["workers"]]
                     + [(f"federate {f['partition']}", f) for f in feds] + [("empty rounds (floor)", empty)]
                     + [("loop, 2 threads (no Ray)", r) for r in rows if r["workers"] == 0 and r["threads"] == 2])
        if rows and not rows[-1]["summary"].get("failed") and len(feds[0]["history"]) > 1:
            print_paper(rows[-1], feds[0], args.users)
    finally:
        if args.keep:
            print(f"\nKept {work}.")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nLoad average at end: {loadavg()}  ")
    print(f"Total time: {time.perf_counter() - START:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
