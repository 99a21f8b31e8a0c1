"""``mlupdate update``: folder and CSV data, dry run, plot, never overwriting MODEL."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import mlupdate
from mlupdate.cli import main
from mlupdate.spec.io import write_spec
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
    model = pets.parent.parent / "models" / "TinyDrawingClassifier.mlmodel"
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
