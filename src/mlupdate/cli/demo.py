"""``mlupdate demo``: the cat/dog app with the demo model and a gallery of pet photos."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from mlupdate.cli.serve import add_arguments, default_data_dir, serve

LOOKS = {"sphynx": "hairless", "great_pyrenees": "big, white and fluffy"}  # how to recognise the confused breeds


def default_samples() -> Path:
    """``$MLUPDATE_PETS``, the pet photos beside a checkout (``../shared/data/pets``), else the package's own.

    The package ships twelve credited photos (``mlupdate/demo/samples``, CC BY-SA 4.0): breeds the demo
    model gets wrong and breeds it gets right.
    """
    from mlupdate.demo import SAMPLES_DIR

    env = os.environ.get("MLUPDATE_PETS")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[3]
    candidates += [repo.parent / "shared" / "data" / "pets", Path.cwd().parent / "shared" / "data" / "pets"]
    return next((c for c in candidates if c.is_dir()), SAMPLES_DIR)


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("demo", help="try the cat/dog app with the built-in demo model",
                       description="Serve the cat/dog retraining app with the demo model: a classifier deliberately "
                                   "trained to call one cat breed Dog and one dog breed Cat. Correct it, press Train, "
                                   "and watch it learn. The gallery is the pet photos beside a checkout "
                                   "(../shared/data/pets or $MLUPDATE_PETS) when present, else the twelve sample "
                                   "photos in the package.")
    p.add_argument("--samples", type=Path, default=None,
                   help="a folder of photos for the gallery (default: ../shared/data/pets if present, else the "
                        "package's samples)")
    p.add_argument("--layout", choices=("mlmodel", "mlpackage"), default="mlmodel",
                   help="mlmodel: one updatable neural network (default); mlpackage: Apple's recommended updatable "
                        "layout, the backbone as an ML Program extractor and the dense layers as an updatable "
                        "network, in one .mlpackage")
    add_arguments(p)
    p.set_defaults(func=run)


def mistakes() -> str:
    """Which photos the demo model gets wrong, in words."""
    from mlupdate.demo import demo_info

    info = demo_info()

    def breed(name: str) -> str:
        look = LOOKS.get(name.lower())
        return name.replace("_", " ").title() + (f" ({look})" if look else "")

    return (f"This demo model is wrong on purpose about two breeds: it calls {breed(info['cat_as_dog'])} cats "
            f"dogs and {breed(info['dog_as_cat'])} dogs cats; other cats and dogs it mostly gets right. Show it "
            "some of those, correct it, press Train.")


def run(args: argparse.Namespace) -> int:
    """Serve the demo."""
    from mlupdate.cli.outputs import check_folder
    from mlupdate.extras import require

    if args.data_dir:
        check_folder(args.data_dir, "--data-dir")
    require("efficientnet_lite_pytorch", "demo", "mlupdate demo")
    samples = args.samples or default_samples()
    intro = mistakes()
    print(intro)
    data_dir = args.data_dir or default_data_dir(None)
    if args.layout == "mlpackage" and args.data_dir is None:  # its personalised models are packages
        data_dir = data_dir.with_name("demo-mlpackage")
    return serve(None, data_dir, samples, args.host, args.port, args.max_upload_mb, allow_hosts=args.allow_host,
                 intro=intro, demo_layout=args.layout)
