"""The model types mlupdate refuses: each message names the type, the stage, and the way forward.

The specs are built by hand with Model_pb2 in the shapes Create ML and coremltools write them (an image
classifier is a pipeline of visionFeaturePrint and glmClassifier).
"""

from __future__ import annotations

import pytest
from coremltools.proto import Model_pb2

import mlupdate
from mlupdate.models import PROGRAMS, REFUSED
from mlupdate.spec.validate import RUNNABLE

WAY_FORWARD = {
    "visionFeaturePrint": "mlupdate.convert an open backbone (e.g. EfficientNet-Lite0",
    "audioFeaturePrint": "soundAnalysisPreprocessing + a neural network",
    "textClassifier": "mlupdate.convert",
    "wordTagger": "mlupdate.convert",
    "gazetteer": "categoricalMapping",
    "wordEmbedding": "embedding layer",
    "customModel": "className",
    "serializedModel": "convert_to='neuralnetwork'",
    "bayesianProbitRegressor": "glmClassifier with Probit",
}


def _typed(kind):
    spec = Model_pb2.Model(specificationVersion=4)
    getattr(spec, kind).SetInParent()
    fd = spec.description.input.add(name="image")
    fd.type.imageType.width = fd.type.imageType.height = 299
    fd.type.imageType.colorSpace = Model_pb2.ImageFeatureType.RGB
    out = spec.description.output.add(name="sceneprint")
    out.type.multiArrayType.shape.append(2048)
    out.type.multiArrayType.dataType = Model_pb2.ArrayFeatureType.DOUBLE
    return spec


def test_every_type_runs_or_is_refused_with_its_way_forward():
    kinds = [f.name for f in Model_pb2.Model.DESCRIPTOR.oneofs_by_name["Type"].fields]
    assert sorted(k for k in kinds if k not in RUNNABLE) == sorted(REFUSED) == sorted(WAY_FORWARD)
    assert not set(REFUSED) & set(PROGRAMS)


@pytest.mark.parametrize("kind", sorted(WAY_FORWARD))
def test_a_refused_model_says_why_and_what_to_do(kind):
    with pytest.raises(mlupdate.UnsupportedModelError) as err:
        mlupdate.Model(_typed(kind))
    msg = str(err.value)
    assert msg.startswith(f"The model is of type '{kind}', which mlupdate cannot run: ")
    assert WAY_FORWARD[kind] in msg


def test_create_ml_image_classifier_names_the_stage_and_the_way_forward():
    pipe = Model_pb2.Model(specificationVersion=4)
    stages = pipe.pipelineClassifier.pipeline.models
    stages.add().CopyFrom(_typed("visionFeaturePrint"))
    stages[0].visionFeaturePrint.scene.version = 1
    glm = stages.add()
    glm.description.input.extend(stages[0].description.output)
    glm.glmClassifier.stringClassLabels.vector.extend(["cat", "dog"])
    pipe.description.input.extend(stages[0].description.input)
    pipe.description.output.add(name="label").type.stringType.SetInParent()
    with pytest.raises(mlupdate.UnsupportedModelError) as err:
        mlupdate.Model(pipe)
    msg = str(err.value)
    assert msg.startswith("Model 0 of the pipeline is of type 'visionFeaturePrint', which mlupdate cannot run: it "
                          "runs Apple's Vision framework")
    assert "Create ML image classifier (visionFeaturePrint + glmClassifier)" in msg and "k-NN" in msg


def test_a_stage_of_a_nested_pipeline_is_named_with_its_path():
    inner = Model_pb2.Model(specificationVersion=4)
    inner.pipeline.models.add().CopyFrom(_typed("identity"))
    inner.pipeline.models.add().CopyFrom(_typed("wordTagger"))
    inner.description.input.extend(inner.pipeline.models[0].description.input)
    outer = Model_pb2.Model(specificationVersion=4)
    outer.pipeline.models.add().CopyFrom(_typed("identity"))
    outer.pipeline.models.add().CopyFrom(inner)
    outer.description.input.extend(inner.description.input)
    with pytest.raises(mlupdate.UnsupportedModelError, match=r"^Model 1 of the pipeline in model 1 of the pipeline is "
                                                             "of type 'wordTagger'"):
        mlupdate.Model(outer)
