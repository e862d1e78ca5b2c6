"""CIFAR-10, CIFAR-100 and SVHN from small files the tests write in each format.

The published record counts (50,000 / 10,000, SVHN's 73,257 / 26,032) are replaced
by small ones through the registries' size tables, so every path through
``load_dataset`` runs on a few records. Nothing touches the network.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from ebmlab.cli.app import main
from ebmlab.data import (
    DataFormatError,
    Dataset,
    DatasetNotFoundError,
    dataset_info,
    idx_datasets,
    list_datasets,
    load_dataset,
    read_cifar_file,
    read_svhn_file,
)
from ebmlab.data import svhn as svhn_module
from ebmlab.data.cifar import CIFAR_DATASETS, parse_cifar_records
from ebmlab.viz.images import save_image_grid, tile_images

N_TRAIN, N_TEST = 10, 3  # CIFAR-10: 2 records in each of the 5 train batches


@pytest.fixture(autouse=True)
def small_and_offline(tmp_path, monkeypatch):
    """Cache inside tmp_path, small record counts, and any network use fails the test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, spec in CIFAR_DATASETS.items():
        monkeypatch.setitem(
            CIFAR_DATASETS, name, dataclasses.replace(spec, n_train=N_TRAIN, n_test=N_TEST)
        )
    monkeypatch.setitem(svhn_module.SVHN_SIZES, "train", 5)
    monkeypatch.setitem(svhn_module.SVHN_SIZES, "test", 2)

    def no_network(url, timeout):
        pytest.fail(f"test opened {url}")

    monkeypatch.setattr(idx_datasets, "_open_url", no_network)


# ----- writing files in the published formats ---------------------------------------------


