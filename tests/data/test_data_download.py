"""Downloads of MNIST / Fashion-MNIST: https only, size-bounded, SHA-256-checked, atomic.

Nothing here touches the network: ``idx_datasets._open_url`` (the one function that
opens a connection) is replaced by a fake server reading from memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from ebmlab.data import DatasetNotFoundError, idx_datasets, load_dataset, write_idx
from ebmlab.data.idx_datasets import (
    IDX_DATASETS,
    DownloadError,
    PublishedFile,
    download_file,
    split_files,
)

URL = "https://mirror.example/train-images-idx3-ubyte.gz"


class FakeResponse(io.BytesIO):
    """What ``_open_url`` returns: a readable body with headers; counts the bytes read."""

    def __init__(self, body: bytes, headers: dict | None = None) -> None:
        super().__init__(body)
        self.headers = headers or {}
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


class EndlessResponse(FakeResponse):
    """A server that never stops sending zeros (up to ``limit`` bytes, to keep a broken
    implementation from hanging the test)."""

    def __init__(self, limit: int = 64 << 20) -> None:
        super().__init__(b"")
        self.limit = limit

    def read(self, size: int = -1) -> bytes:
        size = self.limit - self.bytes_read if size < 0 else min(size, self.limit - self.bytes_read)
        self.bytes_read += size
        return bytes(size)


@pytest.fixture(autouse=True)
def server(monkeypatch, tmp_path):
    """URL -> response; any URL not registered fails like an unreachable host."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    routes: dict[str, object] = {}
    opened: list[str] = []

    def fake_open(url, timeout):
        opened.append(url)
        if url not in routes:
            raise OSError(f"no route to {url}")
        response = routes[url]
        return response() if callable(response) else response

    monkeypatch.setattr(idx_datasets, "_open_url", fake_open)
    routes["opened"] = opened  # type: ignore[assignment]
    return routes


def published(body: bytes) -> dict:
    return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_matching_file_is_streamed_and_renamed_into_place(server, tmp_path):
    body = bytes(range(256)) * 5000  # 1.28 MB: several 1 MiB chunks
    server[URL] = FakeResponse(body, {"Content-Length": str(len(body))})
    destination = tmp_path / "data" / "train-images-idx3-ubyte.gz"
    download_file(URL, destination, **published(body))
    assert destination.read_bytes() == body
    assert leftovers(destination.parent) == [destination.name]  # no temporary file left


@pytest.mark.parametrize(
    "url",
    [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz",
        "file:///etc/passwd",
        "ftp://mirror.example/x.gz",
    ],
)
def test_only_https_is_allowed(server, tmp_path, url):
    with pytest.raises(DownloadError, match="only https downloads are allowed") as info:
        download_file(url, tmp_path / "x.gz", size=10, sha256="0" * 64)
    assert url in str(info.value) and isinstance(info.value, OSError)
    assert server["opened"] == []  # refused before any connection
    assert leftovers(tmp_path) == []


def test_a_redirect_away_from_https_is_refused():
    handler = idx_datasets._HttpsOnlyRedirects()
    request = urllib.request.Request(URL)
    with pytest.raises(DownloadError, match="redirects to http://evil.example/x.gz"):
        handler.redirect_request(request, None, 302, "Found", {}, "http://evil.example/x.gz")
    followed = handler.redirect_request(request, None, 302, "Found", {}, "https://b.example/x")
    assert followed.full_url == "https://b.example/x"


def test_a_digest_mismatch_is_refused_and_nothing_is_kept(server, tmp_path):
    good, tampered = b"a" * 1000, b"b" * 1000
    server[URL] = FakeResponse(tampered)
    destination = tmp_path / "data" / "f.gz"
    with pytest.raises(DownloadError) as info:
        download_file(URL, destination, **published(good))
    expected = hashlib.sha256(good).hexdigest()
    actual = hashlib.sha256(tampered).hexdigest()
    message = str(info.value)
    assert URL in message and f"SHA-256 {actual} does not match the published {expected}" in message
    assert leftovers(destination.parent) == []


def test_an_endless_body_is_cut_at_the_size_bound(server, tmp_path):
    response = EndlessResponse()
    server[URL] = response
    destination = tmp_path / "f.gz"
    with pytest.raises(DownloadError, match="more than the expected 1000 bytes arrived"):
        download_file(URL, destination, size=1000, sha256="0" * 64)
    # One chunk past the bound at most, not the 64 MiB the server would send.
    assert response.bytes_read <= 1000 + (1 << 20)
    assert leftovers(tmp_path) == []


def test_an_announced_oversize_body_is_refused_before_reading(server, tmp_path):
    response = FakeResponse(b"x" * 10, {"Content-Length": str(10**12)})
    server[URL] = response
    with pytest.raises(
        DownloadError, match=f"server announces {10**12} bytes; expected the 10-byte"
    ):
        download_file(URL, tmp_path / "data" / "f.gz", size=10, sha256="0" * 64)
    assert response.bytes_read == 0 and not (tmp_path / "data").exists()


