"""Every subcommand over a matrix of bad inputs: a one-line error naming the thing and the fix, never a traceback.

Issue 19, point 2. Each row is a command line, the thing its message must name (a path or an option) and a word
of the fix. Rows run in-process through ``mlupdate.cli.main`` (an exception other than argparse's ``SystemExit``
escaping it is the traceback a user would see); ``serve`` and ``demo``, which bind a port, run in subprocesses on
a free port with a timeout, and so do a few end-to-end rows of the console entry point.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlupdate.cli import main
from mlupdate.spec.io import write_spec
from tests.shared_data import ROOT
from tests.unit import _update_models as M

NO_FLOWER = pytest.mark.skipif(importlib.util.find_spec("flwr") is None, reason="federate needs the federated extra")
AS_ROOT = pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models built with coremltools' NeuralNetworkBuilder, and every kind of bad file and folder beside them."""
    w = tmp_path_factory.mktemp("bad")
    write_spec(M.dense_classifier(), w / "dense.mlmodel")  # array input [4], labels a/b/c
    write_spec(M.conv_classifier(image=True), w / "img.mlmodel")  # 6x6 grayscale image input, labels a/b/c
    rng = np.random.default_rng(0)
    (w / "adir.mlmodel").mkdir()
    (w / "rand.mlmodel").write_bytes(rng.bytes(300))
    (w / "empty.mlmodel").write_bytes(b"")
    (w / "bad.mlpackage").mkdir()
    (w / "bad.mlpackage" / "Manifest.json").write_text("{not json")
    Image.fromarray(rng.integers(0, 255, (6, 6), dtype=np.uint8), "L").save(w / "photo.png")
    (w / "locked.mlmodel").write_bytes((w / "dense.mlmodel").read_bytes())
    (w / "locked.mlmodel").chmod(0)
    (w / "nonutf8.csv").write_bytes(b"1,2,3,4,a\n1,2,3,4,\xff\xfe\n")
    (w / "cols.csv").write_text("1,2,3,4,a\n1,2,3,b\n")
    (w / "unknown.csv").write_text("1,2,3,4,zebra\n")
    (w / "rows.csv").write_text("1,2,3,4,a\n4,3,2,1,b\n")
    (w / "notes.csv").write_text("hello\n")
    (w / "empty.csv").write_text("")
    (w / "nophoto.csv").write_text("nothere.png,a\n")
    (w / "emptydata").mkdir()
    (w / "emptyclass" / "a").mkdir(parents=True)
    (w / "zebras" / "zebra").mkdir(parents=True)
    (w / "zebras" / "zebra" / "0.png").write_bytes((w / "photo.png").read_bytes())
    (w / "corrupt" / "a").mkdir(parents=True)
    (w / "corrupt" / "a" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for lab in ("a", "b"):
        (w / "good" / lab).mkdir(parents=True)
        for i in range(2):
            (w / "good" / lab / f"{i}.png").write_bytes((w / "photo.png").read_bytes())
    (w / "h5dir.h5").mkdir()
    (w / "rand.h5").write_bytes(rng.bytes(100))
    (w / "empty.h5").write_bytes(b"")
    (w / "afile").write_text("a file")
    return w


# A bad model path, for every command that reads one: (file, a word of the fix)
BAD_MODELS = {
    "missing": ("missing.mlmodel", "check the path"),
    "folder": ("adir.mlmodel", "source .mlmodel"),
    "random-bytes": ("rand.mlmodel", "re-export"),
    "empty": ("empty.mlmodel", "Re-export"),
    "broken-manifest": ("bad.mlpackage", "Save the model again"),
    "an-image": ("photo.png", "re-export"),
}
MODEL_COMMANDS = {
    "inspect": ["inspect", "{m}"],
    "predict": ["predict", "{m}", "--input", "input=[1, 2, 3, 4]"],
    "lint": ["lint", "{m}"],
    "compile": ["compile", "{m}"],
    "make-updatable": ["make-updatable", "{m}", "{w}/o.mlmodel", "--layers", "d2"],
    "update": ["update", "{m}", "{w}/good", "--out", "{w}/o.mlmodel"],
    "federate": ["federate", "{m}", "{w}/good", "--users", "2", "--rounds", "1", "--out", "{w}/g.mlmodel"],
    "personalize-fleet": ["personalize-fleet", "{m}", "{w}/emptydata", "--out", "{w}/fleet"],
}

# (command line, the thing the message names, a word of the fix)
ROWS = {
    # data folders and CSVs
    "update missing data": (["update", "{w}/dense.mlmodel", "{w}/nodata", "--out", "{w}/o.mlmodel"],
                            "nodata", "pass a folder"),
    "update non-UTF-8 CSV": (["update", "{w}/dense.mlmodel", "{w}/nonutf8.csv", "--out", "{w}/o.mlmodel"],
                             "nonutf8.csv", "UTF-8"),
    "update wrong column count": (["update", "{w}/dense.mlmodel", "{w}/cols.csv", "--out", "{w}/o.mlmodel"],
                                  "cols.csv:2", "same number of values"),
    "update unknown label": (["update", "{w}/dense.mlmodel", "{w}/unknown.csv", "--out", "{w}/o.mlmodel"],
                             "zebra", "Rename"),
    "update CSV of text": (["update", "{w}/dense.mlmodel", "{w}/notes.csv", "--out", "{w}/o.mlmodel"],
                           "notes.csv:1", "Fix the row"),
    "update empty CSV": (["update", "{w}/dense.mlmodel", "{w}/empty.csv", "--out", "{w}/o.mlmodel"],
                         "empty.csv", "expected"),
    "update binary data file": (["update", "{w}/dense.mlmodel", "{w}/rand.mlmodel", "--out", "{w}/o.mlmodel"],
                                "rand.mlmodel", "UTF-8"),
    "update empty folder": (["update", "{w}/dense.mlmodel", "{w}/emptydata", "--out", "{w}/o.mlmodel"],
                            "emptydata", "expected <label>/"),
    "update empty class folder": (["update", "{w}/dense.mlmodel", "{w}/emptyclass", "--out", "{w}/o.mlmodel"],
                                  "emptyclass", "expected <label>/"),
    "update unknown label folder": (["update", "{w}/img.mlmodel", "{w}/zebras", "--out", "{w}/o.mlmodel"],
                                    "zebra", "Rename"),
    "update corrupt photo": (["update", "{w}/img.mlmodel", "{w}/corrupt", "--out", "{w}/o.mlmodel"],
                             "x.png", "choose an image file"),
    "update CSV naming a missing photo": (["update", "{w}/img.mlmodel", "{w}/nophoto.csv", "--out", "{w}/o.mlmodel"],
                                          "nothere.png", "check the path"),
    "update rows for an image model": (["update", "{w}/img.mlmodel", "{w}/rows.csv", "--out", "{w}/o.mlmodel"],
                                       "'input'", "give image files"),
    "update array model, photo folder": (["update", "{w}/dense.mlmodel", "{w}/good", "--out", "{w}/o.mlmodel"],
                                         "good", ".npy"),
    # bad option values and outputs
    "update negative epochs": (["update", "{w}/dense.mlmodel", "{w}/rows.csv", "--out", "{w}/o.mlmodel",
                                "--epochs", "-1"], "epochs=-1", "Choose one of them"),
    "update zero batch": (["update", "{w}/dense.mlmodel", "{w}/rows.csv", "--out", "{w}/o.mlmodel",
                           "--batch-size", "0"], "mini_batch_size=0", "Choose one of them"),
    "update epochs not a number": (["update", "{w}/dense.mlmodel", "{w}/good", "--out", "{w}/o.mlmodel",
                                    "--epochs", "x"], "--epochs", "int"),
    "update learning rate nan": (["update", "{w}/dense.mlmodel", "{w}/rows.csv", "--out", "{w}/o.mlmodel",
                                  "--learning-rate", "nan"], "learning_rate=nan", "Choose a value inside"),
    "update --out in a missing folder": (["update", "{w}/dense.mlmodel", "{w}/good", "--out", "{w}/nofolder/o.mlmodel"],
                                         "nofolder", "Create it first"),
    "update --out is the model": (["update", "{w}/dense.mlmodel", "{w}/good", "--out", "{w}/dense.mlmodel"],
                                  "--out", "never overwrites"),
    "update --out is a folder": (["update", "{w}/dense.mlmodel", "{w}/good", "--out", "{w}/emptydata"],
                                 "emptydata", "give a file path"),
    "update --plot in a missing folder": (["update", "{w}/dense.mlmodel", "{w}/good", "--out", "{w}/o.mlmodel",
                                           "--plot", "{w}/nofolder/loss.png"], "--plot", "Create it first"),
    "predict --top 0": (["predict", "{w}/dense.mlmodel", "--input", "input=[1, 2, 3, 4]", "--top", "0"],
                        "--top", "at least 1"),
    "predict --top not a number": (["predict", "{w}/dense.mlmodel", "--input", "input=[1]", "--top", "three"],
                                   "--top", "int"),
    "predict --threads 0": (["predict", "{w}/dense.mlmodel", "--input", "input=[1, 2, 3, 4]", "--threads", "0"],
                            "threads=0", "positive integer"),
    "predict value not an array": (["predict", "{w}/dense.mlmodel", "--input", "input=abc"], "'input'",
                                   "give @file.npy"),
    "predict unknown input": (["predict", "{w}/dense.mlmodel", "--input", "nope=1"], "'nope'", "its inputs are"),
    "predict missing photo": (["predict", "{w}/img.mlmodel", "{w}/missing.png"], "missing.png", "check the path"),
    "predict a folder for a photo": (["predict", "{w}/img.mlmodel", "{w}/good"], "good", "give the image files"),
    "predict corrupt photo": (["predict", "{w}/img.mlmodel", "{w}/corrupt/a/x.png"], "x.png", "choose an image"),
    "predict a photo for an array model": (["predict", "{w}/dense.mlmodel", "{w}/photo.png"], "input",
                                           "--input NAME=VALUE"),
    "make-updatable OUT in a missing folder": (["make-updatable", "{w}/dense.mlmodel", "{w}/nofolder/o.mlmodel",
                                                "--layers", "d2"], "nofolder", "Create it first"),
    "make-updatable OUT is IN": (["make-updatable", "{w}/dense.mlmodel", "{w}/dense.mlmodel", "--layers", "d2"],
                                 "dense.mlmodel", "Choose another output path"),
    "make-updatable unknown layer": (["make-updatable", "{w}/dense.mlmodel", "{w}/o.mlmodel", "--layers", "nope"],
                                     "'nope'", "can be trained"),
    "make-updatable negative epochs": (["make-updatable", "{w}/dense.mlmodel", "{w}/o.mlmodel", "--layers", "d2",
                                        "--epochs", "-2"], "epochs", "positive integer"),
    "make-updatable --sgd not numbers": (["make-updatable", "{w}/dense.mlmodel", "{w}/o.mlmodel", "--layers", "d2",
                                          "--sgd", "lr=abc"], "--sgd", "key=value"),
    "make-updatable zero batch": (["make-updatable", "{w}/dense.mlmodel", "{w}/o.mlmodel", "--layers", "d2",
                                   "--sgd", "lr=0.1,batch=0"], "mini_batch_size", "positive integer"),
    "convert missing .h5": (["convert", "{w}/missing.h5", "{w}/o.mlmodel"], "missing.h5", "check the path"),
    "convert a folder": (["convert", "{w}/h5dir.h5", "{w}/o.mlmodel"], "h5dir.h5", "check the path"),
    "convert random bytes": (["convert", "{w}/rand.h5", "{w}/o.mlmodel"], "rand.h5", "model.save"),
    "convert empty file": (["convert", "{w}/empty.h5", "{w}/o.mlmodel"], "empty.h5", "model.save"),
    "convert wrong kind": (["convert", "{w}/dense.mlmodel", "{w}/o.mlmodel"], "dense.mlmodel", "Keras 2 .h5"),
    "convert OUT in a missing folder": (["convert", "{w}/rand.h5", "{w}/nofolder/o.mlmodel"], "nofolder",
                                        "Create it first"),
    "convert missing module": (["convert", "nosuchpkg.mod:factory", "{w}/o.mlmodel", "--input-shape", "1", "3"],
                               "nosuchpkg", "package.module:factory"),
    "cache unknown argument": (["cache", "--clear", "extra"], "extra", "unrecognized"),
    "personalize-fleet missing users": (["personalize-fleet", "{w}/img.mlmodel", "{w}/nousers", "--out", "{w}/fleet"],
                                        "nousers", "expected"),
    "personalize-fleet no users": (["personalize-fleet", "{w}/img.mlmodel", "{w}/emptydata", "--out", "{w}/fleet"],
                                   "emptydata", "expected"),
    "personalize-fleet --out is a file": (["personalize-fleet", "{w}/img.mlmodel", "{w}/good", "--out", "{w}/afile"],
                                          "afile", "give a folder path"),
    "personalize-fleet --address nobody answers": (["personalize-fleet", "{w}/img.mlmodel", "{w}/good", "--out",
                                                     "{w}/fleet", "--address", "127.0.0.1:1"], "127.0.0.1:1",
                                                    "ray start"),
    "personalize-fleet negative workers": (["personalize-fleet", "{w}/img.mlmodel", "{w}/good", "--out", "{w}/fleet",
                                            "--workers", "-2"], "--workers", "0 or more"),
    "personalize-fleet negative epochs": (["personalize-fleet", "{w}/img.mlmodel", "{w}/emptydata", "--out",
                                           "{w}/fleet", "--epochs", "-1"], "epochs=-1", "Choose one of them"),
    "personalize-fleet --json in a missing folder": (["personalize-fleet", "{w}/img.mlmodel", "{w}/good", "--out",
                                                      "{w}/fleet", "--json", "{w}/nofolder/r.json"], "--json",
                                                     "Create it first"),
}
FEDERATE = ["federate", "{w}/img.mlmodel", "{w}/good", "--users", "2", "--rounds", "1", "--out", "{w}/g.mlmodel"]
FEDERATE_ROWS = {
    "federate missing data": ([*FEDERATE[:2], "{w}/nodata", *FEDERATE[3:]], "nodata", "pass a folder"),
    "federate non-UTF-8 CSV": ([*FEDERATE[:2], "{w}/nonutf8.csv", *FEDERATE[3:]], "nonutf8.csv", "UTF-8"),
    "federate empty folder": ([*FEDERATE[:2], "{w}/emptydata", *FEDERATE[3:]], "emptydata", "expected"),
    "federate unknown label": ([*FEDERATE[:2], "{w}/zebras", *FEDERATE[3:]], "zebra", "Rename"),
    "federate array model": (["federate", "{w}/dense.mlmodel", *FEDERATE[2:]], "inputs ['input']", "image"),
    "federate zero users": ([*FEDERATE, "--users", "0"], "--users", "at least 1"),
    "federate negative rounds": ([*FEDERATE, "--rounds", "-1"], "--rounds", "at least 1"),
    "federate fraction 2": ([*FEDERATE, "--fraction", "2"], "fraction-train", "in (0, 1]"),
    "federate negative proximal mu": ([*FEDERATE, "--strategy", "fedprox", "--proximal-mu", "-1"], "--proximal-mu",
                                      "at least 0"),
    "federate negative epochs": ([*FEDERATE, "--epochs", "-1"], "epochs=-1", "Choose one of them"),
    "federate learning rate not a number": ([*FEDERATE, "--learning-rate", "abc"], "--learning-rate", "float"),
    "federate unknown partition": ([*FEDERATE, "--partition", "bogus"], "bogus", "dirichlet"),
    "federate --out in a missing folder": ([*FEDERATE, "--out", "{w}/nofolder/g.mlmodel"], "nofolder",
                                           "Create it first"),
    "federate --out is the model": ([*FEDERATE, "--out", "{w}/img.mlmodel"], "--out", "never overwrites"),
    "federate --history in a missing folder": ([*FEDERATE, "--history", "{w}/nofolder/h.json"], "--history",
                                               "Create it first"),
}


def run_in_process(argv: list[str], w: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the command; anything but an ``mlupdate.Error`` or argparse's exit escapes and fails the test."""
    try:
        code = main([a.format(w=w) for a in argv])
    except SystemExit as exc:  # argparse's refusal of a bad option value: usage and one error line
        code = exc.code
    return code, capsys.readouterr().err


def check_message(code: int, err: str, w: Path, thing: str, fix: str) -> None:
    """Refused (exit 2), one error line without a traceback, naming the thing and a word of the fix."""
    assert "Traceback" not in err, err
    assert code == 2, err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1, err
    line = errors[0].replace(str(w), "W")
    assert thing in line, f"the message does not name {thing!r}: {line}"
    assert fix in line, f"the message has no {fix!r}: {line}"


@pytest.mark.parametrize("kind", list(BAD_MODELS))
@pytest.mark.parametrize("command", [pytest.param(c, marks=NO_FLOWER) if c == "federate" else c
                                     for c in MODEL_COMMANDS])
def test_a_bad_model_path_is_refused_naming_it(ws, capsys, command, kind):
    name, fix = BAD_MODELS[kind]
    argv = [a.replace("{m}", f"{{w}}/{name}") for a in MODEL_COMMANDS[command]]
    code, err = run_in_process(argv, ws, capsys)
    check_message(code, err, ws, name, fix)


@AS_ROOT
@pytest.mark.parametrize("command", ["inspect", "predict", "update"])
def test_an_unreadable_model_is_refused_naming_it(ws, capsys, command):
    argv = [a.replace("{m}", "{w}/locked.mlmodel") for a in MODEL_COMMANDS[command]]
    check_message(*run_in_process(argv, ws, capsys), ws, "locked.mlmodel", "permission")


@pytest.mark.parametrize("row", [*ROWS, *(pytest.param(r, marks=NO_FLOWER) for r in FEDERATE_ROWS)])
def test_bad_data_and_option_values_are_refused_naming_them(ws, capsys, row):
    argv, thing, fix = {**ROWS, **FEDERATE_ROWS}[row]
    code, err = run_in_process(argv, ws, capsys)
    check_message(code, err, ws, thing, fix)
    assert not (ws / "o.mlmodel").exists() and not (ws / "g.mlmodel").exists()  # refused before any work


@pytest.mark.parametrize("argv", [["compile", "{w}/dense.mlmodel"], ["cache"], ["cache", "--clear"]])
def test_a_cache_folder_that_cannot_be_made_is_refused_before_compiling(ws, capsys, monkeypatch, argv):
    monkeypatch.setenv("MLUPDATE_CACHE_DIR", str(ws / "afile"))  # a file where the cache folder should be
    code, err = run_in_process(argv, ws, capsys)
    check_message(code, err, ws, "$MLUPDATE_CACHE_DIR", "Choose another folder")
    assert (ws / "afile").read_text() == "a file"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_command(argv: list[str], w: Path) -> tuple[int, str]:
    """The console entry point in a subprocess (a server that should not start is killed by the timeout)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLUPDATE_DATA_DIR": str(w / "appdata")}
    proc = subprocess.run([sys.executable, "-m", "mlupdate", *(a.format(w=w) for a in argv)], env=env,
                          capture_output=True, text=True, timeout=60, cwd=w)
    return proc.returncode, proc.stderr


SUBPROCESS_ROWS = {
    "serve missing model": (["serve", "{w}/missing.mlmodel"], "missing.mlmodel", "check the path"),
    "serve random bytes": (["serve", "{w}/rand.mlmodel"], "rand.mlmodel", "re-export"),
    "serve array model": (["serve", "{w}/dense.mlmodel"], "dense.mlmodel", "mlupdate predict"),
    "serve --port 70000": (["serve", "{w}/img.mlmodel", "--port", "70000"], "--port", "0 to 65535"),
    "serve --data-dir is a file": (["serve", "{w}/img.mlmodel", "--data-dir", "{w}/afile"], "afile",
                                   "give a folder path"),
    "serve missing samples": (["serve", "{w}/img.mlmodel", "--samples", "{w}/nosamples"], "nosamples",
                              "check the path"),
    "demo --port 70000": (["demo", "--port", "70000"], "--port", "0 to 65535"),
    "demo --data-dir is a file": (["demo", "--data-dir", "{w}/afile"], "afile", "give a folder path"),
    "update end to end": (["update", "{w}/dense.mlmodel", "{w}/nonutf8.csv", "--out", "{w}/nofolder/o.mlmodel"],
                          "nofolder", "Create it first"),
}


@pytest.mark.parametrize("row", list(SUBPROCESS_ROWS))
def test_commands_in_a_subprocess_print_one_line_and_no_traceback(ws, row):
    argv, thing, fix = SUBPROCESS_ROWS[row]
    if argv[0] in ("serve", "demo") and "--port" not in argv:
        argv = [*argv, "--port", str(free_port())]
    code, err = run_command(argv, ws)
    check_message(code, err, ws, thing, fix)
    assert not (ws / "appdata").exists()  # a refused serve leaves no data folder behind
