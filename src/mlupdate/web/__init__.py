"""The cat/dog retraining web app behind ``mlupdate serve`` and ``mlupdate demo``.

Example::

    from mlupdate.web import create_app

    app = create_app("CatDog.mlmodel", data_dir="personal-data")
    # uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from mlupdate.web.app import create_app

__all__ = ["create_app"]
