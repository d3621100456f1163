"""The standard CIFAR loop the paired trainer is compared with: the torchvision tutorial pipeline
(per-image PIL transforms, a DataLoader with workers, one model at a time, ``loss.item()`` every step)."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from bnlab.bench.machine import sync


class StandardCifar(torch.utils.data.Dataset):
    """CIFAR served as ``torchvision.datasets.CIFAR10`` serves it: one PIL image per item.

    ``images``: uint8 N x 3 x 32 x 32 (as ``bnlab.data.load`` returns them),
    kept as an N x 32 x 32 x 3 numpy array like torchvision's ``.data``. Each
    item is ``Image.fromarray``, then RandomCrop(32, padding) and
    RandomHorizontalFlip (when ``augment``), ToTensor and Normalize(mean, std).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, augment: bool = True,
                 crop_padding: int = 4, flip: bool = True):
        from torchvision import transforms

        self.data = images.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        self.targets = labels.cpu().tolist()
        steps = []
        if augment and crop_padding:
            steps.append(transforms.RandomCrop(32, padding=crop_padding))
        if augment and flip:
            steps.append(transforms.RandomHorizontalFlip())
        steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
        self.transform = transforms.Compose(steps)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def _endless(loader):
    while True:
        yield from loader


def build_model(cfg, kind: str, num_classes: int, device: torch.device) -> torch.nn.Module:
    """The model bnlab builds for arm ``kind``, with bnlab's initialization (same seed, same weights)."""
    from bnlab import init, models

    model = models.build(cfg.model, kind, cfg.norm, num_classes)
    init.initialize(model, cfg.init, seed=cfg.seed)
    return model.to(device)


def standard_loop(cfg, ds, device: torch.device, steps: int, warmup: int, workers: int) -> dict:
    """Train each arm's model in turn for ``warmup`` + ``steps`` steps; time the ``steps``."""
    from torch.utils.data import DataLoader

    from bnlab import optim

    aug = cfg.data.augment
    dataset = StandardCifar(ds.train_x, ds.train_y, ds.mean, ds.std, augment=True,
                            crop_padding=int(aug.crop_padding), flip=bool(aug.flip))
    loader = DataLoader(dataset, batch_size=int(cfg.data.batch_size), shuffle=True, num_workers=workers,
                        drop_last=True, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(int(cfg.seed)))
    batches = _endless(loader)
    torch.manual_seed(int(cfg.seed))
    seconds, losses = 0.0, {}
    for kind in cfg.arms:
        model = build_model(cfg, kind, ds.num_classes, device)
        model.train()
        opt, sched = optim.make(model.parameters(), cfg.optim, warmup + steps)

        for _ in range(warmup):
            standard_step(model, opt, sched, batches, device)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            last = standard_step(model, opt, sched, batches, device)
        sync(device)
        seconds += time.perf_counter() - t0
        losses[kind] = last
    batches = loader = None  # ends the persistent workers
    return {"seconds": seconds, "images": steps * int(cfg.data.batch_size) * len(cfg.arms), "losses": losses}


def standard_step(model, opt, sched, batches, device) -> float:
    """One step of the standard loop: next batch to the device, forward, backward, SGD, its loss."""
    x, y = next(batches)
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()  # the per-step host sync of a loop that prints its loss
