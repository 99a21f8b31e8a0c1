"""The fuzz worker: mutate seeds and run load, predict, lint, write and a one-epoch update on each.

Run in its own process (``python -m tests.fuzz.worker``) under an address-space limit and a
per-case alarm. Prints one JSON line per case that raised something other than an
``mlupdate.Error`` (or hung, or reached the update's "failed unexpectedly" catch-all), then a
summary line.
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
#: How UpdateTask reports a raw exception it did not expect: a failure to the fuzzer, like the raw exception.
UNEXPECTED = "The update failed unexpectedly"


class Hang(Exception):
    """A case ran past its alarm."""


def _alarm(signum: int, frame: Any) -> None:
    raise Hang(f"ran more than {CASE_SECONDS} s")


def run_case(data: bytes, seed_spec: Any, example: dict[str, Any], training: list[dict[str, Any]],
             folder: Path, executor: str) -> None:
    """Everything a user could do with the (mutated) file; only mlupdate.Error may escape.

    Once the file loads, every step runs even when an earlier one refused (a refused prediction does
    not hide a raw exception in the update), and the training data is made to fit what the model
    declares, so that the update reaches the model's own inconsistencies.
    """
    import mlupdate

    path = folder / "case.mlmodel"
    path.write_bytes(data)
    problems = mlupdate.lint(path)
    model = mlupdate.load(path, executor=executor)
    steps = [lambda: model.predict(example), lambda: model.predict_batch([example, example]),
             lambda: model.write(folder / "out.mlmodel")]
    if training and model.description.is_updatable and not any(p.severity == "error" for p in problems):
        rows = conform(training, model.description.training_inputs)
        steps.append(lambda: mlupdate.UpdateTask(model, rows, parameters={"epochs": 1} if "epochs" in
                                                 model.parameter_descriptions else None).run())
    refused: mlupdate.Error | None = None
    for step in steps:
        try:
            step()
        except mlupdate.Error as exc:
            if _escaped(exc):
                raise
            refused = refused or exc
    if refused is not None:
        raise refused


def conform(rows: list[dict[str, Any]], declared: dict[str, Any]) -> list[dict[str, Any]]:
    """The training rows with each array or dictionary value replaced where it does not fit its declaration."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = []
    for row in rows:
        row = dict(row)
        for name, fd in declared.items():
            value = row.get(name)
            if fd.type == "multiArray" and fd.shape and np.size(value) != int(np.prod(fd.shape)) and \
                    not isinstance(value, str):
                row[name] = rng.standard_normal(fd.shape).astype(np.float32)
            elif fd.type == "dictionary" and not isinstance(value, dict):
                row[name] = {("a" if fd.dtype == "str" else 0): 1.0}
        out.append(row)
    return out


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
    trainable = [s for s in all_seeds if s.training]
    deadline = time.monotonic() + args.seconds
    cases = failures = clean = 0
    refused: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        while time.monotonic() < deadline:
            pool = trainable if rng.random() < 0.3 else all_seeds  # the update path gets its share
            seed = pool[rng.randrange(len(pool))]
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
                if not _escaped(exc):
                    refused[type(exc).__name__] = refused.get(type(exc).__name__, 0) + 1
                    continue
                failures += 1
                _report(seed.name, what, executor, exc)
            except (Exception, Hang) as exc:  # noqa: BLE001 - this is what the fuzzer looks for
                failures += 1
                _report(seed.name, what, executor, exc)
            finally:
                signal.alarm(0)
    print(json.dumps({"summary": True, "cases": cases, "failures": failures, "ran_clean": clean,
                      "refused": refused}), flush=True)
    return 0


def _escaped(exc: BaseException) -> bool:
    """An mlupdate.Error that only wraps a raw exception the update did not expect (the user learns nothing)."""
    return str(exc).startswith(UNEXPECTED) and exc.__cause__ is not None


def _report(seed: str, what: list[str], executor: str, exc: BaseException) -> None:
    shown = exc.__cause__ if isinstance(exc.__cause__, BaseException) and _escaped(exc) else exc
    tb = traceback.extract_tb(shown.__traceback__)
    print(json.dumps({"seed": seed, "mutations": what, "executor": executor,
                      "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                      "where": [f"{f.filename.split('/src/')[-1]}:{f.lineno}" for f in tb[-3:]]}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
