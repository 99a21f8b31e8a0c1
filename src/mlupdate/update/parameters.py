"""Update parameters of a task: the model's defaults, overridden by the configuration and the caller.

Keys are the snake_case forms of Core ML's ``MLParameterKey`` (``learning_rate``, ``momentum``,
``mini_batch_size``, ``beta1``, ``beta2``, ``eps``, ``epochs``, ``shuffle``, ``seed``,
``number_of_neighbors``); the camelCase spellings (``learningRate``) are accepted too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlupdate.errors import ParameterError
from mlupdate.kinds import update_parameters
from mlupdate.runtime.execution import Execution, check_crop_and_scale
from mlupdate.spec.params import ParameterDescription, outside_domain, snake

#: Keys that may change while the task runs (``resume(parameters=...)`` inside a handler), as in Core ML.
ADJUSTABLE_IN_PROGRESS = ("learning_rate",)
CONFIGURATION_KEYS = ("parameters", "compute_units", "crop_and_scale")


def descriptions(spec: Any) -> dict[str, ParameterDescription]:
    """The parameters an update of ``spec`` accepts (``seed`` always, for neural networks)."""
    out = dict(update_parameters(spec))
    if "shuffle" in out and "seed" not in out:
        out["seed"] = ParameterDescription("seed", None, kind="int")
    return out


def check_overrides(descs: Mapping[str, ParameterDescription], overrides: Mapping[str, Any] | None,
                    where: str = "parameters") -> dict[str, Any]:
    """Validate overrides against the model's declared parameters.

    Raises:
        ParameterError: For an unknown key (the message lists the valid ones) or a value outside
            the model's range or set.
    """
    out: dict[str, Any] = {}
    if overrides is None:
        return out
    if not isinstance(overrides, Mapping):
        raise ParameterError(f"{where} must be a dict of parameter name to value, got {type(overrides).__name__}.")
    for key, value in overrides.items():
        name = snake(key)
        desc = descs.get(name)
        if desc is None:
            raise ParameterError(
                f"Unknown update parameter '{key}' in {where}. This model accepts: "
                f"{', '.join(sorted(descs)) or 'none'}."
            )
        if name == "seed":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParameterError(f"Parameter 'seed' must be an integer, got {value!r}.")
            out[name] = int(value)
            continue
        out[name] = desc.check(value)
    return out


def resolve(spec: Any, configuration: Mapping[str, Any] | None, parameters: Mapping[str, Any] | None,
            default_compute_units: str = "all",
            default_crop: str = "center_crop") -> tuple[dict[str, Any], Execution, str]:
    """The parameter values a task runs with, where its networks run and its crop-and-scale option.

    Precedence: the model's defaults, then ``configuration["parameters"]``, then ``parameters``.

    Raises:
        ParameterError: For unknown configuration keys, unknown parameters or values out of range.
        ImageError: For an unknown ``crop_and_scale``.
    """
    config = dict(configuration or {})
    unknown = [k for k in config if k not in CONFIGURATION_KEYS]
    if unknown:
        raise ParameterError(
            f"Unknown configuration key(s) {unknown}: a configuration may hold {', '.join(CONFIGURATION_KEYS)}."
        )
    descs = descriptions(spec)
    values = {k: d.default for k, d in descs.items()}
    values.update(check_overrides(descs, config.get("parameters"), "configuration['parameters']"))
    values.update(check_overrides(descs, parameters, "parameters"))
    for key in ("epochs", "mini_batch_size", "number_of_neighbors"):
        if key in values and values[key] is not None and int(values[key]) <= 0:
            raise ParameterError(
                f"Parameter '{key}' is {values[key]}; it must be a positive integer (Core ML's validator refuses "
                "the model otherwise). Set it in the model (mlupdate make-updatable) or pass parameters=..."
            )
    for key, value in values.items():
        what = outside_domain(key, value) if isinstance(value, float) else None
        if what is not None:
            raise ParameterError(
                f"Parameter '{key}' is {value}; it must be {what}. Set another default in the model (mlupdate "
                "make-updatable) or pass parameters=..."
            )
    execution = Execution(config.get("compute_units", default_compute_units))
    return values, execution, check_crop_and_scale(config.get("crop_and_scale", default_crop))


def in_progress(descs: Mapping[str, ParameterDescription], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``resume(parameters=...)`` values: only ``learning_rate`` may change mid-run.

    Raises:
        ParameterError: For another key, or a value outside the model's range.
    """
    fixed = [k for k in overrides if snake(k) not in ADJUSTABLE_IN_PROGRESS]
    if fixed:
        raise ParameterError(
            f"{fixed} cannot change while the update runs; only {', '.join(ADJUSTABLE_IN_PROGRESS)} can (as in "
            "Core ML). Pass the others to UpdateTask(parameters=...) instead."
        )
    return check_overrides(descs, overrides, "resume(parameters=...)")
