"""Fleet personalisation: one ``UpdateTask`` per user folder, as Ray tasks, one personal model per user.

A user folder holds ``train/`` and ``test/`` class folders, or class folders alone (then 25% of every
label is held out, seeded). Each user's personal model is ``<out>/<user>.mlmodel`` (atomic); its
accuracy on the user's held-out photos is measured before (the fleet model) and after. A user whose
folder is broken gets an ``error`` entry; the others go on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlupdate.errors import Error, TrainingDataError
from mlupdate.federated.config import RAY_OBJECT_STORE_BYTES
from mlupdate.federated.data import examples, hold_out, io_names, labelled, split_dirs
from mlupdate.federated.local import evaluate_local, forget, load_spec, train_local
from mlupdate.spec.io import write_spec

Result = dict[str, Any]


def personalize_user(model: str, user_dir: str, out: str, parameters: Mapping[str, Any] | None = None,
                     seed: int = 0) -> Result:
    """Personalise ``model`` on one user's photos; never raises for the user's own data.

    Returns:
        ``user``, ``examples``, ``held-out``, ``accuracy-before``, ``accuracy-after``, ``train-loss``,
        ``seconds`` and ``out``; or ``user``, ``error`` (and ``seconds``) when the folder or update failed.
    """
    start = time.perf_counter()
    user = Path(user_dir).name
    try:
        spec = load_spec(model)
        image, label, labels = io_names(spec)
        train_dir, test_dir = split_dirs(user_dir)
        pairs = labelled(train_dir, labels)
        train, test = (pairs, labelled(test_dir, labels)) if test_dir is not None else hold_out(pairs, 0.25, seed)
        if not train or not test:
            raise TrainingDataError(f"{user_dir}: needs photos both to train on and to hold out ({len(train)} and "
                                    f"{len(test)}); add photos or give it train/ and test/ folders.")
        held = examples(test, image, label)
        before = evaluate_local(spec, held, f"user:{user_dir}/test")
        updated, metrics = train_local(spec, examples(train, image, label), f"user:{user_dir}", parameters)
        after = evaluate_local(updated, held, f"user:{user_dir}/test")
        path = write_spec(updated, Path(out) / f"{user}.mlmodel")
    except (Error, OSError) as exc:  # the user's folder or photos: reported, the fleet goes on
        return {"user": user, "error": str(exc), "seconds": time.perf_counter() - start}
    finally:  # each user is seen once: its cached features would only pile up in the worker
        forget(f"user:{user_dir}")
    return {"user": user, "examples": len(train), "held-out": len(test), "accuracy-before": before.get("accuracy"),
            "accuracy-after": after.get("accuracy"), "train-loss": metrics["train-loss"],
            "seconds": time.perf_counter() - start, "out": str(path)}


def user_dirs(users_dir: str | os.PathLike[str]) -> list[Path]:
    """The user folders of USERS_DIR (sorted; hidden ones skipped).

    Raises:
        TrainingDataError: USERS_DIR is no folder or holds no user folder.
    """
    root = Path(users_dir)
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")) if root.is_dir() else []
    if not dirs:
        raise TrainingDataError(f"No user folders in {root}: expected {root}/<user>/<label>/<photo> (or "
                                f"<user>/train/ and <user>/test/).")
    return dirs


def reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a Ray ``address`` (``host:port`` or ``ray://host:port``) that nothing answers on, before Ray retries it.

    ``auto`` (a cluster on this machine) is left to Ray, which says at once when there is none.

    Raises:
        mlupdate.Error: Naming the address and what to check.
    """
    hostport = address.split("://", 1)[-1]
    if address == "auto" or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as exc:
        raise Error(f"--address {address}: no Ray cluster answers there ({exc}). Start one (ray start --head) and "
                    "pass its address, or leave --address out to run a local Ray.") from None


def personalize_fleet(model: str | os.PathLike[str], users_dir: str | os.PathLike[str], out: str | os.PathLike[str],
                      *, workers: int = 2, address: str | None = None, parameters: Mapping[str, Any] | None = None,
                      on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Personalise ``model`` for every user folder of ``users_dir``.

    Args:
        model: The updatable ``.mlmodel`` (never modified).
        users_dir: One folder per user.
        out: Folder for the personal models (created).
        workers: Ray CPUs on a local Ray (one user per CPU at a time); 0 runs the users one after
            another in this process, without Ray.
        address: A running Ray cluster to use instead of a local one (``ray://host:10001`` or ``auto``).
        parameters: Overrides of the model's update parameters.
        on_result: Called with each user's result as it finishes.

    Returns:
        One result per user, in folder order (see :func:`personalize_user`).

    Raises:
        mlupdate.Error: No user folders, a model that cannot be updated, or Ray missing when needed.
    """
    from mlupdate.update.parameters import resolve
    from mlupdate.update.task import refuse_invalid

    if address is not None:
        reachable(address)
    spec = load_spec(model)
    refuse_invalid(spec)
    resolve(spec, None, parameters)  # a parameter the model does not allow fails here, not in every user
    _, _, labels = io_names(spec)
    dirs = user_dirs(users_dir)
    for d in dirs:  # the label rule's note, once, here: the users' own reads are quiet
        with contextlib.suppress(Error):
            labelled(split_dirs(d)[0], labels, announce=True)
    Path(out).mkdir(parents=True, exist_ok=True)
    args = [(os.fspath(model), str(d), os.fspath(out), dict(parameters or {})) for d in dirs]
    if workers == 0 and address is None:
        results = []
        for a in args:
            results.append(personalize_user(*a))
            if on_result is not None:
                on_result(results[-1])
        return results
    from mlupdate.federated import require_flower

    require_flower("Fleet personalisation on Ray")
    import ray

    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # Ray's current behaviour, without its warning
        init: dict[str, Any] = {"address": address} if address else {
            "num_cpus": workers, "include_dashboard": False, "object_store_memory": RAY_OBJECT_STORE_BYTES}
        ray.init(log_to_driver=False, logging_level=logging.WARNING, **init)
    try:
        remote = ray.remote(num_cpus=1)(personalize_user)
        pending = {remote.remote(*a): i for i, a in enumerate(args)}
        results: list[Result | None] = [None] * len(args)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(done[0])
            results[i] = _get(ray, done[0], dirs[i])
            if on_result is not None:
                on_result(results[i])
        return [r for r in results if r is not None]
    finally:
        if started:
            ray.shutdown()


def _get(ray: Any, ref: Any, user_dir: Path) -> Result:
    """A task's result; a worker that died (out of memory, a crash) is that user's error, not the fleet's."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        return {"user": user_dir.name, "error": f"the Ray task failed: {type(exc).__name__}: {exc}", "seconds": 0.0}


def summary(results: list[Result]) -> dict[str, Any]:
    """Users better, worse, unchanged and failed, and the mean accuracy change of those that finished."""
    ok = [r for r in results if "error" not in r and r["accuracy-after"] is not None]
    deltas = [r["accuracy-after"] - r["accuracy-before"] for r in ok]
    return {"users": len(results), "failed": len(results) - len(ok), "better": sum(d > 0 for d in deltas),
            "worse": sum(d < 0 for d in deltas), "unchanged": sum(d == 0 for d in deltas),
            "mean-change": sum(deltas) / len(deltas) if deltas else None,
            "mean-before": sum(r["accuracy-before"] for r in ok) / len(ok) if ok else None,
            "mean-after": sum(r["accuracy-after"] for r in ok) / len(ok) if ok else None}