def cifar_records(n, *, dataset="cifar10", seed=0):
    """(file bytes, pixels uint8 (n, 3, 32, 32), labels (n, n_label_bytes))."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    counts = CIFAR_DATASETS[dataset].label_counts
    labels = np.stack([rng.integers(0, c, size=n) for c in counts], axis=1).astype(np.uint8)
    # A record: the label byte(s), then the red, green and blue planes, each row by row.
    records = np.concatenate([labels, pixels.reshape(n, -1)], axis=1)
    return records.tobytes(), pixels, labels.astype(np.int64)


def split_files(dataset, split):
    spec = CIFAR_DATASETS[dataset]
    return spec.folder, spec.files[split], spec.records_per_file(split)


def write_cifar(folder: Path, dataset="cifar10", *, layout="extracted"):
    """Write both splits as the extracted folder, loose files or the .tar.gz; return them."""
    spec, written, members = CIFAR_DATASETS[dataset], {}, {}
    for seed, split in enumerate(("train", "test")):
        _, names, per_file = split_files(dataset, split)
        parts = [
            cifar_records(per_file, dataset=dataset, seed=10 * seed + i) for i in range(len(names))
        ]
        written[split] = (
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )
        for name, (content, _, _) in zip(names, parts, strict=True):
            members[f"{spec.folder}/{name}"] = content
    if layout == "archive":
        members[f"{spec.folder}/readme.html"] = b"<html>not read</html>"
        write_tar(folder / spec.archive, members)
    else:
        base = folder / spec.folder if layout == "extracted" else folder
        base.mkdir(parents=True, exist_ok=True)
        for member, content in members.items():
            (base / member.split("/")[-1]).write_bytes(content)
    return written


def write_tar(path: Path, members: dict[str, bytes], *, links: dict[str, str] | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)


def svhn_arrays(n, *, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, size=(n, 1)).astype(np.uint8)
    y[0, 0] = 10  # digit 0, as SVHN writes it
    return x, y


def write_svhn(folder: Path, split="train", *, n=5, compress=True, x=None, y=None, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    default_x, default_y = svhn_arrays(n, seed=seed)
    x, y = default_x if x is None else x, default_y if y is None else y
    path = folder / f"{split}_32x32.mat"
    scipy.io.savemat(path, {"X": x, "y": y}, do_compression=compress)
    return path, x, y


# ----- CIFAR ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["extracted", "loose", "archive"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_round_trips_pixels_and_labels_exactly(tmp_path, layout, split):
    written = write_cifar(tmp_path, layout=layout)
    data = load_dataset("cifar10", split=split, data_dir=tmp_path)
    pixels, labels = written[split]
    assert isinstance(data, Dataset) and data.image_shape == (3, 32, 32)
    assert data.images.shape == (len(pixels), 3072) and data.images.dtype == torch.float32
    # Row n reshapes to (channel, height, width) with channel 0 red: the record's byte order.
    expected = torch.from_numpy(pixels).to(torch.float32).div(255.0)
    assert torch.equal(data.images.reshape(-1, 3, 32, 32), expected)
    assert torch.equal(data.labels, torch.from_numpy(labels[:, 0]))
    assert data.n_channels == 3 and data.extra_labels == {}
    if layout == "archive":
        assert data.source == str(tmp_path / "cifar-10-binary.tar.gz")
        # Read in memory: nothing extracted next to the archive.
        assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-binary.tar.gz"]


def test_cifar_channel_planes_are_red_green_blue(tmp_path):
    # One record, 1 label byte, then 1,024 bytes of red, of green, of blue.
    record = bytes([7]) + bytes([200]) * 1024 + bytes([100]) * 1024 + bytes([50]) * 1024
    pixels, labels = parse_cifar_records(record, dataset="cifar10", source="mem")
    assert labels.tolist() == [[7]] and pixels.shape == (1, 3072)
    image = pixels.reshape(3, 32, 32)
    assert (image[0] == 200).all() and (image[1] == 100).all() and (image[2] == 50).all()


def test_cifar100_uses_the_fine_label_and_keeps_the_coarse_one(tmp_path):
    for layout, folder in (("extracted", tmp_path / "a"), ("archive", tmp_path / "b")):
        written = write_cifar(folder, "cifar100", layout=layout)
        data = load_dataset("cifar100", split="train", data_dir=folder)
        pixels, labels = written["train"]
        assert torch.equal(data.labels, torch.from_numpy(labels[:, 1]))  # fine, 0..99
        assert torch.equal(data.extra_labels["coarse"], torch.from_numpy(labels[:, 0]))
        assert torch.equal(
            (data.images * 255).round().to(torch.uint8).reshape(-1, 3, 32, 32),
            torch.from_numpy(pixels),
        )
    part = data.subset(torch.tensor([4, 1]))
    assert torch.equal(part.extra_labels["coarse"], data.extra_labels["coarse"][[4, 1]])


def test_found_in_data_dir_slash_name_and_in_the_cache(tmp_path):
    write_cifar(tmp_path / "mine" / "cifar10")
    assert len(load_dataset("cifar10", split="test", data_dir=tmp_path / "mine")) == N_TEST
    write_cifar(tmp_path / "cache" / "ebmlab" / "cifar100", "cifar100", layout="archive")
    assert len(load_dataset("cifar100")) == N_TRAIN  # no data_dir: the cache


def test_a_truncated_batch_is_named(tmp_path):
    write_cifar(tmp_path)
    batch = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    batch.write_bytes(batch.read_bytes()[:-100])
    with pytest.raises(DataFormatError, match="not a whole number of 3,073-byte") as error:
        load_dataset("cifar10", data_dir=tmp_path)
    assert str(batch) in str(error.value) and "truncated" in str(error.value)
    batch.write_bytes(batch.read_bytes()[:3073])  # a whole record short
    with pytest.raises(
        DataFormatError, match=r"data_batch_3.bin: truncated: holds 1 CIFAR-10 records; expected 2"
    ):
        load_dataset("cifar10", data_dir=tmp_path)


def test_the_full_counts_are_checked_by_default(tmp_path):
    content, _, _ = cifar_records(3)
    (tmp_path / "test_batch.bin").write_bytes(content)
    assert read_cifar_file(tmp_path / "test_batch.bin")[0].shape == (3, 3072)  # any count
    with pytest.raises(
        DataFormatError, match="truncated: holds 3 CIFAR-10 records; expected 10,000"
    ):
        read_cifar_file(tmp_path / "test_batch.bin", n_records=10_000)


@pytest.mark.parametrize(
    ("dataset", "column", "value", "message"),
    [
        ("cifar10", 0, 10, "label label 10; CIFAR-10 label labels are 0..9"),
        ("cifar100", 1, 100, "fine label 100; CIFAR-100 fine labels are 0..99"),
        ("cifar100", 0, 20, "coarse label 20; CIFAR-100 coarse labels are 0..19"),
    ],
)
def test_labels_out_of_range_are_refused(tmp_path, dataset, column, value, message):
    content, _, _ = cifar_records(3, dataset=dataset)
    record_bytes = CIFAR_DATASETS[dataset].record_bytes
    corrupt = bytearray(content)
    corrupt[record_bytes + column] = value  # record 1
    path = tmp_path / "x.bin"
    path.write_bytes(bytes(corrupt))
    with pytest.raises(DataFormatError, match=f"{path}: record 1 has {message}"):
        read_cifar_file(path, dataset=dataset)


def test_cifar100_file_read_as_cifar10_is_refused(tmp_path):
    content, _, _ = cifar_records(3, dataset="cifar100")
    (tmp_path / "train.bin").write_bytes(content)
    with pytest.raises(DataFormatError, match="not a whole number of 3,073-byte CIFAR-10 records"):
        read_cifar_file(tmp_path / "train.bin", dataset="cifar10")


class _Tripwire:
    """Unpickling this touches a file: the tests check that it never happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("where", ["parent", "inside"])
