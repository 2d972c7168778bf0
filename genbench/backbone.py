"""The common generator backbone g(z; W) and its mirror, shared by ABP, the VAE and the GAN.

:class:`Generator` is the DCGAN-style top-down ConvNet of the ABP paper (Han et al., AAAI 2017,
Sec. 4; Radford et al., ICLR 2016)::

    z (B, d) -> Linear -> BN -> ReLU -> (C0, s0, s0)
             -> [ConvTranspose 4x4 stride 2 -> BN -> ReLU] x (n_up - 1)
             -> ConvTranspose 4x4 stride 2 -> tanh -> x (B, C, H, W) in [-1, 1]

with s0 = 4 for sizes 8, 16, 32, 64 and s0 = 7 for 28 (28 = 7 * 2^2), C0 = width * 2^(n_up - 1)
and the channel count halving at every up-sampling. :class:`ConvTrunk` is the mirror image
(strided 4x4 convolutions, BN, LeakyReLU 0.2, no pooling) ending in a linear head: the VAE's
encoder and the GAN's discriminator.

The convolution path (:func:`set_conv_path`, ``--conv-path``, a process setting like the thread count):
``native`` runs every layer on PyTorch's default kernels (oneDNN on the CPU); ``im2col`` runs the generator's
output layer (:class:`OutputConvTranspose2d`) on the CPU on PyTorch's own im2col kernel instead, which is
several times faster for its few output channels (benchmarks/conv_paths.py). The same function up to float
rounding; on CUDA both are the native path. A run (``RunConfig.conv_path``) takes ``im2col`` by default; a
process that sets nothing, such as a model used directly from Python, runs ``native``.

Example::

    >>> g = Generator(latent_dim=10, image_shape=(1, 28, 28), width=32)
    >>> g(torch.zeros(2, 10)).shape
    torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from genbench.config import ConvPath
from genbench.operators import ImageShape

SUPPORTED_SIZES = (8, 16, 28, 32, 64)
#: the convolution paths of :func:`set_conv_path` (float rounding only): the values of ``conv_path``
CONV_PATHS = typing.get_args(ConvPath)
_CONV = {"path": "native"}


def set_conv_path(path: str) -> None:
    """This process's convolution path (see the module docstring); the runner sets it from ``conv_path``."""
    if path not in CONV_PATHS:
        raise ValueError(f"conv path must be one of {', '.join(CONV_PATHS)}, got {path!r}")
    _CONV["path"] = path


def get_conv_path() -> str:
    """This process's convolution path."""
    return _CONV["path"]


@contextmanager
def using_conv_path(path: str) -> Iterator[None]:
    """:func:`set_conv_path` for the ``with`` block only."""
    before = get_conv_path()
    set_conv_path(path)
    try:
        yield
    finally:
        _CONV["path"] = before


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_cpu_enabled()


class OutputConvTranspose2d(nn.ConvTranspose2d):
    """The generator's output layer: an ``nn.ConvTranspose2d`` (same weights, same state dict) whose forward
    runs on PyTorch's im2col kernel (``aten.slow_conv_transpose2d``) on the CPU when the conv path is
    ``im2col``: oneDNN is slow for a layer with 1 or 3 output channels. Elsewhere (CUDA, an unbatched input,
    CPU autocast), the native forward. Forward-mode AD (``torch.func.jvp``) has no rule for the im2col kernel."""

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:  # noqa: A002 (torch's name)
        if (_CONV["path"] == "im2col" and input.device.type == "cpu" and input.dim() == 4 and output_size is None
                and self.groups == 1 and self.padding_mode == "zeros" and input.dtype == self.weight.dtype
                and not _cpu_autocast()):
            return torch.ops.aten.slow_conv_transpose2d(input.contiguous(), self.weight, list(self.kernel_size),
                                                        self.bias, list(self.stride), list(self.padding),
                                                        list(self.output_padding), list(self.dilation))
        return super().forward(input, output_size)


