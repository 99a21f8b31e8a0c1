"""The fuzz worker: mutate seeds and run load, predict, lint, write and a one-epoch update on each.

Run in its own process (``python -m tests.fuzz.worker``) under an address-space limit and a
per-case alarm. Prints one JSON line per case that raised something other than an
``mlupdate.Error`` (or hung), then a summary line.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

CASE_SECONDS = 30


class Hang(Exception):
    """A case ran past its alarm."""


def _alarm(signum: int, frame: Any) -> None:
    raise Hang(f"ran more than {CASE_SECONDS} s")


def run_case(data: bytes, seed_spec: Any, example: dict[str, Any], training: list[dict[str, Any]],
             folder: Path, executor: str) -> None:
    """Everything a user could do with the (mutated) file; only mlupdate.Error may escape."""
    import mlupdate

    path = folder / "case.mlmodel"
    path.write_bytes(data)
    problems = mlupdate.lint(path)
    model = mlupdate.load(path, executor=executor)
    model.predict(example)
    model.predict_batch([example, example])
    model.write(folder / "out.mlmodel")
    if training and model.description.is_updatable and not any(p.severity == "error" for p in problems):
        mlupdate.UpdateTask(model, training, parameters={"epochs": 1} if "epochs" in
                            model.parameter_descriptions else None).run()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-gb", type=float, default=6.0)
    args = parser.parse_args()
    limit = int(args.memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGALRM, _alarm)
    warnings.simplefilter("ignore")
    import mlupdate
    from tests.fuzz.mutate import damage, mutate, seeds

    rng = random.Random(args.seed)
    all_seeds = seeds()
    deadline = time.monotonic() + args.seconds
    cases = failures = clean = 0
    refused: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        while time.monotonic() < deadline:
            seed = all_seeds[rng.randrange(len(all_seeds))]
            spec = copy.deepcopy(seed.spec)
            what = [mutate(spec, rng) for _ in range(rng.choice((1, 1, 2, 3)))]
            data = spec.SerializeToString()
            if rng.random() < 0.05:
                data, how = damage(data, rng)
                what.append(how)
            executor = "onnxruntime" if rng.random() < 0.2 else "torch"
            cases += 1
            signal.alarm(CASE_SECONDS)
            try:
                run_case(data, spec, seed.example, seed.training, folder, executor)
                clean += 1
            except mlupdate.Error as exc:
                refused[type(exc).__name__] = refused.get(type(exc).__name__, 0) + 1
            except (Exception, Hang) as exc:  # noqa: BLE001 - this is what the fuzzer looks for
                failures += 1
                tb = traceback.extract_tb(exc.__traceback__)
                print(json.dumps({"seed": seed.name, "mutations": what, "executor": executor,
                                  "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                                  "where": [f"{f.filename.split('/src/')[-1]}:{f.lineno}" for f in tb[-3:]]}),
                      flush=True)
            finally:
                signal.alarm(0)
    print(json.dumps({"summary": True, "cases": cases, "failures": failures, "ran_clean": clean,
                      "refused": refused}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
