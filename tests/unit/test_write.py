"""Model.write / write_spec: atomic, permission-keeping, link-following, and every OS error an mlupdate.Error."""

from __future__ import annotations

import os
import stat

import pytest

import mlupdate
from tests.unit import _update_models as M


@pytest.fixture
def model():
    return mlupdate.Model(M.dense_classifier())


def test_overwrite_keeps_the_mode_and_new_files_follow_the_umask(tmp_path, model):
    old = tmp_path / "a.mlmodel"
    old.write_bytes(b"x")
    old.chmod(0o640)
    model.write(old)
    assert stat.S_IMODE(old.stat().st_mode) == 0o640
    mask = os.umask(0o027)
    try:
        model.write(tmp_path / "b.mlmodel")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "b.mlmodel").stat().st_mode) == 0o640
    assert mlupdate.load(old).description.class_labels == M.LABELS


def test_writing_through_a_link_replaces_its_target(tmp_path, model):
    target = tmp_path / "real.mlmodel"
    target.write_bytes(b"old")
    link = tmp_path / "link.mlmodel"
    link.symlink_to(target)
    model.write(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() != b"old"


@pytest.mark.parametrize("where", ["", "folder"])
def test_bad_destinations_are_model_file_errors(tmp_path, model, where):
    path = tmp_path if where == "folder" else ""
    with pytest.raises(mlupdate.ModelFileError):
        model.write(path)


def test_an_os_error_while_writing_is_a_model_file_error_and_leaves_nothing(tmp_path):
    # RLIMIT_FSIZE makes the kernel refuse the write part-way (EFBIG), as a full disk does (ENOSPC)
    script = f"""
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
import mlupdate
from mlupdate.spec.io import write_bytes_atomic
dest = Path({str(tmp_path)!r}) / "m.mlmodel"
dest.write_bytes(b"old")
try:
    write_bytes_atomic(b"x" * 5000, dest)
except mlupdate.ModelFileError as exc:
    print("ModelFileError", exc)
    sys.exit(0 if dest.read_bytes() == b"old" else 3)
sys.exit(2)
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "m.mlmodel" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["m.mlmodel"]  # no temp file left