def _layout(image_shape: ImageShape) -> tuple[int, int]:
    """(s0, n_up): the seed resolution and the number of x2 up-samplings for this image."""
    channels, height, width = image_shape
    if height != width or height not in SUPPORTED_SIZES:
        raise ValueError(f"the shared backbone supports square images of size {SUPPORTED_SIZES}, "
                         f"got {height}x{width}; resize the data (--set data.image_size=...)")
    if channels not in (1, 3):
        raise ValueError(f"the shared backbone supports 1 or 3 channels, got {channels}")
    s0 = 7 if height == 28 else 4
    return s0, int(round(math.log2(height // s0)))


class Generator(nn.Module):
    """Top-down ConvNet g(z; W): (B, latent_dim) -> (B, C, H, W) in [-1, 1]."""

    def __init__(self, latent_dim: int, image_shape: ImageShape, width: int = 32,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        on = {"device": device}  # models pass their data's device: weights are made there, not moved
        if width < 1:
            raise ValueError(f"backbone width must be >= 1, got {width}")
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        self.s0, n_up = _layout(self.image_shape)
        self.c0 = width * 2 ** (n_up - 1)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, self.c0 * self.s0 * self.s0, bias=False, **on),
            nn.BatchNorm1d(self.c0 * self.s0 * self.s0, **on),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        c = self.c0
        for _ in range(n_up - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False, **on), nn.BatchNorm2d(c // 2, **on),
                       nn.ReLU(inplace=True)]
            c //= 2
        layers += [OutputConvTranspose2d(c, self.image_shape[0], 4, 2, 1, **on), nn.Tanh()]
        self.up = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z).view(-1, self.c0, self.s0, self.s0)  # (B, C0, s0, s0)
        return self.up(h)  # (B, C, H, W)


class ConvTrunk(nn.Module):
    """Bottom-up mirror of :class:`Generator`: (B, C_in, H, W) -> (B, out_features).

    ``in_channels`` may exceed the image's channels (e.g. a VAE encoder that also sees the
    observation mask as an extra channel).
    """

    def __init__(self, image_shape: ImageShape, out_features: int, width: int = 32,
                 in_channels: int | None = None, device: torch.device | str | None = None) -> None:
        super().__init__()
        on = {"device": device}
        s0, n_up = _layout(tuple(image_shape))
        c_in = image_shape[0] if in_channels is None else in_channels
        layers: list[nn.Module] = []
        c = width
        for i in range(n_up):
            layers.append(nn.Conv2d(c_in, c, 4, 2, 1, bias=i == 0, **on))
            if i > 0:  # DCGAN: no BN on the first layer
                layers.append(nn.BatchNorm2d(c, **on))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in, c = c, c * 2
        self.down = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * s0 * s0, out_features, **on)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.down(x).flatten(1))


def dcgan_init(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN initialisation: conv/linear weights ~ N(0, std), BN weights ~ N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


class _StopForward(Exception):
    """Raised by :func:`recalibrate_batchnorm`'s hook once it has seen the layer it measures."""


@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, inputs: Tensor, batch_size: int = 500) -> None:
    """Set BN running statistics to the exact population mean and (biased) variance of each BN
    layer's input over ``inputs``, layer by layer in network order ("precise BN").

    Training in train mode leaves running statistics that lag behind the final weights; with
    exact statistics ``eval()`` outputs match what training optimised. Each layer's statistics
    are accumulated in float64 over batches with the layers before it already in eval mode, so
    the result does not depend on ``batch_size`` (up to float rounding of the forward pass).
    Each pass stops at the layer it measures, so L BN layers cost about (L + 1) / 2 full passes.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    was_training = net.training
    net.eval()
    for bn in bns:
        acc: dict[str, Tensor | int] = {"n": 0}

        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            x = args[0].detach().double()
            dims = [0, *range(2, x.dim())]
            acc["sum"] = acc.get("sum", 0) + x.sum(dims)
            acc["sumsq"] = acc.get("sumsq", 0) + x.pow(2).sum(dims)
            acc["n"] = int(acc["n"]) + x.numel() // x.shape[1]
            raise _StopForward  # the layers after this one are not needed for its statistics

        handle = bn.register_forward_pre_hook(hook)
        try:
            with torch.no_grad():
                for i in range(0, inputs.shape[0], batch_size):
                    try:
                        net(inputs[i:i + batch_size])
                    except _StopForward:
                        pass
        finally:
            handle.remove()
        n = int(acc["n"])
        mean = acc["sum"] / n
        var = (acc["sumsq"] / n - mean.pow(2)).clamp_min(0.0)
        bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
        bn.running_var.copy_(var.to(bn.running_var.dtype))
    net.train(was_training)