def test_the_pickle_distribution_is_refused_without_unpickling(tmp_path, where):
    marker = tmp_path / "unpickled"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "test_batch", "batches.meta"):
        (folder / name).write_bytes(pickle.dumps(_Tripwire(marker)))
    data_dir = tmp_path if where == "parent" else folder
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("cifar10", data_dir=data_dir)
    message = str(error.value)
    assert "Python version" in message and "does not read" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in message
    assert str(folder) in message
    assert not marker.exists()
    info = dataset_info("cifar10", data_dir=data_dir)
    assert info["available"] is False and "pickle" in info["how_to_get"]


def test_cifar100_pickle_archive_is_refused(tmp_path):
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"\x1f\x8b not read")
    with pytest.raises(DatasetNotFoundError, match="cifar-100-binary.tar.gz"):
        load_dataset("cifar100", split="test", data_dir=tmp_path)


@pytest.mark.parametrize(
    "bad_name", ["../evil.bin", "/tmp/evil.bin", "cifar-10-batches-bin/../../evil.bin"]
)
def test_an_archive_with_an_unsafe_member_name_is_refused(tmp_path, bad_name):
    content, _, _ = cifar_records(2)
    members = {bad_name: content}
    members.update({f"cifar-10-batches-bin/data_batch_{i}.bin": content for i in range(1, 6)})
    write_tar(tmp_path / "cifar-10-binary.tar.gz", members)
    with pytest.raises(DataFormatError, match="absolute path or '..'; refusing") as error:
        load_dataset("cifar10", data_dir=tmp_path)
    assert repr(bad_name) in str(error.value) and "cifar-10-binary.tar.gz" in str(error.value)
    assert not (tmp_path.parent / "evil.bin").exists()


