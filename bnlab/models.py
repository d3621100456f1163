"""Networks with a norm switch: CIFAR VGG-11/16, ResNet-20/32/56/110, a small CNN, and
Santurkar et al.'s deep linear network (DLN) for vector data.

Every conv is followed by ``norms.make(norm, ...)`` and then the ReLU (BN
after the conv, before the nonlinearity, as in Ioffe & Szegedy 2015). A conv
followed by a norm with its own shift has no bias (it would be redundant);
the unnormalized twin keeps the bias, initialized to zero like BN's beta.
Layers are named (``conv1``, ``norm1``, ...) identically in every arm, so
parameters can be matched by name across the pair.

``width`` multiplies every channel count, so CPU runs can use narrow networks.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from bnlab import lstm, norms
from bnlab.errors import BnlabError

VGG_LAYOUTS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}
# basic blocks per stage n: depth = 6n + 2 (He et al. 2016, CIFAR: 20, 32, 56, 110)
RESNET_DEPTHS = {"resnet20": 3, "resnet32": 5, "resnet56": 9, "resnet110": 18}
ARCHS = (*VGG_LAYOUTS, *RESNET_DEPTHS, "simple_cnn")  # the image networks; model=dln takes vectors
NETWORKS = (*ARCHS, "dln", lstm.ARCH)  # every model.arch


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def conv_block(cin: int, cout: int, norm: str, norm_cfg) -> list[tuple[str, nn.Module]]:
    return [
        ("conv", nn.Conv2d(cin, cout, 3, padding=1, bias=not norms.has_shift(norm))),
        ("norm", norms.make(norm, cout, 2, norm_cfg)),
        ("relu", nn.ReLU(inplace=True)),
    ]


class VGG(nn.Module):
    """CIFAR VGG (Simonyan & Zisserman 2015) with one linear classifier, as in Santurkar et al."""

    def __init__(self, layout, norm, norm_cfg, num_classes, width=1.0):
        super().__init__()
        layers, cin, i, p = [], 3, 0, 0
        for v in layout:
            if v == "M":
                p += 1
                layers.append((f"pool{p}", nn.MaxPool2d(2)))
                continue
            i += 1
            cout = _ch(v, width)
            layers += [(f"{k}{i}", m) for k, m in conv_block(cin, cout, norm, norm_cfg)]
            cin = cout
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    """He et al. 2016 CIFAR block; option-A shortcut (stride + zero channel padding, no params)."""

    def __init__(self, cin, cout, stride, norm, norm_cfg):
        super().__init__()
        bias = not norms.has_shift(norm)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = norms.make(norm, cout, 2, norm_cfg)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=bias)
        self.norm2 = norms.make(norm, cout, 2, norm_cfg)
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        short = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + short)


class ResNet(nn.Module):
    def __init__(self, blocks_per_stage, norm, norm_cfg, num_classes, width=1.0):
        super().__init__()
        c = [_ch(16, width), _ch(32, width), _ch(64, width)]
        self.stem = nn.Sequential(OrderedDict(conv_block(3, c[0], norm, norm_cfg)))
        stages, cin = [], c[0]
        for s, cout in enumerate(c):
            blocks = []
            for b in range(blocks_per_stage):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(BasicBlock(cin, cout, stride, norm, norm_cfg))
                cin = cout
            stages.append((f"stage{s + 1}", nn.Sequential(*blocks)))
        self.stages = nn.Sequential(OrderedDict(stages))
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SimpleCNN(nn.Module):
    """Three conv-norm-relu-pool blocks and a linear classifier: the quickest model."""

    def __init__(self, norm, norm_cfg, num_classes, width=1.0, channels=(32, 64, 128)):
        super().__init__()
        layers, cin = [], 3
        for i, c in enumerate(channels, start=1):
            cout = _ch(c, width)
            layers += [(f"{k}{i}", m) for k, m in conv_block(cin, cout, norm, norm_cfg)]
            layers.append((f"pool{i}", nn.MaxPool2d(2)))
            cin = cout
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Linear(cin * 16, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class DeepLinear(nn.Module):
    """Santurkar et al. 2018's deep linear network: ``layers`` bias-free linear maps, no nonlinearity.

    In a normalized arm the norm sits between consecutive linear layers (``layers - 1`` of them); the
    output layer is never normalized, so the network can fit any linear target. No biases: the paper's
    model is the product W_L ... W_1 x (BN's beta is the normalized arm's only shift).
    """

    def __init__(self, in_dim, out_dim, width, layers, norm, norm_cfg):
        super().__init__()
        if layers < 1:
            raise BnlabError(f"model.layers={layers} must be >= 1; pass e.g. model.layers=25")
        dims = [in_dim] + [width] * (layers - 1) + [out_dim]
        mods = []
        for i in range(1, layers + 1):
            mods.append((f"linear{i}", nn.Linear(dims[i - 1], dims[i], bias=False)))
            if i < layers:
                mods.append((f"norm{i}", norms.make(norm, dims[i], 1, norm_cfg)))
        self.in_dim = in_dim
        self.net = nn.Sequential(OrderedDict(mods))

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise BnlabError(f"model=dln takes vectors of dimension {self.in_dim}, got a batch of shape "
                             f"{tuple(x.shape)}; use data=gaussian with data.dim={self.in_dim}")
        return self.net(x)


def build(cfg, norm: str, norm_cfg, num_classes: int) -> nn.Module:
    """The network named by ``cfg.arch`` with the given norm kind."""
    arch, width = cfg.arch, float(cfg.get("width", 1.0))
    if width <= 0:
        raise BnlabError(f"model.width={width} must be > 0; pass e.g. model.width=0.25")
    if arch in VGG_LAYOUTS:
        return VGG(VGG_LAYOUTS[arch], norm, norm_cfg, num_classes, width)
    if arch in RESNET_DEPTHS:
        return ResNet(RESNET_DEPTHS[arch], norm, norm_cfg, num_classes, width)
    if arch == "simple_cnn":
        return SimpleCNN(norm, norm_cfg, num_classes, width)
    if arch == lstm.ARCH:  # CIFAR rows as a sequence; Cooijmans' BN-LSTM and its twins (bnlab/lstm.py)
        return lstm.build(cfg, norm, norm_cfg, num_classes)
    if arch == "dln":  # width counts units here; num_classes is the data's output dimension
        if cfg.get("in_dim") is None:
            raise BnlabError("model=dln takes vectors, and the data gives none (no data.dim); use data=gaussian")
        return DeepLinear(int(cfg.in_dim), num_classes, _ch(int(cfg.hidden), width), int(cfg.layers), norm, norm_cfg)
    raise BnlabError(f"model.arch={arch} is not a known network; choose from {', '.join(NETWORKS)}")
