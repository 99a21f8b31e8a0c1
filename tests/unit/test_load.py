"""Loading: good models load; every kind of bad file raises a clear mlupdate.Error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mlupdate
from tests.helpers import ct_convert


@pytest.fixture(scope="module")
def mlp_path(tmp_path_factory):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x = torch.rand(1, 6)
    path = ct_convert(m, x, tmp_path_factory.mktemp("m") / "mlp.mlmodel")
    return path, m


def test_mlp_matches_torch(mlp_path):
    path, m = mlp_path
    model = mlupdate.load(path)
    x = np.random.default_rng(0).random((1, 6), dtype=np.float32)
    out = model.predict({"input": x})
    (name,) = model.description.outputs
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out[name].reshape(ref.shape), ref, atol=1e-5)


def test_not_a_model_file(tmp_path):
    bad = tmp_path / "x.mlmodel"
    bad.write_bytes(b"hello, I am not a model")
    with pytest.raises(mlupdate.ModelFileError, match="not a readable Core ML"):
        mlupdate.load(bad)


def test_truncated_file(mlp_path, tmp_path):
    data = mlp_path[0].read_bytes()
    cut = tmp_path / "cut.mlmodel"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(mlupdate.ModelFileError):
        mlupdate.load(cut)


def test_missing_file(tmp_path):
    with pytest.raises(mlupdate.ModelFileError, match="No model file"):
        mlupdate.load(tmp_path / "nope.mlmodel")


def test_errors_are_exceptions():
    assert issubclass(mlupdate.Error, Exception)
    for name in ("ModelFileError", "UnsupportedModelError", "UnsupportedLayerError", "SpecError", "FeatureError"):
        assert issubclass(getattr(mlupdate, name), mlupdate.Error)


def test_a_git_lfs_pointer_says_to_pull_the_file(tmp_path):
    # the text a repository holds in place of a file it keeps in Git LFS (git-lfs's pointer format, spec v1)
    pointer = tmp_path / "Model.mlmodel"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\n"
                       "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n")
    with pytest.raises(mlupdate.ModelFileError, match="git lfs pull"):
        mlupdate.load(pointer)
