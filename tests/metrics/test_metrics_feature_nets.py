"""Feature networks: SmallCNN, the FID Inception-v3 layout, and the shipped weights."""

from __future__ import annotations

import hashlib
from importlib import resources

import pytest
import torch
from torch import nn

from ebmlab.metrics.feature_nets import (
    FEATURE_NETS,
    feature_net_info,
    load_feature_net,
    resolve_name,
)
from ebmlab.metrics.fid import fid
from ebmlab.metrics.inception_score import inception_score
from ebmlab.models.nets.inception import FIDInceptionV3, load_inception
from ebmlab.models.nets.small_cnn import SmallCNN

# --- SmallCNN -------------------------------------------------------------------


@pytest.mark.parametrize(("image_size", "width"), [(28, 4), (8, 6)])
def test_small_cnn_shapes_for_flat_and_image_inputs(image_size, width):
    net = SmallCNN(1, image_size, 10, width, generator=torch.Generator().manual_seed(0))
    flat = torch.rand(3, image_size * image_size, generator=torch.Generator().manual_seed(1))
    images = flat.reshape(3, 1, image_size, image_size)
    assert net.features(flat).shape == (3, 4 * width)
    assert net.logits(flat).shape == (3, 10)
    torch.testing.assert_close(net(flat), net(images))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 1, "):
        net(torch.rand(3, 5))


def test_small_cnn_defaults_and_reproducible_initialisation():
    a = SmallCNN(3, 16, 5, 4, generator=torch.Generator().manual_seed(7))
    b = SmallCNN(3, 16, 5, 4, generator=torch.Generator().manual_seed(7))
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not any(isinstance(m, nn.BatchNorm2d) for m in a.modules())
    slopes = {m.negative_slope for m in a.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.2}
    with_bn = SmallCNN(1, 8, 10, 4, batch_norm=True)
    assert any(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules())
    assert SmallCNN(**a.config()).config() == a.config()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"image_size": 3}, "image_size must be >= 4"), ({"width": 0}, "width must be a positive")],
)
def test_small_cnn_rejects_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SmallCNN(**kwargs)


# --- Inception-v3 (FID layout), randomly initialised ------------------------------
# One forward pass at 75x75 (the smallest accepted size) takes ~0.1 s on a free
# core; the 299x299 and save/load round trips are marked slow.


@pytest.fixture(scope="module")
def inception() -> FIDInceptionV3:
    torch.manual_seed(0)
    return FIDInceptionV3(resize_input=False).eval()


def test_inception_gives_2048_pool_features_and_1008_logits(inception):
    gray = torch.rand(1, 1, 75, 75, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = inception.features(gray)
        assert features.shape == (1, 2048)
        assert inception.fc(features).shape == (1, 1008)
        # Grayscale is repeated over the three channels.
        torch.testing.assert_close(features, inception.features(gray.repeat(1, 3, 1, 1)))
    with pytest.raises(ValueError, match="at least 75x75"):
        inception.features(torch.rand(1, 3, 28, 28))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3, H, W\)"):
        inception.features(torch.rand(1, 2, 80, 80))


def test_inception_layout_uses_tensorflow_pooling(inception):
    # Mixed_7c max-pools its pool branch in the FID graph; Mixed_7b averages.
    assert (inception.Mixed_7b.pool, inception.Mixed_7c.pool) == ("avg", "max")
    keys = inception.state_dict().keys()
    assert "Mixed_6e.branch7x7dbl_5.conv.weight" in keys and "fc.bias" in keys
    assert not any(key.startswith("AuxLogits") for key in keys)


def test_load_inception_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_inception(tmp_path / "absent.pth")
    path = tmp_path / "partial.pth"
    torch.save({"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}, path)
    with pytest.raises(ValueError, match="missing keys"):
        load_inception(path)
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="holds no 'fc.weight'"):
        load_inception(path)


@pytest.mark.slow
def test_inception_resizes_small_images_to_299(inception):
    inception.resize_input = True
    try:
        with torch.no_grad():
            assert inception(torch.rand(2, 1, 28, 28)).shape == (2, 2048)
    finally:
        inception.resize_input = False


@pytest.mark.slow
def test_load_inception_round_trip(tmp_path, inception):
    state = {k: v for k, v in inception.state_dict().items() if "num_batches_tracked" not in k}
    state["AuxLogits.fc.weight"] = torch.zeros(1)  # torchvision extras are ignored
    path = tmp_path / "pt_inception-test.pth"
    torch.save(state, path)
    loaded = load_inception(path, resize_input=False)
    assert loaded.feature_name == "inception-v3-fid:pt_inception-test.pth"
    assert not loaded.training
    x = torch.rand(1, 3, 80, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded.features(x), inception.features(x))


# --- Shipped networks -------------------------------------------------------------


def _weights_path(name: str, suffix: str):
    return resources.files("ebmlab.metrics").joinpath("weights", f"{name}{suffix}")


@pytest.mark.parametrize("name", FEATURE_NETS)
def test_shipped_weights_are_small_match_their_sidecar_and_load(name):
    info = feature_net_info(name)
    data = _weights_path(name, ".safetensors").read_bytes()
    assert len(data) < 1_000_000
    assert hashlib.sha256(data).hexdigest() == info["sha256"]
    assert info["name"] == name and info["command"].startswith(
        "python scripts/train_feature_net.py"
    )
    net = load_feature_net(name)
    assert net.feature_name == name and not net.training
    assert net.config() == info["config"]


def _test_split_accuracy(name: str) -> tuple[float, float]:
    from ebmlab.data import load_dataset

    info = feature_net_info(name)
    test = load_dataset(info["dataset"], split="test", download=False)
    net = load_feature_net(name)
    with torch.no_grad():
        predictions = torch.cat([net(batch).argmax(1) for batch in test.images.split(2000)])
    return float((predictions == test.labels).double().mean()), info["test_accuracy"]


# The evaluation is deterministic on the same split; the margin only absorbs
# float32 differences between CPU kernels (a handful of borderline images).
ACCURACY_MARGIN = 0.005


def test_digits_net_classifies_its_test_split():
    accuracy, recorded = _test_split_accuracy("digits-cnn")
    assert accuracy >= recorded - ACCURACY_MARGIN


@pytest.mark.slow
def test_fashion_mnist_net_classifies_its_test_split():
    from ebmlab.data import DatasetNotFoundError

    try:
        accuracy, recorded = _test_split_accuracy("fashion-mnist-cnn")
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST files are not installed")
    assert accuracy >= recorded - ACCURACY_MARGIN


def test_metrics_record_the_shipped_network_name():
    from ebmlab.data import load_dataset

    net = load_feature_net("digits-cnn")
    test = load_dataset("digits", split="test")
    half = test.images.shape[0] // 2
    result = fid(test.images[:half], test.images[half:], net, progress=False)
    assert result.feature_name == "digits-cnn"
    score = inception_score(test.images, net, splits=1, progress=False)
    # A classifier that is right on ~all of a balanced test set scores close to 10.
    assert score.classifier_name == "digits-cnn" and 8.0 < score.mean <= 10.0


def test_resolve_name_falls_back_to_a_marked_unnamed_label():
    assert resolve_name(lambda x: x, None).startswith("unnamed:")
    assert resolve_name(object(), "given") == "given"
