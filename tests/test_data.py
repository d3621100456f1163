"""The loader on the real CIFAR-10 subset: structure, labels, batching, augmentation."""

import pickle

import pytest
import torch
from omegaconf import OmegaConf

from bnlab import data
from bnlab.errors import BnlabError


def cifar_cfg(root, **kw):
    return OmegaConf.create({"name": "cifar10", "root": str(root), "download": False, **kw})


def test_reads_official_layout_subset(cifar_dir):
    ds = data.load(cifar_cfg(cifar_dir), torch.device("cpu"))
    assert (ds.train_size, ds.test_size, ds.num_classes) == (5085, 1017, 10)
    assert ds.train_x.dtype == torch.uint8 and ds.train_x.shape == (5085, 3, 32, 32)
    # The subset keeps the official order: frog, truck, truck, deer, automobile.
    meta = pickle.load(open(cifar_dir / "cifar-10-batches-py/batches.meta", "rb"), encoding="latin1")
    names = [meta["label_names"][i] for i in ds.train_y[:5].tolist()]
    assert names == ["frog", "truck", "truck", "deer", "automobile"]
    # roughly 100 images per class in every file (data README)
    counts = torch.bincount(ds.test_y, minlength=10)
    assert counts.min() > 50 and counts.sum() == 1017


def test_root_may_be_the_batches_folder_itself(cifar_dir):
    ds = data.load(cifar_cfg(cifar_dir / "cifar-10-batches-py"), torch.device("cpu"))
    assert ds.train_size == 5085


def test_missing_folder_names_the_key_and_fix(tmp_path):
    with pytest.raises(BnlabError, match=r"data.root=.*no 'cifar-10-batches-py'.*BNLAB_DATA_DIR"):
        data.load(cifar_cfg(tmp_path), torch.device("cpu"))


def test_truncated_batch_file_is_reported(corrupt_cifar):
    with pytest.raises(BnlabError, match=r"data_batch_3 is corrupt or truncated"):
        data.load(cifar_cfg(corrupt_cifar), torch.device("cpu"))


def test_wrong_shape_is_reported(tmp_path, cifar_dir):
    import shutil

    dst = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_dir / "cifar-10-batches-py", dst)
    with open(dst / "test_batch", "wb") as fh:
        pickle.dump({"data": torch.zeros(4, 100, dtype=torch.uint8).numpy(), "labels": [0] * 4}, fh)
    with pytest.raises(BnlabError, match=r"test_batch: 'data' must be uint8 N x 3072"):
        data.load(cifar_cfg(tmp_path), torch.device("cpu"))


def synthetic(**kw):
    cfg = OmegaConf.create({"name": "synthetic", "num_classes": 10, "num_train": 300,
                            "num_test": 50, "noise": 0.1, "seed": 1, **kw})
    return data.load(cfg, torch.device("cpu"))


def test_batches_are_a_function_of_the_seed_and_cover_each_epoch():
    ds = synthetic()
    a, b = data.Batches(ds, 64, seed=3), data.Batches(ds, 64, seed=3)
    seen = []
    for _ in range(a.steps_per_epoch):
        (xa, ya), (xb, yb) = next(a), next(b)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        seen.append(xa)
    assert a.steps_per_epoch == 300 // 64  # drop_last: every batch is full
    # within an epoch no image repeats
    flat = torch.cat(seen).flatten(1)
    assert torch.unique(flat, dim=0).shape[0] == 64 * a.steps_per_epoch
    c = data.Batches(ds, 64, seed=4)
    assert not torch.equal(next(c)[0], next(data.Batches(ds, 64, seed=3))[0])


def test_normalization_matches_the_dataset_statistics():
    ds = synthetic()
    b = data.Batches(ds, 300, seed=0)
    x, _ = next(b)
    mean = torch.tensor(ds.mean).view(1, 3, 1, 1)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    raw = ds.train_x[b._order[:300]].float() / 255
    torch.testing.assert_close(x, (raw - mean) / std)


def test_augmentation_crop_and_flip_are_exact():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.int64).view(2, 3, 32, 32).to(torch.uint8)
    g = torch.Generator().manual_seed(0)
    none = data.augment_batch(x, OmegaConf.create({"crop_padding": 0, "flip": False}), g)
    assert torch.equal(none, x)
    out = data.augment_batch(x, OmegaConf.create({"crop_padding": 4, "flip": True}), g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    # replay the same draws: each output is the padded image shifted by (dy, dx), maybe flipped
    g = torch.Generator().manual_seed(0)
    dy = torch.randint(0, 9, (2,), generator=g)
    dx = torch.randint(0, 9, (2,), generator=g)
    flip = torch.rand(2, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(2):
        crop = padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)


def test_batch_size_checks():
    ds = synthetic()
    with pytest.raises(BnlabError, match=r"data.batch_size=0 must be > 0"):
        data.Batches(ds, 0, seed=0)
    with pytest.raises(BnlabError, match=r"data.batch_size=301 exceeds the 300 training images"):
        data.Batches(ds, 301, seed=0)
