"""Fashion-MNIST: find it, parse its IDX files, and check them.

The IDX format (LeCun's MNIST page) is small enough to read by hand: a big-endian header
(magic number, one 32-bit size per dimension) followed by the raw uint8 values. Each file is
checked against the SHA-256 of its decompressed content, so a re-compressed copy (Debian's)
is accepted and a truncated or altered one is not.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

__all__ = ["CLASS_NAMES", "FILES", "DataError", "parse_idx", "read_idx_file",
           "find_fashion_mnist", "check_data_root", "load_fashion_mnist", "SEARCH_ENV"]

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

#: file stem -> (SHA-256 of the decompressed bytes, expected shape)
FILES = {
    "train-images-idx3-ubyte": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                                (60000, 28, 28)),
    "train-labels-idx1-ubyte": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                                (60000,)),
    "t10k-images-idx3-ubyte": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                               (10000, 28, 28)),
    "t10k-labels-idx1-ubyte": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                               (10000,)),
}
SEARCH_ENV = "VGG_BOOK_DATA"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_UBYTE = 0x08  # the only element type these files use


class DataError(ValueError):
    """A data file is missing, truncated or not what it claims to be."""


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an uncompressed IDX file of unsigned bytes into a numpy array."""
    if len(raw) < 4:
        raise DataError(f"{name}: {len(raw)} bytes is too short for an IDX header (need >= 4)")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != IDX_UBYTE or not 1 <= ndim <= 4:
        raise DataError(f"{name}: bad IDX magic number 0x{raw[:4].hex()}; expected 0x00000801 "
                        "(labels) or 0x00000803 (images): not an uncompressed IDX file of bytes")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header ({len(raw)} bytes, need {header})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(f"{name}: length {len(raw)} bytes does not match its header "
                        f"(dimensions {shape} need {expected} bytes): the file is truncated "
                        "or corrupt; delete it and fetch it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                return gzip.decompress(f.read())
            return f.read()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot be read or decompressed ({e}); the file is "
                        "truncated or corrupt: delete it and fetch it again") from None


def read_idx_file(path: Union[str, os.PathLike], sha256: Optional[str] = None,
                  shape: Optional[tuple] = None) -> np.ndarray:
    """Read an IDX file (gzip or not), check its hash and shape, and return the array."""
    path = Path(path)
    raw = _read_bytes(path)
    array = parse_idx(raw, str(path))
    if shape is not None and array.shape != tuple(shape):
        raise DataError(f"{path}: dimensions {array.shape}, expected {tuple(shape)}")
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise DataError(f"{path}: content does not match the known SHA-256 of Fashion-MNIST's "
                        f"{path.name.split('.')[0]}; the file is corrupt or a different data set")
    return array


def _candidates(root: Optional[Union[str, os.PathLike]]) -> list[Path]:
    dirs = []
    if root is not None:
        dirs.append(Path(root))
    if os.environ.get(SEARCH_ENV):
        dirs.append(Path(os.environ[SEARCH_ENV]))
    dirs += [Path("data"), SYSTEM_DIR]
    out = []
    for d in dirs:  # each directory, and the layout torchvision uses below it
        out += [d, d / "FashionMNIST" / "raw", d / "fashion-mnist"]
    return out


def _file_in(directory: Path, stem: str) -> Optional[Path]:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def find_fashion_mnist(root: Optional[Union[str, os.PathLike]] = None) -> Optional[Path]:
    """The first directory, in search order, that holds all four Fashion-MNIST files."""
    for d in _candidates(root):
        if all(_file_in(d, stem) for stem in FILES):
            return d
    return None