def test_a_short_body_is_refused(server, tmp_path):
    server[URL] = FakeResponse(b"x" * 10)
    with pytest.raises(DownloadError, match="got 10 bytes; expected 11"):
        download_file(URL, tmp_path / "f.gz", size=11, sha256="0" * 64)
    assert leftovers(tmp_path) == []


def test_an_interrupted_transfer_leaves_no_temporary_file(server, tmp_path):
    class Broken(FakeResponse):
        def read(self, size=-1):
            if self.bytes_read:
                raise TimeoutError("read timed out")
            return super().read(size)

    server[URL] = Broken(bytes(3 << 20))
    with pytest.raises(TimeoutError):
        download_file(URL, tmp_path / "f.gz", size=3 << 20, sha256="0" * 64)
    assert leftovers(tmp_path) == []


def test_an_existing_file_is_replaced_only_by_a_verified_one(server, tmp_path):
    destination = tmp_path / "f.gz"
    destination.write_bytes(b"old")
    server[URL] = FakeResponse(b"bad body")
    with pytest.raises(DownloadError):
        download_file(URL, destination, size=8, sha256="0" * 64)
    assert destination.read_bytes() == b"old"


@pytest.mark.parametrize("name", sorted(IDX_DATASETS))
def test_every_file_has_a_published_size_and_digest_and_every_mirror_is_https(name):
    spec = IDX_DATASETS[name]
    assert spec.mirrors and all(m.startswith("https://") and m.endswith("/") for m in spec.mirrors)
    names = {file for split in ("train", "test") for file in split_files(split)}
    assert set(spec.files) == names
    for file in spec.files.values():
        assert re.fullmatch("[0-9a-f]{64}", file.sha256)
        assert 4_000 < file.size < 30_000_000  # the four files of each set: 4.5 KB to 26 MB


def test_published_digests_differ_from_debian_recompressed_files():
    """Debian's files are the same data, recompressed: local files are not digest-checked."""
    folder = Path("/usr/share/datasets/fashion-mnist")
    if not folder.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist not installed")
    spec = IDX_DATASETS["fashion-mnist"]
    for file_name, file in spec.files.items():
        local = (folder / file_name).read_bytes()
        # The original gzip header holds the file name (23-24 bytes), Debian's does not.
        assert file.size - len(local) == len(file_name.removesuffix(".gz")) + 1


def serve_split(server, tmp_path, spec, split, *, shape=(4, 5), n=6):
    """Write a split's files, serve them from the spec's last mirror, and pin their digests."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "server"
    folder.mkdir(exist_ok=True)
    images_name, labels_name = split_files(split)
    write_idx(folder / images_name, rng.integers(0, 256, (n, *shape), dtype=np.uint8))
    write_idx(folder / labels_name, rng.integers(0, 10, n).astype(np.uint8))
    files = dict(spec.files)
    for file_name in (images_name, labels_name):
        body = (folder / file_name).read_bytes()
        files[file_name] = PublishedFile(**published(body))
        server[spec.mirrors[-1] + file_name] = lambda body=body: FakeResponse(body)
    return dataclasses.replace(spec, files=files, system_dirs=())


def test_load_dataset_falls_back_to_the_next_mirror_on_a_bad_file(server, tmp_path, monkeypatch):
    spec = serve_split(server, tmp_path, IDX_DATASETS["fashion-mnist"], "train")
    monkeypatch.setitem(IDX_DATASETS, "fashion-mnist", spec)
    images_name, _ = split_files("train")
    server[spec.mirrors[0] + images_name] = lambda: FakeResponse(b"tampered")
    data = load_dataset("fashion-mnist", data_dir=tmp_path / "data")
    assert len(data) == 6 and data.image_shape == (4, 5)
    expected = tmp_path / "server" / images_name
    assert (tmp_path / "data" / images_name).read_bytes() == expected.read_bytes()
    assert sorted(leftovers(tmp_path / "data")) == sorted(split_files("train"))


def test_load_dataset_reports_a_mismatch_on_every_mirror(server, tmp_path, monkeypatch):
    spec = serve_split(server, tmp_path, IDX_DATASETS["mnist"], "test")
    images_name, _ = split_files("test")
    pinned = dict(spec.files)
    pinned[images_name] = dataclasses.replace(pinned[images_name], sha256="f" * 64)
    monkeypatch.setitem(IDX_DATASETS, "mnist", dataclasses.replace(spec, files=pinned))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", split="test", data_dir=tmp_path / "data")
    message = str(info.value)
    assert f"does not match the published {'f' * 64}" in message
    assert all(mirror + images_name in message for mirror in spec.mirrors)
    assert leftovers(tmp_path / "data") == []
    assert isinstance(info.value, FileNotFoundError)  # the CLI's exit 2


def test_size_and_digest_arguments_are_checked(server, tmp_path):
    with pytest.raises(ValueError, match="size must be a positive integer; got 0"):
        download_file(URL, tmp_path / "f.gz", size=0, sha256="0" * 64)
    with pytest.raises(ValueError, match="sha256 must be 64 lower-case hex digits; got 'ABC'"):
        download_file(URL, tmp_path / "f.gz", size=1, sha256="ABC")
    assert server["opened"] == []
