"""linkedModel: pipelines whose stages link to other .mlmodel files, against scikit-learn's own pipeline.

The linked files are scikit-learn models converted by coremltools; the links are built with Model_pb2
as LinkedModel.proto describes them (a file name such as ``Foo.mlmodelc`` and a ``:``-separated search
path relative to the model holding the link).
"""

from __future__ import annotations

import warnings

import coremltools as ct
import numpy as np
import pytest
from coremltools.proto import Model_pb2
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import StandardScaler

import mlupdate
from tests.unit._sklearn_coreml import rows

MODEL_TYPES = ("linkedModel",)
REFERENCE = ("scikit-learn StandardScaler + LinearRegression predictions, run as a pipeline whose stages link to "
             "the coremltools conversions of each")
RNG = np.random.default_rng(5)
X = RNG.normal(loc=2.0, scale=3.0, size=(50, 3))


def _convert(est, inputs, output):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ct.converters.sklearn.convert(est, inputs, output).get_spec()


@pytest.fixture(scope="module")
def fitted():
    scaler = StandardScaler().fit(X)
    reg = LinearRegression().fit(scaler.transform(X), X @ [1.0, -1.0, 0.5])
    return scaler, reg, _convert(scaler, "x", "xs"), _convert(reg, "xs", "y")


def _link(target, name, search=""):
    spec = Model_pb2.Model(specificationVersion=target.specificationVersion)
    spec.description.input.extend(target.description.input)
    spec.description.output.extend(target.description.output)
    spec.linkedModel.linkedModelFile.linkedModelFileName.defaultValue = name
    spec.linkedModel.linkedModelFile.linkedModelSearchPath.defaultValue = search
    return spec


def _pipeline(stages, inputs, outputs):
    spec = Model_pb2.Model(specificationVersion=4)
    for s in stages:
        spec.pipelineRegressor.pipeline.models.add().CopyFrom(s)
    spec.description.input.extend(inputs)
    spec.description.output.extend(outputs)
    spec.description.predictedFeatureName = outputs[-1].name
    return spec


def _write(spec, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(spec.SerializeToString())
    return path


def test_linked_stages_run_as_the_sklearn_pipeline(tmp_path, fitted):
    scaler, reg, scaler_spec, reg_spec = fitted
    _write(scaler_spec, tmp_path / "parts" / "Scaler.mlmodel")
    _write(reg_spec, tmp_path / "Regressor.mlmodel")  # no search path entry holds it: found beside the pipeline
    links = [_link(scaler_spec, "Scaler.mlmodelc", "$BUNDLE_MAIN:parts"), _link(reg_spec, "Regressor.mlmodel")]
    pipe = _pipeline(links, scaler_spec.description.input, reg_spec.description.output)
    model = mlupdate.load(_write(pipe, tmp_path / "Pipe.mlmodel"))
    got = np.array([r["y"] for r in model.predict_batch(rows(X))])
    np.testing.assert_allclose(got, reg.predict(scaler.transform(X)), rtol=1e-12, atol=1e-12)


def test_a_file_linked_by_several_stages_is_read_once(tmp_path, fitted, monkeypatch):
    import mlupdate.spec.io as io

    scaler, _, scaler_spec, _ = fitted
    _write(scaler_spec, tmp_path / "abs" / "Scaler.mlmodel")
    reads = []
    real = io.read_spec
    monkeypatch.setattr(io, "read_spec", lambda p: reads.append(p) or real(p))
    link = _link(scaler_spec, "Scaler.mlmodel", str(tmp_path / "abs"))
    pipe = _pipeline([link, link], scaler_spec.description.input, scaler_spec.description.output)
    model = mlupdate.Model(real(_write(pipe, tmp_path / "Pipe.mlmodel")), path=tmp_path / "Pipe.mlmodel")
    np.testing.assert_allclose(np.stack([r["xs"] for r in model.predict_batch(rows(X))]), scaler.transform(X),
                               rtol=1e-12)
    assert reads == [tmp_path / "abs" / "Scaler.mlmodel"]


def test_missing_file_names_it_and_the_places_searched(tmp_path, fitted):
    _, _, scaler_spec, _ = fitted
    (tmp_path / "parts" / "Scaler.mlmodelc").mkdir(parents=True)
    path = _write(_link(scaler_spec, "Scaler.mlmodelc", "parts:/nowhere"), tmp_path / "Link.mlmodel")
    with pytest.raises(mlupdate.ModelFileError) as err:
        mlupdate.load(path)
    msg = str(err.value)
    for place in (tmp_path / "parts" / "Scaler.mlmodel", "/nowhere/Scaler.mlmodelc", tmp_path / "Scaler.mlmodel"):
        assert str(place) in msg
    assert "Found the compiled" in msg and "linkedModelSearchPath" in msg


def test_links_need_a_file_a_name_no_cycle_and_the_declared_outputs(tmp_path, fitted):
    _, _, scaler_spec, reg_spec = fitted
    link = _link(scaler_spec, "Scaler.mlmodel")
    with pytest.raises(mlupdate.SpecError, match="not loaded from a file"):
        mlupdate.Model(link)
    nameless = _link(scaler_spec, "")
    with pytest.raises(mlupdate.SpecError, match="names no file"):
        mlupdate.load(_write(nameless, tmp_path / "Nameless.mlmodel"))
    with pytest.raises(mlupdate.SpecError, match="links back to itself"):
        mlupdate.load(_write(_link(scaler_spec, "Self.mlmodel"), tmp_path / "Self.mlmodel"))
    _write(reg_spec, tmp_path / "Scaler.mlmodel")  # the wrong model under the linked name
    with pytest.raises(mlupdate.SpecError, match=r"outputs \['xs'\] that the linked model does not produce"):
        mlupdate.load(_write(link, tmp_path / "Link.mlmodel"))


def test_lint_resolves_links_beside_the_file_it_reads(tmp_path, fitted):
    from mlupdate.spec.io import write_spec

    _, _, scaler_spec, reg_spec = fitted
    write_spec(scaler_spec, tmp_path / "Scaler.mlmodel")
    spec = _pipeline([_link(scaler_spec, "Scaler.mlmodelc"), reg_spec], scaler_spec.description.input,
                     reg_spec.description.output)
    path = write_spec(spec, tmp_path / "Pipe.mlmodel")
    assert not any(p.rule == "load" for p in mlupdate.lint(path))
    assert not any(p.rule == "load" for p in mlupdate.lint(spec, folder=tmp_path))
    assert any(p.rule == "load" and "file" in p.message for p in mlupdate.lint(spec))  # no folder to look in
