"""``mlupdate update``: folder and CSV data, dry run, plot, never overwriting MODEL."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import mlupdate
from mlupdate.cli import main
from mlupdate.spec.io import write_spec
from tests.shared_data import model_or_skip
from tests.unit import _update_models as M


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model = write_spec(M.conv_classifier(image=True, epochs=2), root / "m.mlmodel")
    rng = np.random.default_rng(0)
    rows = []
    for lab in ("a", "b"):
        (root / "data" / lab).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (6, 6), dtype=np.uint8), "L").save(root / "data" / lab / f"{i}.png")
            rows.append(f"{lab}/{i}.png,{lab}")
    (root / "data" / "list.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return root, model


def test_update_folder_writes_out_and_plot(setup, capsys):
    root, model = setup
    before = model.read_bytes()
    out, png = root / "out.mlmodel", root / "loss.png"
    assert main(["update", str(model), str(root / "data"), "--out", str(out), "--epochs", "3",
                 "--plot", str(png)]) == 0
    assert model.read_bytes() == before
    assert "6 examples x 3 epochs" in capsys.readouterr().out
    updated = mlupdate.load(out)
    assert updated.spec.SerializeToString() != mlupdate.load(model).spec.SerializeToString()
    assert Image.open(png).size[0] > 100


def test_update_csv_dry_run_and_errors(setup, capsys):
    root, model = setup
    assert main(["update", str(model), str(root / "data" / "list.csv"), "--out", str(root / "x.mlmodel"),
                 "--dry-run"]) == 0
    assert "OK: 6 examples" in capsys.readouterr().out and not (root / "x.mlmodel").exists()
    assert main(["update", str(model), str(root / "data"), "--out", str(model)]) == 2
    assert main(["update", str(model), str(root / "data"), "--out", str(root / "y.mlmodel"), "--epochs", "9"]) == 2
    assert "allowed" in capsys.readouterr().err


def test_update_of_a_knn_pipeline_prints_progress_without_a_loss(tmp_path, pets, capsys):
    # the shape of Apple's UpdatableDrawingClassifier: an embedding network + an empty updatable k-NN
    model = model_or_skip("TinyDrawingClassifier.mlmodel")
    for label in ("cat", "dog"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for photo in sorted((pets / "train" / label).glob("*.jpg"))[:3]:
            (tmp_path / "data" / label / photo.name).symlink_to(photo)
    out = tmp_path / "Personal.mlmodel"
    assert main(["update", str(model), str(tmp_path / "data"), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "Updated" in printed.out and "loss" not in printed.out and "Error" not in printed.err
    probe = sorted((pets / "test" / "cat").glob("*.jpg"))[0]
    assert mlupdate.load(out).predict({"drawing": str(probe)})["label"] in ("cat", "dog")


def _array_rows(n=10):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = [i % 3 for i in range(n)]
    return x, y


def _reference_d2(spec, x, y):
    """The d2 weights after 3 epochs of SGD (lr 0.1, momentum 0.9, batches of 4) in plain PyTorch."""
    import torch

    params, fwd = M.dense_forward(spec)
    M.train_reference(params, fwd, M.cce, torch.tensor(x), torch.tensor(y),
                      lambda ps: torch.optim.SGD(ps[2:], lr=0.1, momentum=0.9), 4, 3)
    return params[2].detach().numpy()


@pytest.mark.parametrize("layout", ["csv rows", "npy folder"])
def test_update_an_array_input_model_from_csv_rows_or_npy_files(tmp_path, capsys, layout):
    spec = M.dense_classifier(updatable=("d2",), batch=4, epochs=3)
    model = write_spec(spec, tmp_path / "dense.mlmodel")
    x, y = _array_rows()
    if layout == "csv rows":
        data = tmp_path / "rows.csv"
        data.write_text("a,b,c,d,label\n" + "".join(
            ",".join(repr(float(v)) for v in x[i]) + f",{M.LABELS[y[i]]}\n" for i in range(len(x))))
    else:  # class folders of .npy files, read label by label: order the reference the same way
        order = sorted(range(len(x)), key=lambda i: (M.LABELS[y[i]], i))
        x, y = x[order], [y[i] for i in order]
        data = tmp_path / "arrays"
        for k, i in enumerate(order):
            (data / M.LABELS[y[k]]).mkdir(parents=True, exist_ok=True)
            np.save(data / M.LABELS[y[k]] / f"{i:02d}.npy", x[k])
    out = tmp_path / "out.mlmodel"
    assert main(["update", str(model), str(data), "--out", str(out)]) == 0
    assert f"on {len(x)} examples x 3 epochs" in capsys.readouterr().out
    np.testing.assert_allclose(M.weights(mlupdate.load(out).spec, "d2")[0].detach().numpy(), _reference_d2(spec, x, y),
                               rtol=1e-4, atol=1e-5)


def test_update_flowers_mnist_from_npy_files_validates(tmp_path, capsys):
    mnist = model_or_skip("MNIST_Model.mlmodel")
    rng = np.random.default_rng(2)
    for digit in ("3", "7"):
        (tmp_path / "digits" / digit).mkdir(parents=True)
        for i in range(2):
            np.save(tmp_path / "digits" / digit / f"{i}.npy", rng.random((1, 28, 28), dtype=np.float32))
    assert main(["update", str(mnist), str(tmp_path / "digits"), "--out", str(tmp_path / "o.mlmodel"),
                 "--dry-run"]) == 0
    assert "OK: 4 examples match the model" in capsys.readouterr().out


def test_array_rows_for_an_image_model_are_refused(setup, tmp_path, capsys):
    root, model = setup
    (tmp_path / "rows.csv").write_text("0.5,1.5,a\n")
    assert main(["update", str(model), str(tmp_path / "rows.csv"), "--out", str(tmp_path / "o.mlmodel")]) == 2
    assert "is an image; give image files" in capsys.readouterr().err
