"""torch counterparts of the benchmark's jaxnn image networks (cnn2d and resnet), for
torch.func ensembles: the same layers, shapes and padding, with parameters named after the Flax
parameter paths, so `state_from_flax` copies a jaxnn member's weights into them.

Imports torch: only where torch is installed (the `bench` extra).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

GROUPS = 8  # as jaxnn.nn.normalization.normalize
FLAX_NORM_EPSILON = 1e-6  # flax.linen.GroupNorm's


class SameConv2d(nn.Conv2d):
    """nn.Conv2d with lax's 'same' padding: ceil(n / stride) outputs, the smaller half of the
    zeros on the top and left (PyTorch's padding='same' is stride 1 only)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, (left, right, top, bottom)))


def norm_layer(kind: str, channels: int) -> nn.Module:
    """jaxnn's `norm` after a convolution: none or group (GroupNorm with jaxnn's group count)."""
    if kind == "none":
        return nn.Identity()
    if kind != "group":
        raise ValueError(f"norm={kind!r}: the torch networks have none and group")
    groups = min(GROUPS, channels)
    groups = groups if channels % groups == 0 else channels
    return nn.GroupNorm(groups, channels, eps=FLAX_NORM_EPSILON)


class CNN2D(nn.Module):
    """jaxnn's cnn2d with stride-1 convolutions, ReLU, pooling and a linear head (no hidden
    layers): conv_i, norm_i, head."""

    def __init__(self, network: dict, image_shape: tuple[int, int, int], num_outputs: int):
        super().__init__()
        height, width, channels = image_shape
        self.pool = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}.get(network["pool"])
        self.pool_size = network["pool_size"]
        self.names = []
        (size,) = set(network["kernel_sizes"])
        for i, features in enumerate(network["channels"]):
            bias = network["norm"] != "batch"
            setattr(self, f"conv_{i}", SameConv2d(channels, features, size, bias=bias))
            setattr(self, f"norm_{i}", norm_layer(network["norm"], features))
            self.names.append(i)
            channels = features
            if self.pool is not None:
                height, width = height // self.pool_size, width // self.pool_size
        self.flat_shape = (height, width, channels)  # jaxnn flattens [H, W, C]
        self.head = nn.Linear(height * width * channels, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in self.names:
            x = F.relu(getattr(self, f"norm_{i}")(getattr(self, f"conv_{i}")(x)))
            if self.pool is not None:
                x = self.pool(self.pool_size)(x)
        return self.head(x.flatten(1))


class BasicBlock(nn.Module):
    """jaxnn.nn.resnet.BasicBlock, standard (not pre-activation)."""

    def __init__(self, channels: int, features: int, stride: int, norm: str):
        super().__init__()
        bias = norm == "none"
        self.conv_0 = SameConv2d(channels, features, 3, stride, bias=bias)
        self.norm_0 = norm_layer(norm, features)
        self.conv_1 = SameConv2d(features, features, 3, bias=bias)
        self.norm_1 = norm_layer(norm, features)
        if isinstance(self.norm_1, nn.GroupNorm):
            nn.init.zeros_(self.norm_1.weight)  # each block starts as the identity
        self.reshapes = stride != 1 or channels != features
        if self.reshapes:
            self.shortcut = SameConv2d(channels, features, 1, stride, bias=bias)
            self.shortcut_norm = norm_layer(norm, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut_norm(self.shortcut(x)) if self.reshapes else x
        h = F.relu(self.norm_0(self.conv_0(x)))
        return F.relu(self.norm_1(self.conv_1(h)) + shortcut)


class ResNet(nn.Module):
    """jaxnn's resnet with the CIFAR stem and standard blocks: stem, stem_norm,
    stage{s}_block{b}, global average pooling, head."""

    def __init__(self, network: dict, image_shape: tuple[int, int, int], num_outputs: int):
        super().__init__()
        if network["stem"] != "cifar" or network["preact"]:
            raise ValueError("the torch ResNet has the CIFAR stem and standard blocks only")
        norm, widths = network["norm"], network["widths"]
        self.stem = SameConv2d(image_shape[-1], widths[0], 3, bias=norm == "none")
        self.stem_norm = norm_layer(norm, widths[0])
        self.blocks = []
        channels = widths[0]
        for s, (count, features) in enumerate(zip(network["stages"], widths, strict=True)):
            for b in range(count):
                stride = 2 if s > 0 and b == 0 else 1
                setattr(self, f"stage{s}_block{b}", BasicBlock(channels, features, stride, norm))
                self.blocks.append(f"stage{s}_block{b}")
                channels = features
        self.head = nn.Linear(channels, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_norm(self.stem(x)))
        for name in self.blocks:
            x = getattr(self, name)(x)
        return self.head(x.mean(dim=(2, 3)))


NETWORKS = {"cnn2d": CNN2D, "resnet": ResNet}


def build(name: str, network: dict, image_shape: tuple[int, int, int], num_outputs: int):
    """The torch network of family `name` with jaxnn's fields `network` for [H, W, C] images."""
    return NETWORKS[name](network, image_shape, num_outputs)


def as_torch_images(x: np.ndarray) -> torch.Tensor:
    """jaxnn's images [N, H, W, C] as torch's [N, C, H, W] float32."""
    return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)), np.float32))


def state_from_flax(params: Any, model: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict for `model` holding the Flax parameters `params` (a jaxnn member's):
    conv kernels [K, K, C_in, C_out] -> [C_out, C_in, K, K], dense kernels transposed (cnn2d's
    head also reordered from [H, W, C] to torch's [C, H, W] flattening), scale -> weight."""
    import jax

    state = {}
    for path, value in jax.tree_util.tree_leaves_with_path(params):
        names = [entry.key for entry in path]
        leaf = {"kernel": "weight", "scale": "weight"}.get(names[-1], names[-1])
        value = np.asarray(value, np.float32)
        if value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)
        elif value.ndim == 2:
            if names[0] == "head" and hasattr(model, "flat_shape"):
                height, width, channels = model.flat_shape
                value = value.reshape(height, width, channels, -1).transpose(2, 0, 1, 3)
                value = value.reshape(height * width * channels, -1)
            value = value.T
        state[".".join([*names[:-1], leaf])] = torch.from_numpy(
            np.array(value, np.float32, order="C")
        )
    return state
