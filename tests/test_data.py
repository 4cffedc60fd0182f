"""vgg_book.data: IDX parsing and validation on small files made here, and the real data set."""

import gzip
import hashlib
import os
import struct

import numpy as np
import pytest
import torch

from vgg_book import data
from vgg_book.data import DataError, parse_idx, read_idx_file


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_split(folder, n=5, gz=True, labels=None, split="train"):
    """Write a tiny image/label pair in Fashion-MNIST's file names; return the arrays."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8) if labels is None else labels
    for stem, arr in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte", labels)):
        raw = idx_bytes(arr)
        path = folder / (stem + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(raw) if gz else raw)
    return images, labels


def tiny_files(monkeypatch, folder, n=5, **kw):
    """Point data.FILES at hashes of tiny files so that the loader accepts them."""
    images, labels = write_split(folder, n=n, **kw)
    write_split(folder, n=n, split="t10k", **{k: v for k, v in kw.items() if k != "split"})
    files = {}
    for path in folder.iterdir():
        stem = path.name.removesuffix(".gz")
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        files[stem] = (hashlib.sha256(raw).hexdigest(), parse_idx(raw).shape)
    monkeypatch.setattr(data, "FILES", files)
    return images, labels


def test_parse_idx_round_trip():
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(arr)), arr)


def test_bad_magic_number_is_named():
    raw = b"\x00\x00\x0d\x03" + b"\x00" * 20
    with pytest.raises(DataError, match="bad IDX magic number 0x00000d03"):
        parse_idx(raw, "x.idx")


def test_truncated_file_names_the_file_and_sizes(tmp_path):
    raw = idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-10]
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: length .* does not match its header"):
        read_idx_file(path)


def test_truncated_gzip_is_reported(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:-20])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: cannot be read or decompressed"):
        read_idx_file(path)


def test_hash_mismatch_is_reported(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(DataError, match="does not match the known SHA-256"):
        read_idx_file(path, sha256="0" * 64)


def test_loader_finds_root_and_returns_tensors(tmp_path, monkeypatch):
    images, labels = tiny_files(monkeypatch, tmp_path, n=7)
    x, y, names = data.load_fashion_mnist(train=True, root=tmp_path, download=False)
    assert x.dtype == torch.uint8 and x.shape == (7, 28, 28)
    assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
    np.testing.assert_array_equal(x.numpy(), images)
    assert names[0] == "T-shirt/top" and len(names) == 10


def test_uncompressed_files_and_env_variable(tmp_path, monkeypatch):
    tiny_files(monkeypatch, tmp_path, n=3, gz=False)
    monkeypatch.setenv("VGG_BOOK_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert data.find_fashion_mnist() == tmp_path
    x, _, _ = data.load_fashion_mnist(train=False, download=False)
    assert x.shape == (3, 28, 28)


def test_label_out_of_range(tmp_path, monkeypatch):
    tiny_files(monkeypatch, tmp_path, labels=np.array([1, 2, 12], np.uint8), n=3)
    with pytest.raises(DataError, match="label 12 out of range 0..9"):
        data.load_fashion_mnist(root=tmp_path, download=False)


def test_missing_data_offline_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("VGG_BOOK_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"looked in: .*nowhere.*dataset-fashion-mnist"):
        data.load_fashion_mnist(root=tmp_path / "empty", download=False)


def test_failed_download_leaves_nothing_behind(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(root, train, download):
        os.makedirs(f"{root}/FashionMNIST/raw", exist_ok=True)
        open(f"{root}/FashionMNIST/raw/train-images-idx3-ubyte", "wb").write(b"partial")
        raise RuntimeError("network unreachable")

    monkeypatch.delenv("VGG_BOOK_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(FileNotFoundError, match="download failed .*network unreachable"):
        data.load_fashion_mnist(root=tmp_path / "dl")
    assert list((tmp_path / "dl").rglob("*ubyte*")) == []


def test_prepare_torchvision_root(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    tiny_files(monkeypatch, tmp_path / "src", n=4)
    root = data.prepare_torchvision_root(tmp_path / "tv", source=tmp_path / "src")
    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(data.FILES)
    assert read_idx_file(raw / "train-images-idx3-ubyte").shape == (4, 28, 28)


@pytest.mark.skipif(data.find_fashion_mnist() is None, reason="Fashion-MNIST not installed")
def test_real_fashion_mnist_is_balanced():
    x, y, names = data.load_fashion_mnist(train=False, download=False)
    assert x.shape == (10000, 28, 28)
    assert torch.bincount(y).tolist() == [1000] * 10
