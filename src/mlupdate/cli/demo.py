"""``mlupdate demo``: the cat/dog app with the demo model and the pet photos as a gallery."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from mlupdate.cli.serve import add_arguments, default_data_dir, serve


def default_samples() -> Path | None:
    """The pet photos beside a checkout (``../shared/data/pets``), ``$MLUPDATE_PETS``, or None."""
    env = os.environ.get("MLUPDATE_PETS")
    candidates = [Path(env)] if env else []
    repo = Path(__file__).resolve().parents[3]
    candidates += [repo.parent / "shared" / "data" / "pets", Path.cwd().parent / "shared" / "data" / "pets"]
    return next((c for c in candidates if c.is_dir()), None)


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("demo", help="try the cat/dog app with the built-in demo model",
                       description="Serve the cat/dog retraining app with the demo model: a classifier deliberately "
                                   "trained to call one cat breed Dog and one dog breed Cat. Correct it, press Train, "
                                   "and watch it learn. The pet photos (../shared/data/pets) form the gallery when "
                                   "present.")
    p.add_argument("--samples", type=Path, default=None,
                   help="a folder of photos for the gallery (default: ../shared/data/pets if present)")
    p.add_argument("--layout", choices=("mlmodel", "mlpackage"), default="mlmodel",
                   help="mlmodel: one updatable neural network (default); mlpackage: Apple's recommended updatable "
                        "layout, the backbone as an ML Program extractor and the dense layers as an updatable "
                        "network, in one .mlpackage")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve the demo."""
    from mlupdate.demo import demo_info
    from mlupdate.extras import require

    require("efficientnet_lite_pytorch", "demo", "mlupdate demo")
    samples = args.samples or default_samples()
    info = demo_info()
    def breed(name: str) -> str:
        return name.replace("_", " ").title()

    print(f"The demo model thinks {breed(info['cat_as_dog'])} cats are dogs and {breed(info['dog_as_cat'])} dogs "
          "are cats. Show it some, correct it, press Train.")
    if samples is None:
        print("(No sample photos found; choose your own, or pass --samples DIR.)")
    data_dir = args.data_dir or default_data_dir(None)
    if args.layout == "mlpackage" and args.data_dir is None:  # its personalised models are packages
        data_dir = data_dir.with_name("demo-mlpackage")
    return serve(None, data_dir, samples, args.host, args.port, args.max_upload_mb,
                 allow_hosts=args.allow_host, demo_layout=args.layout)