def test_an_archive_member_that_is_a_link_is_refused(tmp_path):
    content, _, _ = cifar_records(2)
    members = {f"cifar-10-batches-bin/data_batch_{i}.bin": content for i in range(2, 6)}
    write_tar(
        tmp_path / "cifar-10-binary.tar.gz",
        members,
        links={"cifar-10-batches-bin/data_batch_1.bin": "/etc/passwd"},
    )
    with pytest.raises(DataFormatError, match="data_batch_1.bin: not a regular file"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_a_cut_or_incomplete_archive_is_named(tmp_path):
    write_cifar(tmp_path, layout="archive")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=f"{archive}"):
        load_dataset("cifar10", data_dir=tmp_path)
    content, _, _ = cifar_records(2)
    write_tar(archive, {"cifar-10-batches-bin/data_batch_1.bin": content})
    with pytest.raises(DataFormatError, match="no member cifar-10-batches-bin/data_batch_2.bin"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_missing_cifar_names_folders_and_url(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("cifar10", split="test", data_dir=tmp_path)
    message = str(error.value)
    assert "cifar10 (test split) not found: need test_batch.bin" in message
    assert f"  {tmp_path}\n  {tmp_path / 'cifar10'}\n" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in message


# ----- SVHN ------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_svhn_maps_10_to_0_and_keeps_the_pixel_layout(tmp_path, compress):
    _, x, y = write_svhn(tmp_path, compress=compress)
    data = load_dataset("svhn", data_dir=tmp_path)
    assert data.image_shape == (3, 32, 32) and data.images.shape == (5, 3072)
    assert data.labels[0] == 0 and torch.equal(data.labels, torch.from_numpy(y[:, 0] % 10).long())
    assert set(data.labels.tolist()) <= set(range(10))
    # images[n].reshape(3, 32, 32)[c, i, j] == X[i, j, c, n] / 255
    expected = torch.from_numpy(x.transpose(3, 2, 0, 1).astype(np.float32) / 255.0)
    assert torch.equal(data.images.reshape(-1, 3, 32, 32), expected)
    assert data.images[2].reshape(3, 32, 32)[1, 4, 5] * 255 == float(x[4, 5, 1, 2])


def test_svhn_labels_stored_as_doubles_are_read(tmp_path):
    _, y = svhn_arrays(5)
    write_svhn(tmp_path, y=y.astype(np.float64))
    assert load_dataset("svhn", data_dir=tmp_path).labels.tolist() == (y[:, 0] % 10).tolist()


@pytest.mark.parametrize("bad", [0, 11])
def test_svhn_labels_outside_1_to_10_are_refused(tmp_path, bad):
    _, y = svhn_arrays(5)
    y[3, 0] = bad
    path, _, _ = write_svhn(tmp_path, y=y)
    with pytest.raises(
        DataFormatError, match=rf"{path}: y must hold the digits 1..10.*got {bad} at image 3"
    ):
        read_svhn_file(path)


def test_svhn_shapes_and_counts_are_checked(tmp_path):
    x, y = svhn_arrays(4)
    path, _, _ = write_svhn(tmp_path / "a", x=x[:28, :28], y=y)
    with pytest.raises(DataFormatError, match=r"X must be uint8 of shape \(32, 32, 3, N\)"):
        read_svhn_file(path)
    path, _, _ = write_svhn(tmp_path / "b", x=x, y=y[:3])
    with pytest.raises(DataFormatError, match=r"y must be numeric of shape \(4, 1\)"):
        read_svhn_file(path)
    write_svhn(tmp_path / "c", x=x, y=y)  # 4 images where the (patched) train split has 5
    with pytest.raises(
        DataFormatError, match="train_32x32.mat: truncated: holds 4 images; expected 5"
    ):
        load_dataset("svhn", data_dir=tmp_path / "c")


def test_svhn_huge_declared_shape_is_refused_before_loading(tmp_path, monkeypatch):
    path, x, _ = write_svhn(tmp_path, compress=False)
    dims = struct.pack("<4i", 32, 32, 3, 5)
    content = path.read_bytes()
    assert content.count(dims) == 1
    path.write_bytes(content.replace(dims, struct.pack("<4i", 32, 32, 3, 10**8)))

    def no_loadmat(*args, **kwargs):
        pytest.fail("loadmat was called on a file whose header is over the limit")

    monkeypatch.setattr(scipy.io, "loadmat", no_loadmat)
    with pytest.raises(DataFormatError, match="variable X declares 307,200,000,000 bytes"):
        read_svhn_file(path)


def test_svhn_rejects_files_that_are_not_mat_files(tmp_path):
    path = tmp_path / "train_32x32.mat"
    path.write_bytes(b"not a MAT-file at all" * 10)
    with pytest.raises(DataFormatError, match=f"{path}: not a MATLAB 5 MAT-file"):
        read_svhn_file(path)
    write_svhn(tmp_path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataFormatError, match=f"{path}: (malformed|unreadable) MAT-file"):
        read_svhn_file(path)


def test_missing_svhn_names_both_urls(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("svhn", split="test", data_dir=tmp_path)
    assert "svhn (test split) not found: need test_32x32.mat" in str(error.value)
    assert "http://ufldl.stanford.edu/housenumbers/test_32x32.mat" in str(error.value)


# ----- registry, CLI, grids ---------------------------------------------------------------


def test_registry_and_info(tmp_path):
    assert {"cifar10", "cifar100", "svhn"} <= set(list_datasets())
    write_cifar(tmp_path)
    assert load_dataset("CIFAR10", split="test", data_dir=tmp_path).name == "cifar10"
    info = dataset_info("cifar10", data_dir=tmp_path)
    assert info["available"] is True and info["shape"] == [3, 32, 32]
    assert info["n_features"] == 3072 and info["n_classes"] == 10
    assert info["found_at"] == str(tmp_path / "cifar-10-batches-bin")
    assert dataset_info("cifar100", data_dir=tmp_path)["available"] is False
    write_svhn(tmp_path, "train")
    half = dataset_info("svhn", data_dir=tmp_path)  # train only: not available
    assert half["available"] is False and half["source"] == {"train": str(tmp_path), "test": None}


def test_data_list_shows_missing_sets_with_how_to_get_them(tmp_path, capsys):
    write_cifar(tmp_path, "cifar100", layout="archive")
    try:
        main(["data", "list", "--data-dir", str(tmp_path)])
    except SystemExit as exit_:
        assert not exit_.code
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["cifar10"].split()[1] == "missing"
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in lines["cifar10"]
    assert lines["cifar100"].split()[1:] == ["available", str(tmp_path / "cifar-100-binary.tar.gz")]
    assert lines["svhn"].split()[1] == "missing"
    assert "http://ufldl.stanford.edu/housenumbers/train_32x32.mat" in lines["svhn"]


def test_tile_images_in_colour_and_grey():
    image = np.zeros((3, 2, 3))
    image[0, :, 0] = 1.0  # red left column
    image[2, :, 2] = 0.5  # half-blue right column
    grid = tile_images(image.reshape(1, -1), (3, 2, 3))
    assert grid.shape == (4, 5, 3)
    assert grid[1:3, 1].tolist() == [[1, 0, 0]] * 2 and grid[1:3, 3].tolist() == [[0, 0, 0.5]] * 2
    assert grid[0].tolist() == [[1, 1, 1]] * 5  # white padding
    grey = tile_images(np.arange(6.0).reshape(1, 6) / 5, (2, 3))
    assert grey.shape == (4, 5) and grey[2, 3] == 1.0
    assert tile_images(np.ones((1, 6)), (1, 2, 3)).shape == (4, 5)
    with pytest.raises(ValueError, match="1 or 3 channels; got \\(2, 2, 2\\)"):
        tile_images(np.ones((1, 8)), (2, 2, 2))


def test_colour_grid_file_shows_the_colours(tmp_path):
    import matplotlib.image

    # One CIFAR-like image: left half red, right half blue (channel-major row).
    image = np.zeros((3, 8, 8), dtype=np.float32)
    image[0, :, :4] = 1.0
    image[2, :, 4:] = 1.0
    path = save_image_grid(torch.from_numpy(image.reshape(1, -1)), (3, 8, 8), tmp_path / "g.png")
    png = matplotlib.image.imread(path)[..., :3]
    height, width = png.shape[:2]
    left, right = png[height // 2, int(width * 0.3)], png[height // 2, int(width * 0.7)]
    assert np.allclose(left, [1, 0, 0], atol=0.02) and np.allclose(right, [0, 0, 1], atol=0.02)


def test_dataset_accepts_channel_shapes_and_checks_extra_labels():
    images, labels = torch.zeros(2, 12), torch.zeros(2, dtype=torch.int64)
    data = Dataset(images, labels, (3, 2, 2), "x", "test", extra_labels={"coarse": labels + 1})
    assert data.n_channels == 3 and data.n_features == 12
    assert Dataset(images, labels, (3, 4), "x", "test").n_channels == 1
    with pytest.raises(ValueError, match=r"channels \* height \* width = 12 features"):
        Dataset(images, labels, (1, 3, 2, 2), "x", "test")
    with pytest.raises(
        TypeError, match=r"extra_labels\['coarse'\] must be an int64 tensor of shape \(2,\)"
    ):
        Dataset(images, labels, (3, 4), "x", "test", extra_labels={"coarse": labels[:1]})


def test_colour_images_reach_the_jem_backbone_and_flip_upside_down():
    """A (3, H, W) dataset builds a 3-channel JEM, and the flip OOD set flips rows, not colours."""
    import torch

    from ebmlab.data.ood import ood_inputs
    from ebmlab.experiments.jem import JEMData, JEMExperimentConfig, build_model

    shape = (3, 4, 4)
    x = torch.arange(2 * 48, dtype=torch.float32).reshape(2, 48)
    data = JEMData(x_train=x, y_train=torch.tensor([0, 1]), x_test=x, y_test=torch.tensor([0, 1]),
                   image_shape=shape, n_classes=2)  # fmt: skip
    config = JEMExperimentConfig(backbone="small-cnn", width=4)
    model = build_model(config, data)
    assert model.logits(x).shape == (2, 2)
    flipped = ood_inputs("flip", x, shape).reshape(2, *shape)
    original = x.reshape(2, *shape)
    assert torch.equal(flipped, original.flip(-2))  # rows reversed within each channel
