"""The one reader of labelled files (``mlupdate.update.files``) and its label rule, for update and federated."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlupdate.cli import main
from mlupdate.errors import TrainingDataError
from mlupdate.federated.data import federation_split
from mlupdate.update.files import LabelCaseWarning, labelled, match_labels, read_labelled
from tests.unit.web_support import build_small_model


def _photos(root: Path, labels: tuple[str, ...], n: int = 2) -> Path:
    rng = np.random.default_rng(1)
    for lab in labels:
        (root / lab).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / lab / f"{i}.png")
    return root


def test_exact_labels_match_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert match_labels([("a.png", "Cat"), ("b.png", "Dog")], ["Cat", "Dog"], "d") == [("a.png", "Cat"),
                                                                                              ("b.png", "Dog")]


def test_case_insensitive_match_is_announced_unless_the_caller_does():
    pairs = [("a.png", "cat"), ("b.png", "dog"), ("c.png", "cat")]
    with pytest.warns(LabelCaseWarning, match="cat, dog are read as the model's class labels Cat, Dog") as seen:
        assert match_labels(pairs, ["Cat", "Dog"], "d") == [("a.png", "Cat"), ("b.png", "Dog"), ("c.png", "Cat")]
    assert len(seen) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        match_labels(pairs, ["Cat", "Dog"], "d", announce=False)


def test_an_ambiguous_or_unknown_label_is_refused():
    with pytest.raises(TrainingDataError, match=r"label 'CAT' matches the class labels \['Cat', 'cat'\]"):
        match_labels([("a.png", "CAT")], ["Cat", "cat", "Dog"], "d")
    with pytest.raises(TrainingDataError, match="label 'horse' is not one of the model's class labels"):
        match_labels([("a.png", "horse")], ["Cat", "Dog"], "d")


def test_integer_class_labels_match_folder_names():
    assert match_labels([("a.npy", "7"), ("b.npy", "3")], [3, 7], "d") == [("a.npy", 7), ("b.npy", 3)]


def test_csv_rows_paths_and_arrays(tmp_path):
    (tmp_path / "l.csv").write_text("path,label\n# a comment\nx/a.png,Cat\n\n1.5,2.5,Dog\n", encoding="utf-8")
    assert read_labelled(tmp_path / "l.csv") == [(str(tmp_path / "x" / "a.png"), "Cat"), ([1.5, 2.5], "Dog")]


@pytest.mark.parametrize(("content", "message"), [
    ("a.png,Cat\n".encode("utf-16"), "is not a UTF-8 text file"),
    ("caf\xe9.png,Cat\n".encode("latin-1"), "save the CSV as UTF-8"),
    (b"PK\x03\x04\x00\x00,Cat\n", "not a CSV"),
    (b"a.png\n", "expected 'path,label'"),
    (b"a.png,\n", "expected 'path,label'"),
    (b"1,x,Cat\n", "an array row holds numbers then the label"),
    (b"path,label\n", "No labelled examples found"),
])
def test_a_bad_csv_is_a_training_data_error(tmp_path, content, message):
    (tmp_path / "l.csv").write_bytes(content)
    with pytest.raises(TrainingDataError, match=message):
        read_labelled(tmp_path / "l.csv")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_csv_is_a_training_data_error(tmp_path):
    (tmp_path / "l.csv").write_text("a.png,Cat\n")
    (tmp_path / "l.csv").chmod(0)
    with pytest.raises(TrainingDataError, match="permission denied"):
        read_labelled(tmp_path / "l.csv")


def test_missing_and_empty_data(tmp_path):
    with pytest.raises(TrainingDataError, match="No folder or CSV at"):
        read_labelled(tmp_path / "nothing")
    (tmp_path / "empty" / "Cat").mkdir(parents=True)
    with pytest.raises(TrainingDataError, match="No labelled examples found"):
        read_labelled(tmp_path / "empty")


def test_update_and_federated_read_cat_dog_folders_for_Cat_Dog_labels(tmp_path, capsys):
    model = build_small_model(tmp_path / "m.mlmodel", epochs=1)
    data = _photos(tmp_path / "data", ("cat", "dog"))
    assert main(["update", str(model), str(data), "--out", str(tmp_path / "o.mlmodel"), "--epochs", "1"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: labels cat, dog are read as the model's class labels Cat, Dog") == 1
    assert (tmp_path / "o.mlmodel").is_file()
    with warnings.catch_warnings():  # the nodes read quietly, with the same rule
        warnings.simplefilter("error")
        users, held_out = federation_split(data, ["Cat", "Dog"], seed=0)
    assert sorted({lab for _, lab in users + held_out}) == ["Cat", "Dog"]
    assert labelled(data, ["Cat", "Dog"], announce=False) == sorted(users + held_out)


def test_update_refuses_a_folder_that_names_no_label(tmp_path, capsys):
    model = build_small_model(tmp_path / "m.mlmodel", epochs=1)
    data = _photos(tmp_path / "data", ("Cat", "horse"))
    assert main(["update", str(model), str(data), "--out", str(tmp_path / "o.mlmodel")]) == 2
    err = capsys.readouterr().err
    assert "label 'horse' is not one of the model's class labels (Cat, Dog)" in err and "Rename" in err
    assert not (tmp_path / "o.mlmodel").exists()