def check_data_root(root: Union[str, os.PathLike]) -> Path:
    """The folder under a root given explicitly (``--data-root``) that holds the four files:
    ``root`` itself, ``root/FashionMNIST/raw`` or ``root/fashion-mnist``. A root that does not
    exist or lacks files is a ``DataError`` that names what is missing: no silent fallback to
    another copy."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a folder; give a folder "
                        "holding the four Fashion-MNIST files (" + ", ".join(FILES) + ", each "
                        "plain or .gz), or leave the root out to use the usual search")
    layouts = [root, root / "FashionMNIST" / "raw", root / "fashion-mnist"]
    for d in layouts:
        if all(_file_in(d, stem) for stem in FILES):
            return d
    best = max(layouts, key=lambda d: sum(_file_in(d, stem) is not None for stem in FILES))
    missing = [stem + "(.gz)" for stem in FILES if _file_in(best, stem) is None]
    raise DataError(f"data root {root} lacks Fashion-MNIST files: {best} has no "
                    f"{', '.join(missing)}")


def _download(dest: Path) -> Path:
    """Fetch with torchvision into a temp dir, verify, then move into place (Colab)."""
    from torchvision.datasets import FashionMNIST  # lazy: only needed online

    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        FashionMNIST(tmp, train=True, download=True)
        FashionMNIST(tmp, train=False, download=True)
        raw = Path(tmp) / "FashionMNIST" / "raw"
        for stem, (sha, shape) in FILES.items():
            read_idx_file(raw / stem, sha, shape)  # verify before anything is kept
        for stem in FILES:
            os.replace(raw / stem, dest / stem)
    return dest


def load_fashion_mnist(train: bool = True, root: Optional[Union[str, os.PathLike]] = None,
                       download: bool = True):
    """Load Fashion-MNIST as ``(images uint8 [N, 28, 28], labels int64 [N], class_names)``.

    Search order: ``root``, ``$VGG_BOOK_DATA``, ``./data``, ``/usr/share/datasets/fashion-mnist``
    (each also with torchvision's ``FashionMNIST/raw`` layout); then, if ``download``, torchvision
    downloads it into ``root`` or ``./data`` (verified before it is kept).
    """
    directory = find_fashion_mnist(root)
    if directory is None:
        looked = ", ".join(str(d) for d in _candidates(root)[::3])
        if not download:
            raise FileNotFoundError(
                f"Fashion-MNIST not found; looked in: {looked}. Install Debian's "
                "dataset-fashion-mnist, set $VGG_BOOK_DATA to a folder holding the four "
                "*-ubyte(.gz) files, or call with download=True when online")
        try:
            directory = _download(Path(root) if root is not None else Path("data"))
        except DataError:  # a corrupt download already says which file is wrong
            raise
        except Exception as e:  # network errors come in many types
            raise FileNotFoundError(
                f"Fashion-MNIST not found (looked in: {looked}) and the download failed "
                f"({type(e).__name__}: {e}). Offline, install Debian's dataset-fashion-mnist "
                "or set $VGG_BOOK_DATA to a folder holding the four *-ubyte(.gz) files") from None
    split = "train" if train else "t10k"
    arrays = {}
    for kind in ("images", "labels"):
        stem = f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
        sha, shape = FILES[stem]
        arrays[kind] = read_idx_file(_file_in(directory, stem), sha, shape)
    labels = arrays["labels"]
    if labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{directory}: label {labels.max()} out of range 0..{len(CLASS_NAMES) - 1}")
    images = torch.from_numpy(arrays["images"].copy())
    return images, torch.from_numpy(labels.astype(np.int64)), list(CLASS_NAMES)


def prepare_torchvision_root(root: Union[str, os.PathLike],
                             source: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Lay out decompressed IDX files in ``root/FashionMNIST/raw`` so torchvision's
    ``FashionMNIST(root, download=True)`` finds them without a download (used for d2l)."""
    src = find_fashion_mnist(source)
    if src is None:
        load_fashion_mnist(train=True, root=source)  # downloads or raises a clear error
        src = find_fashion_mnist(source)
    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem, (sha, shape) in FILES.items():
        target = raw / stem
        if target.is_file():
            continue
        data = _read_bytes(_file_in(src, stem))
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=stem + ".")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    return Path(root)
