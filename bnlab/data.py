"""Datasets as uint8 tensors on the training device, batched by index.

The fast path never touches PIL or DataLoader workers (airbench's design):
the whole dataset lives on the device as a uint8 tensor N x 3 x 32 x 32, a
batch is an index tensor, and augmentation (random crop with padding,
horizontal flip) runs batched on tensors. One seeded ``torch.Generator``
decides the data order and every augmentation draw, so every arm of a pair sees
the very same batches in the same order.

CIFAR is read straight from the official "python version" folders
(``cifar-10-batches-py`` / ``cifar-100-python``). Their structure is validated
(keys, shapes, dtypes, label range) rather than their md5 sums, so a subset in
the official layout (such as the 5,085-image CIFAR-10 subset used offline) is
accepted and its image count reported. When the folder is missing and
``data.download=true``, torchvision downloads the official archive first.

``data=gaussian`` is the one dataset that is not images: Santurkar et al.'s synthetic
regression for their deep linear network (float vectors x ~ N(0, I), targets y = A x), drawn
from ``data.seed`` and held on the device like the images.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from bnlab.errors import BnlabError

log = logging.getLogger(__name__)

# Per-channel statistics of the full official training sets, used for
# normalization so a subset is normalized exactly like the full data.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

_CIFAR = {
    # name: (folder, train files, test files, label key, classes, mean, std, torchvision class)
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "labels",
        10,
        CIFAR10_MEAN,
        CIFAR10_STD,
        "CIFAR10",
    ),
    "cifar100": (
        "cifar-100-python",
        ["train"],
        ["test"],
        "fine_labels",
        100,
        CIFAR100_MEAN,
        CIFAR100_STD,
        "CIFAR100",
    ),
}


@dataclass
class Dataset:
    """A train/test split held as uint8 images and int64 labels on one device."""

    name: str
    train_x: torch.Tensor  # uint8, N x 3 x 32 x 32 (gaussian: float32 N x dim)
    train_y: torch.Tensor  # int64, N (gaussian: float32 targets N x dim)
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int  # gaussian: the output dimension
    mean: tuple[float, float, float] | None  # None: the inputs are used as they are (gaussian)
    std: tuple[float, float, float] | None
    source: str  # where it came from, for the records

    @property
    def train_size(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def test_size(self) -> int:
        return int(self.test_x.shape[0])

    def describe(self) -> dict:
        return {
            "name": self.name,
            "train_size": self.train_size,
            "test_size": self.test_size,
            "num_classes": self.num_classes,
            "source": self.source,
        }


def load(cfg, device: torch.device) -> Dataset:
    """Build the dataset named by ``cfg.name`` (cifar10, cifar100, synthetic, gaussian)."""
    if cfg.name == "synthetic":
        ds = _synthetic(cfg)
    elif cfg.name == "gaussian":
        ds = gaussian(cfg)
    elif cfg.name in _CIFAR:
        ds = _cifar(cfg)
    else:
        raise BnlabError(
            f"data={cfg.name} is not a known dataset; use data=cifar10, data=cifar100, data=synthetic or data=gaussian"
        )
    if cfg.get("train_size"):
        n = int(cfg.train_size)
        if n > ds.train_size:
            raise BnlabError(
                f"data.train_size={n} exceeds the {ds.train_size} training images found; "
                f"lower it or set data.train_size=null"
            )
        ds.train_x, ds.train_y = ds.train_x[:n], ds.train_y[:n]
    for attr in ("train_x", "train_y", "test_x", "test_y"):
        setattr(ds, attr, getattr(ds, attr).to(device))
    return ds


def fingerprint(ds: Dataset) -> dict:
    """What a run trains and tests on, by content: the image counts and a SHA-256 over images and labels.

    Where the files live (data.root) may differ between machines; this may not (a checkpoint records it).
    """
    h = hashlib.sha256()
    for t in (ds.train_x, ds.train_y, ds.test_x, ds.test_y):
        t = t.detach().contiguous().cpu()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())  # where one tensor ends and the next begins
        h.update(t.numpy())
    return {"train_size": ds.train_size, "test_size": ds.test_size, "sha256": h.hexdigest()}


# ---------------------------------------------------------------- CIFAR ----


def _find_folder(root: Path, folder: str) -> Path | None:
    """The official folder under root, or root itself if it is that folder."""
    for cand in (root / folder, root):
        if cand.is_dir() and cand.name == folder:
            return cand
    return None


def _cifar(cfg) -> Dataset:
    folder, train_files, test_files, label_key, classes, mean, std, tv_cls = _CIFAR[cfg.name]
    root = Path(str(cfg.root)).expanduser()
    path = _find_folder(root, folder)
    if path is None and cfg.get("download", False):
        path = _download(root, tv_cls, folder)
    if path is None:
        raise BnlabError(
            f"data.root={root}: no '{folder}' folder found; set BNLAB_DATA_DIR or data.root to "
            f"the directory that holds it, or pass data.download=true"
        )
    train_x, train_y = _read_batches(path, train_files, label_key, classes)
    test_x, test_y = _read_batches(path, test_files, label_key, classes)
    if len(test_y) == 0:  # every evaluation would divide by zero test images
        raise BnlabError(f"{path / test_files[0]} holds no images, so there is no test set to evaluate on; "
                         f"replace it with the official file")
    log.info(
        "%s: read %d training and %d test images from %s", cfg.name, len(train_y), len(test_y), path
    )
    return Dataset(cfg.name, train_x, train_y, test_x, test_y, classes, mean, std, str(path))


def _download(root: Path, tv_cls: str, folder: str) -> Path | None:
    import torchvision

    try:
        getattr(torchvision.datasets, tv_cls)(str(root), train=True, download=True)
    except Exception as exc:  # network errors come in many types
        raise BnlabError(
            f"data.download=true: downloading {tv_cls} into {root} failed ({exc.__class__.__name__}: "
            f"{exc}); put the official '{folder}' folder under data.root instead"
        ) from None
    return _find_folder(root, folder)


def _read_batches(path: Path, files: list[str], label_key: str, classes: int):
    xs, ys = [], []
    for name in files:
        f = path / name
        if not f.is_file():
            raise BnlabError(
                f"{f} is missing; the folder must hold {', '.join(files)} (official CIFAR layout)"
            )
        try:
            with open(f, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            data, labels = entry["data"], entry[label_key]
            x = torch.as_tensor(data)
            kind = _label_kind(labels)
            y = torch.as_tensor(labels, dtype=torch.int64)
        except Exception as exc:
            raise BnlabError(
                f"{f} is corrupt or truncated ({exc.__class__.__name__}); "
                f"replace it with the official file (re-download)"
            ) from None
        if kind is not None:  # int64 conversion would make bools 0/1 (2 classes) and truncate floats
            raise BnlabError(f"{f}: '{label_key}' must be integers, found {kind}; "
                             f"replace it with the official file")
        if x.dtype != torch.uint8 or x.ndim != 2 or x.shape[1] != 3072:
            raise BnlabError(
                f"{f}: 'data' must be uint8 N x 3072, found {x.dtype} {tuple(x.shape)}; "
                f"replace it with the official file"
            )
        if y.shape != (x.shape[0],) or (len(y) and (y.min() < 0 or y.max() >= classes)):
            raise BnlabError(
                f"{f}: labels must be {x.shape[0]} ints in 0..{classes - 1}; "
                f"replace it with the official file"
            )
        xs.append(x.view(-1, 3, 32, 32))
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def _label_kind(labels) -> str | None:
    """None if ``labels`` are all integers (a list of ints, as in the official files, or an integer
    array), else what was found instead (bools, floats...)."""
    import numpy as np

    if isinstance(labels, (np.ndarray, torch.Tensor)):
        dtype = str(labels.dtype)
        return None if dtype.removeprefix("torch.").startswith(("int", "uint")) else f"{dtype} values"
    bad = next((v for v in labels if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))), None)
    return None if bad is None else f"{type(bad).__name__} values such as {bad!r}"


# ------------------------------------------------------------ synthetic ----


def _synthetic(cfg) -> Dataset:
    """A small learnable CIFAR-shaped set, generated offline for smoke tests.

    Each class has a random smooth prototype image; samples are the prototype
    plus pixel noise, so a CNN learns it in a few dozen steps.
    """
    g = torch.Generator().manual_seed(int(cfg.get("seed", 1234)))
    classes = int(cfg.num_classes)
    protos = torch.rand(classes, 3, 8, 8, generator=g)
    protos = torch.nn.functional.interpolate(protos, size=32, mode="bilinear", align_corners=False)

    def sample(n):
        y = torch.randint(0, classes, (n,), generator=g)
        x = protos[y] + float(cfg.noise) * torch.randn(n, 3, 32, 32, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    train_x, train_y = sample(int(cfg.num_train))
    test_x, test_y = sample(int(cfg.num_test))
    return Dataset(
        "synthetic", train_x, train_y, test_x, test_y, classes, (0.5,) * 3, (0.25,) * 3, "generated"
    )


def gaussian(cfg) -> Dataset:
    """Santurkar et al. 2018's DLN data: x ~ N(0, I_dim), target y = A x with A ~ N(0, 1)^(dim x dim).

    Everything (A, then the training and the test inputs) comes from one generator seeded with
    ``data.seed``: the same seed gives the same tensors. Noise-free, as in the paper.
    """
    dim, n_train, n_test = int(cfg.dim), int(cfg.num_train), int(cfg.num_test)
    for key, v in (("dim", dim), ("num_train", n_train), ("num_test", n_test)):
        if v <= 0:
            raise BnlabError(f"data.{key}={v} must be > 0; pass e.g. data.{key}=10")
    g = torch.Generator().manual_seed(int(cfg.seed))
    a = torch.randn(dim, dim, generator=g)
    train_x = torch.randn(n_train, dim, generator=g)
    test_x = torch.randn(n_test, dim, generator=g)
    return Dataset("gaussian", train_x, train_x @ a.T, test_x, test_x @ a.T, dim, None, None,
                   f"generated (seed {int(cfg.seed)})")


# ------------------------------------------------------ batches on device ----


class Batches:
    """Endless stream of training batches drawn by index from a Dataset.

    Each epoch is a permutation of the training set from one generator; the
    last incomplete batch is dropped so every step sees ``batch_size`` images
    (BN statistics depend on it). Augmentation draws come from the same
    generator, so the stream is a pure function of the seed.
    """

    def __init__(self, ds: Dataset, batch_size: int, seed: int, augment=None, channels_last=False):
        if batch_size <= 0:
            raise BnlabError(f"data.batch_size={batch_size} must be > 0; pass e.g. data.batch_size=128")
        if batch_size > ds.train_size:
            raise BnlabError(
                f"data.batch_size={batch_size} exceeds the {ds.train_size} training images; "
                f"lower data.batch_size"
            )
        self.ds, self.batch_size = ds, batch_size
        self.augment = augment
        self.channels_last = channels_last
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_per_epoch = ds.train_size // batch_size
        self.device = ds.train_x.device
        self._scale = self._shift = None  # vectors (gaussian) are used as they are
        if ds.mean is not None:
            mean = torch.tensor(ds.mean, device=self.device).view(1, 3, 1, 1)
            std = torch.tensor(ds.std, device=self.device).view(1, 3, 1, 1)
            # x_norm = x_uint8 * scale + shift, one fused multiply-add per batch
            self._scale, self._shift = 1.0 / (255.0 * std), -mean / std
        self._order = torch.empty(0, dtype=torch.int64)
        self._pos = 0

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pos + self.batch_size > len(self._order):
            # drawn on the CPU (the same order on any device), moved once per epoch, not once per step
            self._order = torch.randperm(self.ds.train_size, generator=self.generator).to(self.device)
            self._pos = 0
        idx = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        x = self.ds.train_x[idx]
        if self.augment is not None:
            x = augment_batch(x, self.augment, self.generator)
        return self.normalize(x), self.ds.train_y[idx]

    def state_dict(self) -> dict:
        """Where the stream is: the generator, this epoch's order and the position in it (for resume)."""
        return {"generator": self.generator.get_state(), "order": self._order.cpu().clone(), "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._order, self._pos = state["order"].to(self.device).clone(), int(state["pos"])

    def normalize(self, x_uint8: torch.Tensor) -> torch.Tensor:
        if self._scale is None:
            return x_uint8
        x = x_uint8.float() * self._scale + self._shift
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def test_batches(self, batch_size: int = 500):
        """The test set in order, normalized, in chunks."""
        for i in range(0, self.ds.test_size, batch_size):
            yield (
                self.normalize(self.ds.test_x[i : i + batch_size]),
                self.ds.test_y[i : i + batch_size],
            )


def augment_batch(x: torch.Tensor, cfg, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip, batched on uint8 tensors.

    Draws come from ``generator`` (on the CPU, so the stream is the same on any
    device) and are moved to x's device.
    """
    n, _, h, w = x.shape
    pad = int(cfg.get("crop_padding", 0) or 0)
    if pad > 0:
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
        cols = (dx[:, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
        batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        chans = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
        x = padded[batch, chans, rows, cols]
    if cfg.get("flip", False):
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device).view(n, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
    return x
