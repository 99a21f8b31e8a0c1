"""``mlupdate serve [MODEL]``: the retraining web app for an updatable image classifier (default: the demo model)."""

from __future__ import annotations

import argparse
import errno
import hashlib
import logging
import socket
import sys
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``serve`` and ``demo`` share."""
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the personalised model and the pending photos are kept (default: a folder per "
                        "model under $MLUPDATE_DATA_DIR or ~/.local/share/mlupdate/app)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=port_number, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=positive_number, default=10,
                   help="largest accepted upload in MB (default 10)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests for this host name (repeatable; '*' for any); the app answers only "
                        "127.0.0.1, localhost and the --host address otherwise")


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: use 0 to 65535, e.g. 8000")
    return value


def positive_number(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number: use e.g. 10")
    return value


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("serve", help="serve the cat/dog retraining web app",
                       description="Serve a web page that classifies photos with MODEL, collects corrected labels "
                                   "and retrains the model on this machine. Without MODEL the built-in demo model is "
                                   "served.")
    p.add_argument("model", nargs="?", type=Path,
                   help="an updatable image classifier .mlmodel: one image input and a list of class labels "
                        "(default: the demo)")
    p.add_argument("--samples", type=Path, default=None, help="a folder of photos to offer as a gallery")
    add_arguments(p)
    p.set_defaults(func=run)


def default_data_dir(model: Path | None) -> Path:
    """``<user data dir>/app/<model name>-<hash of its path>``, or ``.../app/demo`` for the demo model."""
    from mlupdate.demo import user_data_dir

    base = user_data_dir() / "app"
    if model is None:
        return base / "demo"
    digest = hashlib.sha256(str(model.resolve()).encode()).hexdigest()[:8]
    return base / f"{model.stem}-{digest}"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or an error that suggests ``--port`` when the port is taken.

    Raises:
        mlupdate.Error: If the port is in use or the address cannot be used.
    """
    import mlupdate

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise mlupdate.Error(f"Port {port} on {host} is already in use (another mlupdate app?): stop that "
                                 f"program, or choose another port, e.g. --port {port + 1}.") from None
        raise mlupdate.Error(f"Cannot listen on {host}:{port}: {exc.strerror or exc}. Check --host and --port.") \
            from None
    return sock


def log_actions() -> None:
    """Print the app's log (one line per action) to stderr, with the time."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s  %(message)s", datefmt="%H:%M:%S"))
    log = logging.getLogger("mlupdate.web")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def serve(model: Path | None, data_dir: Path, samples: Path | None, host: str, port: int,
          max_upload_mb: float = 10, title: str = "Cat or Dog?", allow_hosts: list[str] | None = None,
          intro: str = "", demo_layout: str = "mlmodel") -> int:
    """Build the app and run it under uvicorn until interrupted.

    ``model`` None serves the demo model, in ``demo_layout`` (``mlmodel`` or ``mlpackage``).
    """
    import mlupdate
    from mlupdate.cli.interrupt import STOP_S
    from mlupdate.extras import require

    require("fastapi", "app", "The app")
    uvicorn = require("uvicorn", "app", "The app")
    from mlupdate.web import create_app

    if samples is not None and not samples.is_dir():
        raise mlupdate.Error(f"--samples {samples} is not a folder of photos; check the path.")
    sock = bind(host, port)  # before the (slow) model loading: a taken port is reported at once
    try:
        if model is None:
            from mlupdate.demo import demo_model_path

            model = demo_model_path(progress=True, layout=demo_layout)
        hosts = [*(allow_hosts or []), *([] if host in ("0.0.0.0", "::") else [host])]
        if host in ("0.0.0.0", "::"):
            hosts += [socket.gethostname(), socket.getfqdn()]
        app = create_app(model, data_dir, samples, max_upload_bytes=int(max_upload_mb * 1024 * 1024), title=title,
                         allowed_hosts=hosts, intro=intro)
        shown = f"[{host}]" if ":" in host else host
        print(f"Serving {model} at http://{shown}:{port}/  (personal data in {data_dir}; Ctrl+C to stop)", flush=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"Note: listening on {host}, so other machines on the network can reach the app (as "
                  f"{', '.join(hosts[-2:] if host in ('0.0.0.0', '::') else [host])}; add others with "
                  "--allow-host).", file=sys.stderr)
        log_actions()
        service = app.state.service

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                service.cancel_training()  # ends a Train's event stream, so shutting down does not wait for it
                super().handle_exit(sig, frame)

        try:  # uvicorn raises the signal that stopped it again once it has shut down
            Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)).run(sockets=[sock])
        except BaseException:
            service.cancel_training()  # the command's interrupt handling waits for it
            raise
        service.cancel_training(STOP_S)
    finally:
        sock.close()
    return 0


def run(args: argparse.Namespace) -> int:
    """Serve the app."""
    from mlupdate.cli.outputs import check_folder

    model = args.model
    if model is not None and not model.is_file():
        import mlupdate
        from mlupdate.spec.package import is_package

        if not is_package(model):
            raise mlupdate.ModelFileError(f"No model file at {model}: check the path (or leave it out for the "
                                          "demo).")
    title = "Cat or Dog?" if model is None else model.stem
    data_dir = check_folder(args.data_dir, "--data-dir") if args.data_dir else default_data_dir(model)
    return serve(model, data_dir, args.samples, args.host, args.port, args.max_upload_mb, title, args.allow_host)
