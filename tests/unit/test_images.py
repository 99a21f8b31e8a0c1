"""Image inputs under Core ML's rules: input forms, colour spaces, preprocessing, sizes, crop-and-scale, errors.

Each model is a single LINEAR activation (y = x) after the spec's preprocessing, so its output is the
preprocessed pixels; the expected pixels are computed here with numpy from the same image.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import coremltools as ct
import numpy as np
import pytest
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder
from coremltools.models.neural_network import flexible_shape_utils as fsu
from PIL import Image

import mlupdate
from mlupdate.features.images import ImageConstraint

H, W = 8, 6  # default size of the test models (height, width)
SCALE = 0.5
BIAS = {"red": -1.0, "green": -2.0, "blue": -3.0, "gray": -5.0}


def image_model(path: Path, color: str = "RGB", *, h: int = H, w: int = W, mean: np.ndarray | None = None,
                enumerated: list[tuple[int, int]] | None = None, size_range: tuple | None = None) -> Path:
    """An identity network over an image input with Core ML preprocessing; returns the saved path."""
    c = 1 if color == "GRAYSCALE" else 3
    b = NeuralNetworkBuilder([("image", datatypes.Array(c, h, w))], [("out", None)])
    b.add_activation("identity", "LINEAR", "image", "out", params=[1.0, 0.0])
    if mean is None:
        b.set_pre_processing_parameters(image_input_names=["image"], is_bgr=color == "BGR", image_scale=SCALE,
                                        red_bias=BIAS["red"], green_bias=BIAS["green"], blue_bias=BIAS["blue"],
                                        gray_bias=BIAS["gray"])
    else:
        b.set_pre_processing_parameters(image_input_names=["image"], is_bgr=color == "BGR")
        del b.spec.neuralNetwork.preprocessing[:]
        pp = b.spec.neuralNetwork.preprocessing.add()
        pp.featureName = "image"
        pp.meanImage.meanImage.extend(mean.astype(np.float64).ravel().tolist())
    spec = b.spec
    if color == "GRAYSCALE":
        spec.description.input[0].type.imageType.colorSpace = ct.proto.FeatureTypes_pb2.ImageFeatureType.GRAYSCALE
    if enumerated:
        fsu.add_enumerated_image_sizes(spec, "image", [fsu.NeuralNetworkImageSize(hh, ww) for ww, hh in enumerated])
    if size_range:
        r = fsu.NeuralNetworkImageSizeRange()
        r.add_width_range(size_range[0])
        r.add_height_range(size_range[1])
        fsu.update_image_size_range(spec, "image", r)
    ct.models.MLModel(spec)  # coremltools accepts the spec
    ct.utils.save_spec(spec, str(path))
    return path


def expected(img: Image.Image, color: str = "RGB") -> np.ndarray:
    """Core ML's preprocessing in numpy: channels in the colour space's order, scale, per-channel bias."""
    if color == "GRAYSCALE":
        x = np.asarray(img.convert("L"), np.float64)[None]
        return x * SCALE + BIAS["gray"]
    x = np.asarray(img.convert("RGB"), np.float64).transpose(2, 0, 1)
    order = ("blue", "green", "red") if color == "BGR" else ("red", "green", "blue")
    if color == "BGR":
        x = x[::-1]
    return x * SCALE + np.array([BIAS[k] for k in order]).reshape(3, 1, 1)


def rand_image(w: int, h: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (h, w) if mode == "L" else (h, w, len(mode))
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    return {
        "RGB": mlupdate.load(image_model(d / "rgb.mlmodel", "RGB")),
        "BGR": mlupdate.load(image_model(d / "bgr.mlmodel", "BGR")),
        "GRAYSCALE": mlupdate.load(image_model(d / "gray.mlmodel", "GRAYSCALE")),
    }


@pytest.mark.parametrize("color", ["RGB", "BGR", "GRAYSCALE"])
def test_color_space_and_scaler(models, color):
    img = rand_image(W, H, seed=1)
    out = models[color].predict({"image": img})["out"]
    assert out.shape == ((1 if color == "GRAYSCALE" else 3), H, W)
    np.testing.assert_allclose(out, expected(img, color), atol=1e-5)


def test_bgr_is_rgb_reversed_before_bias(models):
    img = rand_image(W, H, seed=2)
    rgb = models["RGB"].predict({"image": img})["out"]
    bgr = models["BGR"].predict({"image": img})["out"]
    # same scaled pixels, channel order reversed; the bias follows the channel it belongs to
    np.testing.assert_allclose(bgr[0] - BIAS["blue"], rgb[2] - BIAS["blue"], atol=1e-5)
    np.testing.assert_allclose(bgr[2] - BIAS["red"], rgb[0] - BIAS["red"], atol=1e-5)


def test_grayscale_of_a_colour_image_is_luma(models):
    img = rand_image(W, H, seed=3)
    out = models["GRAYSCALE"].predict({"image": img})["out"][0]
    rgb = np.asarray(img, np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])  # ITU-R BT.601
    np.testing.assert_allclose((out - BIAS["gray"]) / SCALE, luma, atol=1.0)


def test_mean_image(tmp_path):
    mean = np.random.default_rng(4).uniform(0, 255, (3, H, W))
    model = mlupdate.load(image_model(tmp_path / "mean.mlmodel", "RGB", mean=mean))
    img = rand_image(W, H, seed=5)
    out = model.predict({"image": img})["out"]
    np.testing.assert_allclose(out, np.asarray(img, np.float64).transpose(2, 0, 1) - mean, atol=1e-4)


def test_every_input_form_gives_the_same_pixels(models, tmp_path):
    img = rand_image(W, H, seed=6)
    png = tmp_path / "x.png"
    img.save(png)
    ref = expected(img)
    m = models["RGB"]
    for value in (img, png, str(png), png.read_bytes(), np.asarray(img), np.asarray(img.convert("RGBA"))):
        np.testing.assert_allclose(m.predict({"image": value})["out"], ref, atol=1e-5, err_msg=type(value).__name__)
    gray = rand_image(W, H, seed=7, mode="L")
    np.testing.assert_allclose(m.predict({"image": np.asarray(gray)})["out"], expected(gray), atol=1e-5)


def test_exif_orientation_applied_for_files(models, tmp_path):
    img = rand_image(H, W, seed=8)  # stored sideways: W' = H, H' = W
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "rot.png"
    img.save(path, exif=exif)
    out = models["RGB"].predict({"image": path})["out"]
    np.testing.assert_allclose(out, expected(img.transpose(Image.Transpose.ROTATE_270)), atol=1e-5)


def test_center_crop_scale_fit_scale_fill(tmp_path):
    path = image_model(tmp_path / "m.mlmodel", "RGB")
    wide = rand_image(2 * W, H, seed=9)  # same height, twice as wide
    crop = mlupdate.load(path).predict({"image": wide})["out"]
    # short side already fits: the centre W columns, unscaled
    np.testing.assert_allclose(crop, expected(wide)[:, :, W // 2: W // 2 + W], atol=1e-5)

    fit = mlupdate.load(path, crop_and_scale="scale_fit").predict({"image": wide})["out"]
    # long side fits (2W -> W): image is W x H/2, centred with black bars above and below
    bar = H // 4
    inner = wide.resize((W, H // 2), Image.Resampling.BILINEAR)
    np.testing.assert_allclose(fit[:, bar: bar + H // 2], expected(inner), atol=1e-5)
    black = expected(Image.new("RGB", (W, H)))
    np.testing.assert_allclose(fit[:, :bar], black[:, :bar], atol=1e-5)
    np.testing.assert_allclose(fit[:, bar + H // 2:], black[:, bar + H // 2:], atol=1e-5)

    tall = rand_image(W * 3, H * 2, seed=10)
    fill = mlupdate.load(path, crop_and_scale="scale_fill").predict({"image": tall})["out"]
    np.testing.assert_allclose(fill, expected(tall.resize((W, H), Image.Resampling.BILINEAR)), atol=1e-5)

    with pytest.raises(mlupdate.ImageError, match="crop_and_scale"):
        mlupdate.load(path, crop_and_scale="stretch")


def test_image_constraint_prepare(models):
    c = models["RGB"].description.inputs["image"].image_constraint
    assert isinstance(c, ImageConstraint)
    assert (c.width, c.height, c.color_space, c.flexible) == (W, H, "RGB", False)
    big = rand_image(40, 30, seed=11)
    for option in ("center_crop", "scale_fit", "scale_fill"):
        out = c.prepare(big, option)
        assert out.size == (W, H) and out.mode == "RGB"
    with pytest.raises(mlupdate.ImageError, match="pixels"):
        c.prepare(big, max_pixels=100)


def test_enumerated_sizes(tmp_path):
    model = mlupdate.load(image_model(tmp_path / "enum.mlmodel", enumerated=[(4, 4)]))
    c = model.description.inputs["image"].image_constraint
    assert c.flexible and set(c.enumerated_sizes) == {(4, 4), (W, H)}
    small = rand_image(4, 4, seed=12)
    np.testing.assert_allclose(model.predict({"image": small})["out"], expected(small), atol=1e-5)
    odd = rand_image(5, 5, seed=13)  # not accepted: brought to the default size
    assert model.predict({"image": odd})["out"].shape == (3, H, W)


def test_size_range_and_mixed_batch(tmp_path):
    model = mlupdate.load(image_model(tmp_path / "range.mlmodel", size_range=((4, 10), (4, -1))))
    c = model.description.inputs["image"].image_constraint
    assert c.width_range == (4, 10) and c.height_range == (4, -1)
    assert c.accepts(10, 500) and not c.accepts(11, 8) and not c.accepts(4, 3)
    imgs = [rand_image(W, H, 14), rand_image(5, 9, 15), rand_image(W, H, 16), rand_image(12, 3, 17)]
    calls = []
    run = model._program.executor.run
    model._program.executor.run = lambda arrays: calls.append(arrays[0].shape) or run(arrays)
    batch = model.predict_batch([{"image": i} for i in imgs])
    assert sorted(calls) == sorted([(3, 3, H, W), (1, 3, 9, 5)])  # one pass per size group
    np.testing.assert_allclose(batch[1]["out"], expected(imgs[1]), atol=1e-5)
    assert batch[3]["out"].shape == (3, H, W)  # 12x3 is outside the range: default size
    for img, res in zip(imgs, batch, strict=True):
        np.testing.assert_allclose(res["out"], model.predict({"image": img})["out"], atol=1e-6)


# -- errors --------------------------------------------------------------------------------------
def png_header(width: int, height: int) -> bytes:
    """A PNG that claims a huge size (tiny file, a decompression bomb if decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def test_image_errors(models, tmp_path):
    m = models["RGB"]
    with pytest.raises(mlupdate.FeatureError, match="Missing input 'image'"):
        m.predict({"picture": rand_image(W, H)})
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(mlupdate.ImageError, match="not an image"):
        m.predict({"image": text})
    with pytest.raises(mlupdate.ImageError, match="No image file"):
        m.predict({"image": tmp_path / "missing.jpg"})
    buf = io.BytesIO()
    rand_image(64, 64).save(buf, "JPEG")
    with pytest.raises(mlupdate.ImageError, match="truncated"):
        m.predict({"image": buf.getvalue()[: len(buf.getvalue()) // 2]})
    with pytest.raises(mlupdate.ImageError, match="over the limit of 64,000,000"):
        m.predict({"image": png_header(10000, 7000)})  # refused from the header, before decoding
    with pytest.raises(mlupdate.ImageError, match="too large to decode safely"):
        m.predict({"image": png_header(20000, 20000)})  # Pillow's own guard
    with pytest.raises(mlupdate.ImageError, match="uint8"):
        m.predict({"image": np.zeros((H, W, 3), np.float32)})
    with pytest.raises(mlupdate.ImageError, match="shape"):
        m.predict({"image": np.zeros((H, W, 2), np.uint8)})
    with pytest.raises(mlupdate.ImageError, match="Cannot use a int"):
        m.predict({"image": 3})


def test_extra_features_ignored(models):
    img = rand_image(W, H, seed=18)
    out = models["RGB"].predict({"image": img, "label": "cat", "weights": np.zeros(3)})
    assert set(out) == {"out"}
    np.testing.assert_allclose(out["out"], expected(img), atol=1e-5)
