"""Federated learning and fleet personalisation of updatable Core ML models, on Flower and Ray.

Only the weights of the layers marked updatable travel: an ``ArrayRecord`` keyed ``<layer>.weights`` and
``<layer>.bias`` (float32, in spec order). Every node runs an :class:`mlupdate.UpdateTask` on its own
examples with the model's update parameters; the frozen part's features of a node's examples are computed
once per process and reused every round.

    mlupdate federate CatDog.mlmodel pets/ --users 10 --rounds 5 --out Global.mlmodel
    mlupdate personalize-fleet CatDog.mlmodel users/ --out personal/ --workers 2

The Flower apps live in :mod:`mlupdate.federated.client_app` and :mod:`mlupdate.federated.server_app`
(``flwr run examples/federated``); they and :mod:`mlupdate.federated.fleet` need the ``federated`` extra.
"""

from __future__ import annotations

from mlupdate.errors import UpdateError
from mlupdate.extras import install_hint


def require_flower(what: str) -> None:
    """Raise ``UpdateError`` telling how to install Flower and Ray when they are missing.

    Args:
        what: The feature that needs them, for the message (``mlupdate federate``).
    """
    import importlib.util

    missing = [name for name in ("flwr", "ray") if importlib.util.find_spec(name) is None]
    if missing:
        raise UpdateError(f"{what} needs Flower and Ray ({', '.join(missing)} not installed): "
                          f"{install_hint('federated')}.")
