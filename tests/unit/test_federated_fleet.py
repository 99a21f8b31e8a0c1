"""personalize-fleet: one UpdateTask per user folder as Ray tasks; a broken folder fails alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mlupdate
from mlupdate.cli import main
from tests.unit.federated_support import link, pick

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def demo_path() -> Path:
    from mlupdate.demo import demo_model_path

    return demo_model_path()


def _users(pets: Path, root: Path) -> Path:
    for u in range(3):  # each user: a few photos of both confused breeds to train on and to test with
        for label in ("cat", "dog"):
            link(pick(pets, "train", label, 5, 2, offset=5 * u), root / f"user{u}" / "train" / label)
            link(pick(pets, "test", label, 2, 1, offset=2 * u), root / f"user{u}" / "test" / label)
    broken = root / "user3" / "horse"  # a label the model does not have
    broken.mkdir(parents=True)
    (broken / "h.jpg").write_bytes(b"not a photo")
    return root


def test_fleet_on_ray_personalises_every_user_and_reports_the_broken_one(demo_path, pets, tmp_path, capsys):
    users = _users(pets, tmp_path / "users")
    out = tmp_path / "personal"
    code = main(["personalize-fleet", str(demo_path), str(users), "--out", str(out), "--workers", "2",
                 "--seed", "0", "--json", str(tmp_path / "fleet.json")])
    assert not ray.is_initialized()
    text = capsys.readouterr().out
    assert code == 1  # one user failed
    assert "user3: FAILED" in text and "'horse' is not one of the model's class labels" in text
    assert "4 users in" in text and "1 failed" in text
    report = json.loads((tmp_path / "fleet.json").read_text())
    ok = [r for r in report["users"] if "error" not in r]
    assert sorted(r["user"] for r in ok) == ["user0", "user1", "user2"]
    assert sorted(p.name for p in out.iterdir()) == ["user0.mlmodel", "user1.mlmodel", "user2.mlmodel"]
    for r in ok:
        assert r["examples"] == 14 and r["held-out"] == 6
        assert r["accuracy-before"] <= 4 / 6 and r["accuracy-after"] > r["accuracy-before"], r
        model = mlupdate.load(out / f"{r['user']}.mlmodel")
        assert model.description.is_updatable
    s = report["summary"]
    assert (s["users"], s["better"], s["worse"], s["failed"]) == (4, 3, 0, 1) and s["mean-change"] > 0


def test_fleet_errors_before_any_work(demo_path, tmp_path, capsys):
    assert main(["personalize-fleet", str(demo_path), str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "No user folders" in capsys.readouterr().err
    assert main(["personalize-fleet", str(demo_path), str(tmp_path), "--out", "o", "--workers", "-1"]) == 2


def test_fleet_refuses_a_parameter_the_model_does_not_allow_before_starting(demo_path, tmp_path, capsys):
    (tmp_path / "users" / "u1" / "Cat").mkdir(parents=True)
    assert main(["personalize-fleet", str(demo_path), str(tmp_path / "users"), "--out", str(tmp_path / "o"),
                 "--epochs", "2"]) == 2  # the demo model allows epochs = 10 only
    err = capsys.readouterr().err
    assert "epochs" in err and "u1" not in err
