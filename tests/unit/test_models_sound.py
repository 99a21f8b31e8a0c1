"""soundAnalysisPreprocessing (vggish) against VGGish's published preprocessing, and a sound classifier pipeline.

The reference follows the steps of SoundAnalysisPreprocessing.proto with the filterbank of VGGish's
``mel_features.py`` (tensorflow/models, research/audioset/vggish), written here loop by loop; the
classifier stage is built with coremltools' NeuralNetworkBuilder.
"""

from __future__ import annotations

import numpy as np
import pytest
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder
from coremltools.proto import Model_pb2

import mlupdate
from tests.unit._sklearn_coreml import write

MODEL_TYPES = ("soundAnalysisPreprocessing",)
REFERENCE = ("the proto's vggish steps (400-sample periodic Hann frames, hop 160, abs(rfft) of 512) with VGGish's "
             "mel_features.py filterbank (64 bands, 125-7500 Hz, log offset 0.01), written per frame and band; a "
             "NeuralNetworkBuilder classifier after it in a pipeline")
RNG = np.random.default_rng(16)
FLOAT32 = Model_pb2.ArrayFeatureType.FLOAT32


def reference_logmel(samples):
    """VGGish's log_mel_spectrogram at 16 kHz: frame, window, |FFT|, mel matrix, log."""
    frames = [samples[i * 160:i * 160 + 400] for i in range(1 + (len(samples) - 400) // 160)]
    window = [0.5 - 0.5 * np.cos(2 * np.pi * n / 400) for n in range(400)]
    spectra = [np.abs(np.fft.rfft(np.asarray(f, np.float64) * window, 512)) for f in frames]

    def hz_to_mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    bin_mels = hz_to_mel(np.linspace(0.0, 8000.0, 257))
    edges = np.linspace(hz_to_mel(125.0), hz_to_mel(7500.0), 66)
    mel = np.empty((257, 64))
    for i in range(64):
        lo, center, hi = edges[i:i + 3]
        mel[:, i] = np.maximum(0.0, np.minimum((bin_mels - lo) / (center - lo), (hi - bin_mels) / (hi - center)))
    mel[0, :] = 0.0
    return np.log(np.asarray(spectra) @ mel + 0.01)


def _spec(in_shape=(15600,), out_shape=(1, 96, 64), dtype=FLOAT32):
    spec = Model_pb2.Model(specificationVersion=4)
    spec.soundAnalysisPreprocessing.vggish.SetInParent()
    for fd, shape, dt in ((spec.description.input.add(name="audioSamples"), in_shape, dtype),
                          (spec.description.output.add(name="preprocessed"), out_shape, FLOAT32)):
        fd.type.multiArrayType.shape.extend(shape)
        fd.type.multiArrayType.dataType = dt
    return spec


def _audio(n=3):
    t = np.arange(15600) / 16000
    tones = [0.5 * np.sin(2 * np.pi * f * t) for f in RNG.uniform(200, 6000, n)]
    return [(x + 0.05 * RNG.normal(size=t.size)).astype(np.float32) for x in tones]


def test_vggish_frames_match_the_reference(tmp_path):
    model = write(_spec(), tmp_path / "pre.mlmodel")
    audio = _audio()
    got = model.predict_batch([{"audioSamples": a} for a in audio])
    for a, res in zip(audio, got, strict=True):
        patch = res["preprocessed"]
        assert patch.shape == (1, 96, 64) and patch.dtype == np.float32
        np.testing.assert_allclose(patch[0], reference_logmel(a.astype(np.float64)), rtol=1e-5, atol=1e-5)
    silence = model.predict({"audioSamples": np.zeros(15600, np.float32)})["preprocessed"]
    np.testing.assert_allclose(silence, np.log(0.01), rtol=1e-6)


@pytest.mark.parametrize(("spec", "match"), [(_spec(in_shape=(16000,)), "shape \\[15600\\]"),
                                             (_spec(out_shape=(96, 64)), "\\[1, 96, 64\\]"),
                                             (_spec(dtype=Model_pb2.ArrayFeatureType.DOUBLE), "FLOAT32")])
def test_interface_is_checked_as_the_validator_does(spec, match):
    with pytest.raises(mlupdate.SpecError, match=match):
        mlupdate.Model(spec)


def test_sound_classifier_pipeline_runs_end_to_end(tmp_path):
    labels = ["speech", "music", "noise"]
    net = NeuralNetworkBuilder([("preprocessed", datatypes.Array(1, 96, 64))], [("probs", datatypes.Array(3))],
                               mode="classifier")
    w = RNG.normal(scale=0.01, size=(3, 96 * 64))
    b = RNG.normal(size=3)
    net.add_flatten("flat", 0, "preprocessed", "flat")
    net.add_inner_product("fc", w, b, 96 * 64, 3, True, "flat", "logits")
    net.add_softmax("softmax", "logits", "probs")
    net.set_class_labels(labels, predicted_feature_name="label", prediction_blob="probs")
    pipe = Model_pb2.Model(specificationVersion=4)
    pipe.pipelineClassifier.pipeline.models.add().CopyFrom(_spec())
    pipe.pipelineClassifier.pipeline.models.add().CopyFrom(net.spec)
    pipe.description.input.extend(_spec().description.input)
    pipe.description.output.extend(net.spec.description.output)
    pipe.description.predictedFeatureName = "label"
    pipe.description.predictedProbabilitiesName = "probs"
    model = write(pipe, tmp_path / "sound.mlmodel")
    audio = _audio(4)
    got = model.predict_batch([{"audioSamples": a} for a in audio])
    for a, res in zip(audio, got, strict=True):
        z = w @ reference_logmel(a.astype(np.float64)).reshape(-1) + b
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert res["label"] == labels[int(np.argmax(p))]
        np.testing.assert_allclose([res["probs"][lab] for lab in labels], p, rtol=1e-3, atol=1e-5)
