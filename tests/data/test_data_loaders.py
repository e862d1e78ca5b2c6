"""Datasets by name: IDX sets from files the tests write, digits, registry and info.

No test touches the network: an autouse fixture replaces the download function
with one that fails the test, and points the cache folder into tmp_path.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from ebmlab.data import (
    Dataset,
    DatasetNotFoundError,
    IdxFormatError,
    dataset_info,
    idx_datasets,
    list_datasets,
    load_dataset,
    write_idx,
)
from ebmlab.data.idx_datasets import IDX_DATASETS

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """Cache folder inside tmp_path; any download attempt fails the test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def no_network(url, destination, **kwargs):
        pytest.fail(f"test tried to download {url}")

    monkeypatch.setattr(idx_datasets, "download_file", no_network)


@pytest.fixture
def no_system_fashion(monkeypatch, tmp_path):
    """Hide /usr/share/datasets/fashion-mnist so 'missing files' is testable here too."""
    spec = dataclasses.replace(IDX_DATASETS["fashion-mnist"], system_dirs=(str(tmp_path / "sys"),))
    monkeypatch.setitem(IDX_DATASETS, "fashion-mnist", spec)


def write_split(folder, split, n, *, shape=(4, 5), gz=True, seed=0):
    """Write a split's two IDX files; return (uint8 images, labels)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    prefix = "train" if split == "train" else "t10k"
    suffix = ".gz" if gz else ""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("split", ["train", "test"])
def test_idx_dataset_reads_files_from_data_dir(tmp_path, name, gz, split, no_system_fashion):
    # no_system_fashion: the system's 28 x 28 test split would not match these 4 x 5 images.
    images, labels = write_split(tmp_path, split, 9, gz=gz)
    data = load_dataset(name, split=split, data_dir=tmp_path, download=False)
    assert data.name == name and len(data) == 9 and data.image_shape == (4, 5)
    assert data.images.dtype == torch.float32 and data.labels.dtype == torch.int64
    expected = torch.from_numpy(images.reshape(9, 20).astype(np.float32) / 255)
    torch.testing.assert_close(data.images, expected, rtol=0, atol=1e-7)
    assert torch.equal(data.labels, torch.from_numpy(labels.astype(np.int64)))
    assert Path(data.source).parent == tmp_path


@pytest.mark.parametrize("layout", [("mnist",), ("MNIST", "raw")])
def test_dataset_subfolders_of_data_dir_are_searched(tmp_path, layout):
    write_split(tmp_path.joinpath(*layout), "train", 3)
    data = load_dataset("mnist", data_dir=tmp_path, download=False)
    assert Path(data.source).parent == tmp_path.joinpath(*layout)


def test_data_dir_comes_before_the_cache(tmp_path):
    write_split(tmp_path / "cache" / "ebmlab" / "mnist", "train", 3, seed=1)
    write_split(tmp_path / "mine", "train", 5, seed=2)
    assert len(load_dataset("mnist", data_dir=tmp_path / "mine", download=False)) == 5
    assert len(load_dataset("mnist", download=False)) == 3  # no data_dir: the cache


def test_missing_files_raise_one_error_naming_paths_and_remedies(tmp_path, no_system_fashion):
    with pytest.raises(
        DatasetNotFoundError, match="fashion-mnist \\(test split\\) not found"
    ) as info:
        load_dataset("fashion-mnist", split="test", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for folder in (tmp_path, tmp_path / "fashion-mnist", tmp_path / "cache/ebmlab/fashion-mnist"):
        assert f"  {folder}\n" in message
    assert "t10k-images-idx3-ubyte.gz" in message and "download=False" in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message


def test_failed_download_is_reported_with_its_reason(tmp_path, monkeypatch):
    tried = []

    def fail(url, destination, **kwargs):
        tried.append(url)
        raise OSError("no route to host")

    monkeypatch.setattr(idx_datasets, "download_file", fail)
    with pytest.raises(DatasetNotFoundError, match="failed: .*no route to host") as info:
        load_dataset("mnist", data_dir=tmp_path)
    # Every mirror is tried for the first file, then the loader gives up.
    assert tried == [m + "train-images-idx3-ubyte.gz" for m in IDX_DATASETS["mnist"].mirrors]
    assert "https://" in str(info.value) and f"Download into {tmp_path}" in str(info.value)


@pytest.mark.parametrize("use_data_dir", [True, False])
def test_successful_download_lands_in_data_dir_or_cache(tmp_path, monkeypatch, use_data_dir):
    source = tmp_path / "server"
    images, _ = write_split(source, "train", 4)

    def fake_download(url, destination, **kwargs):
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes((source / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(idx_datasets, "download_file", fake_download)
    data_dir = tmp_path / "data" if use_data_dir else None
    data = load_dataset("mnist", data_dir=data_dir)
    expected_dir = data_dir if use_data_dir else tmp_path / "cache" / "ebmlab" / "mnist"
    assert Path(data.source) == expected_dir / "train-images-idx3-ubyte.gz"
    assert torch.equal(data.images, torch.from_numpy(images.reshape(4, -1)).float() / 255)


def test_labels_must_match_images(tmp_path):
    write_split(tmp_path, "train", 6)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(IdxFormatError, match=r"labels-idx1-ubyte.gz: expected 6 labels"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_images_must_be_three_dimensional_uint8(tmp_path):
    write_split(tmp_path, "train", 6)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((6, 20), dtype=np.uint8))
    with pytest.raises(IdxFormatError, match=r"images-idx3-ubyte.gz: expected uint8 images"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_truncated_file_error_names_it(tmp_path):
    write_split(tmp_path, "train", 6, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(IdxFormatError, match="truncated IDX file") as info:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert str(path) in str(info.value)


def test_unknown_name_and_split_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown dataset 'cifar-11'; valid names: digits, mnist"):
        load_dataset("cifar-11")
    with pytest.raises(ValueError, match="split must be one of train, test; got 'valid'"):
        load_dataset("digits", split="valid")
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_info("nope")


def test_names_are_case_and_underscore_insensitive(tmp_path, no_system_fashion):
    write_split(tmp_path, "train", 2)
    assert load_dataset("Fashion_MNIST", data_dir=tmp_path, download=False).name == "fashion-mnist"


def test_digits_split_is_fixed_stratified_and_partitions_the_set():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert (len(train), len(test)) == (1438, 359)
    assert train.image_shape == (8, 8) and train.n_features == 64 and train.n_classes == 10
    # Pixels are integers 0..16 divided by 16: exact multiples of 1/16 in [0, 1].
    assert torch.equal(train.images * 16, torch.round(train.images * 16))
    assert 0 <= train.images.min() and train.images.max() <= 1
    # train + test is exactly the original multiset of (image, label) rows.
    rows = Counter(
        (tuple(x), int(y)) for x, y in zip(bunch.data.astype(int), bunch.target, strict=True)
    )
    split_rows = Counter()
    for part in (train, test):
        for x, y in zip(
            (part.images * 16).round().int().tolist(), part.labels.tolist(), strict=True
        ):
            split_rows[(tuple(x), y)] += 1
    assert split_rows == rows
    # Every class puts round(0.2 * its size) rows in the test part.
    class_sizes = np.bincount(bunch.target)
    expected_test = np.floor(0.2 * class_sizes + 0.5).astype(int)
    assert np.array_equal(np.bincount(test.labels.numpy(), minlength=10), expected_test)
    assert torch.equal(load_dataset("digits", split="test").images, test.images)


def test_bars_and_stripes_by_name():
    data = load_dataset("bars-and-stripes")
    assert data.images.shape == (30, 16) and data.image_shape == (4, 4) and data.n_classes == 2
    assert data.labels.tolist() == [0] * 16 + [1] * 14
    small = load_dataset("bars-and-stripes-3", split="test")
    assert small.images.shape == (14, 9) and small.name == "bars-and-stripes-3"


def test_toy_sets_by_name_are_fixed_real_valued_point_sets():
    train, test = load_dataset("moons"), load_dataset("moons", split="test")
    assert train.images.shape == (10_000, 2) and test.images.shape == (2_000, 2)
    assert train.image_shape == (1, 2) and train.n_features == 2
    assert torch.equal(train.labels, torch.zeros(10_000, dtype=torch.int64))
    assert train.images.min() < 0  # real-valued, not squeezed into [0, 1]
    assert torch.equal(load_dataset("moons").images, train.images)
    assert not torch.equal(train.images[:2_000], test.images)


def test_list_datasets_names_every_family():
    names = list_datasets()
    assert names[:4] == ["digits", "mnist", "fashion-mnist", "bars-and-stripes"]
    assert {
        "8gaussians",
        "rings",
        "checkerboard",
        "moons",
        "swissroll",
        "pinwheel",
        "2spirals",
    } <= set(names)
    for name in names:
        dataset_info(name)  # every listed name is known to the registry


def test_dataset_info_reports_where_files_are(tmp_path, no_system_fashion):
    missing = dataset_info("fashion-mnist", data_dir=tmp_path)
    assert missing["available"] is False and missing["source"] == {"train": None, "test": None}
    assert missing["found_at"] is None
    assert missing["searched"][:2] == [str(tmp_path), str(tmp_path / "fashion-mnist")]
    write_split(tmp_path, "train", 2)
    write_split(tmp_path / "fashion-mnist", "test", 2)
    found = dataset_info("fashion-mnist", data_dir=tmp_path)
    assert found["available"] is True
    assert found["source"] == {"train": str(tmp_path), "test": str(tmp_path / "fashion-mnist")}
    assert found["found_at"] == str(tmp_path)
    assert (found["shape"], found["n_features"], found["n_classes"]) == ([28, 28], 784, 10)
    json.dumps(found)  # plain values only: the CLI prints it as JSON/YAML


@pytest.mark.parametrize("name", ["digits", "bars-and-stripes", "pinwheel"])
def test_dataset_info_matches_what_load_dataset_returns(name):
    info = dataset_info(name)
    train, test = load_dataset(name), load_dataset(name, split="test")
    assert info["available"] is True
    assert (info["n_train"], info["n_test"]) == (len(train), len(test))
    assert tuple(info["shape"]) == train.image_shape and info["n_features"] == train.n_features
    assert info["n_classes"] == train.n_classes


def test_dataset_checks_its_fields():
    images, labels = torch.zeros(3, 4), torch.zeros(3, dtype=torch.int64)
    with pytest.raises(TypeError, match="images must be a float32 tensor.*got torch.float64"):
        Dataset(images.double(), labels, (2, 2), "x", "test")
    with pytest.raises(TypeError, match="labels must be an int64 tensor.*got torch.int32"):
        Dataset(images, labels.int(), (2, 2), "x", "test")
    with pytest.raises(ValueError, match="got 3 images and 2 labels"):
        Dataset(images, labels[:2], (2, 2), "x", "test")
    with pytest.raises(ValueError, match=r"height \* width = 4 features; got \(1, 3\)"):
        Dataset(images, labels, (1, 3), "x", "test")
    data = Dataset(images, torch.tensor([0, 4, 1]), (2, 2), "x", "test")
    assert (len(data), data.n_features, data.n_classes) == (3, 4, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.name = "y"


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_loads_in_full():
    train = load_dataset("fashion-mnist", download=False)
    test = load_dataset("fashion-mnist", split="test", download=False)
    assert train.images.shape == (60_000, 784) and test.images.shape == (10_000, 784)
    assert Path(train.source).parent == FASHION_DIR and train.image_shape == (28, 28)
    assert 0 <= train.images.min() and train.images.max() == 1
    # Fashion-MNIST is balanced: 6,000 train and 1,000 test images per class.
    assert torch.equal(torch.bincount(train.labels), torch.full((10,), 6_000))
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), 1_000))


def test_gzip_bomb_in_data_dir_gets_one_error_naming_file_and_limit(tmp_path):
    write_split(tmp_path, "train", 3)
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    # 400,000 images of 28 x 28 declared (314 MB, over MAX_IDX_FILE_BYTES) and 16 MiB of
    # zeros behind them: a ~16 KB file. Refused from the header, before inflating anything.
    header = bytes([0, 0, 0x08, 3]) + np.asarray((400_000, 28, 28), dtype=">u4").tobytes()
    bomb.write_bytes(gzip.compress(header + bytes(16 << 20)))
    assert bomb.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(IdxFormatError) as info:
            load_dataset("mnist", data_dir=tmp_path, download=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert str(bomb) in message
    assert f"above the limit of {idx_datasets.MAX_IDX_FILE_BYTES} bytes" in message
    assert peak < 8 << 20, f"peak {peak} bytes"


@pytest.mark.parametrize("split", ["train", "test"])
def test_splits_with_different_image_sizes_fail_at_load_naming_both_shapes(tmp_path, split):
    write_split(tmp_path, "train", 4, shape=(4, 5))
    write_split(tmp_path, "test", 3, shape=(6, 5))
    with pytest.raises(IdxFormatError) as info:
        load_dataset("mnist", split=split, data_dir=tmp_path, download=False)
    message = str(info.value)
    assert "train and test images must have the same size" in message
    assert "train images are (4, 5)" in message and "test images are (6, 5)" in message
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in message
    assert str(tmp_path / "t10k-images-idx3-ubyte.gz") in message


def test_splits_in_different_folders_are_compared_too(tmp_path):
    # The test split the run would evaluate on sits in the cache; the train split in data_dir.
    write_split(tmp_path / "mine", "train", 4, shape=(4, 5))
    write_split(tmp_path / "cache" / "ebmlab" / "mnist", "test", 3, shape=(5, 4))
    with pytest.raises(
        IdxFormatError, match=r"train images are \(4, 5\).*test images are \(5, 4\)"
    ):
        load_dataset("mnist", data_dir=tmp_path / "mine", download=False)
    # Matching sizes load, and a missing other split is no error (nothing to compare).
    write_split(tmp_path / "mine", "test", 3, shape=(4, 5))
    assert load_dataset("mnist", data_dir=tmp_path / "mine", download=False).image_shape == (4, 5)
    write_split(tmp_path / "alone", "train", 2, shape=(3, 3))
    (tmp_path / "cache" / "ebmlab" / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    assert load_dataset("mnist", data_dir=tmp_path / "alone", download=False).image_shape == (3, 3)
