"""VGGish sound preprocessing (the ``soundAnalysisPreprocessing`` model type) as a program.

``SoundAnalysisPreprocessing.proto`` documents the ``vggish`` preprocessing as: 15600 mono samples
at 16 kHz (975 ms, a FLOAT32 ``[15600]`` input) to a ``[1, 96, 64]`` output; 25 ms (400-sample)
frames hopping 10 ms (160 samples), partial frames dropped; a periodic Hann window
``w(n) = 0.5 - 0.5 cos(2 pi n / 400)``; the short-time Fourier transform magnitude with an FFT of
512; a log mel filterbank of 64 bins from 125 Hz to 7500 Hz with log offset 0.01. Core ML's
validator checks the shapes and the input type.

The proto leaves the mel filterbank itself unstated, so mlupdate follows VGGish's published
reference (``tensorflow/models`` ``research/audioset/vggish/mel_features.py`` with
``vggish_params.py``), which the proto cites through the VGGish paper:

* mel scale ``m(f) = 1127 ln(1 + f / 700)``; 66 band edges evenly spaced in mel from ``m(125)`` to
  ``m(7500)``; band ``i`` is the triangle over edges ``i, i+1, i+2``, evaluated at the mel value of
  each of the 257 FFT bin frequencies ``linspace(0, 8000, 257)``, with the DC bin's weights zeroed;
* output ``ln(|STFT| @ weights + 0.01)``, one row per frame (the magnitude, not its square, as both
  the proto's step 3 and the reference compute).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlupdate.errors import SpecError
from mlupdate.models.values import array, feature, inputs_of, only, output, outputs_of

SAMPLE_RATE = 16000
SAMPLES, WINDOW, HOP, FFT = 15600, 400, 160, 512
FRAMES, BANDS = 96, 64
MEL_MIN_HZ, MEL_MAX_HZ, LOG_OFFSET = 125.0, 7500.0, 0.01
_KIND = "soundAnalysisPreprocessing"


def _mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(hz / 700.0)


def mel_weights() -> np.ndarray:
    """The ``[257, 64]`` triangular mel filterbank of VGGish."""
    bins = _mel(np.linspace(0.0, SAMPLE_RATE / 2, FFT // 2 + 1))[:, None]
    edges = np.linspace(_mel(np.float64(MEL_MIN_HZ)), _mel(np.float64(MEL_MAX_HZ)), BANDS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    weights = np.maximum(0.0, np.minimum((bins - lower) / (center - lower), (upper - bins) / (upper - center)))
    weights[0] = 0.0
    return weights


class SoundAnalysisPreprocessingProgram:
    """Turns 975 ms of 16 kHz audio into VGGish's ``[1, 96, 64]`` log mel patch.

    Args:
        spec: A ``Model_pb2.Model`` of type ``soundAnalysisPreprocessing`` (``vggish``).

    Raises:
        SpecError: If the preprocessing type, the input or the output is not as Core ML requires.
    """

    def __init__(self, spec: Any) -> None:
        if spec.soundAnalysisPreprocessing.WhichOneof("SoundAnalysisPreprocessingType") != "vggish":
            raise SpecError(f"The {_KIND} sets no preprocessing type; set vggish (the only one Core ML defines).")
        self.input = only(inputs_of(spec), _KIND, "input", ("multiArray",))
        self.output = only(outputs_of(spec), _KIND, "output", ("multiArray",))
        if self.input.shape != (SAMPLES,) or self.input.dtype != "float32":
            raise SpecError(f"The {_KIND}'s input '{self.input.name}' is {self.input}; VGGish preprocessing reads a "
                            f"FLOAT32 array of shape [{SAMPLES}] (975 ms at 16 kHz). Fix the model's description.")
        if self.output.shape != (1, FRAMES, BANDS):
            raise SpecError(f"The {_KIND}'s output '{self.output.name}' is {self.output}; VGGish preprocessing "
                            f"writes shape [1, {FRAMES}, {BANDS}]. Fix the model's description.")
        self.window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)
        self.weights = mel_weights()
        self.frames = np.arange(FRAMES)[:, None] * HOP + np.arange(WINDOW)

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[dict[str, Any]]:
        """``{output: [1, 96, 64] log mel patch}`` for every example's samples."""
        audio = np.stack([array(feature(ex, self.input), self.input).astype(np.float64) for ex in examples])
        spectrum = np.abs(np.fft.rfft(audio[:, self.frames] * self.window, FFT))
        logmel = np.log(spectrum @ self.weights + LOG_OFFSET)
        return [{self.output.name: output(patch[None], self.output)} for patch in logmel]
