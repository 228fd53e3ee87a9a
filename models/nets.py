"""The three architectures: the paper's ``decoder``, DIP's ``hourglass`` (skip net), ``convnet``.

- ``decoder`` (Shi et al. IJCV 2022, Sec. 5): a code at H/32 × W/32 goes through two conv blocks
  and five ×2 upsampling stages of two conv blocks each, all at 128 channels, then a 1×1 conv and
  a sigmoid.  1,662,339 parameters for 32 inputs / 3 outputs (the authors' count).
- ``hourglass`` (Ulyanov et al. CVPR 2018, supplementary "skip" net): an encoder–decoder with
  1×1 skip branches; 2,217,831 parameters for 32/3 with batch norm (DIP's count).
- ``convnet``: the decoder without upsampling, the code at full resolution (the paper's
  architecture ablation, Sec. 5.2).

All convs except the final 1×1 output conv are ``LipschitzConv2d`` (controlled when ``ln_lambda``
is set); norms use per-sample statistics so independent fits can share a batch.  ``NETS`` is the
registry: a new network is one builder plus one entry there.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .layers import (GAINS, NORMS, PADS, SIGMA_METHODS, UPSAMPLES, LipschitzConv2d,
                     OutputConv2d, grouped_sigmas, kaiming_init_, lipschitz_convs, make_norm,
                     make_upsample)

PAPER_SIGMAS = (0.1, 0.1, 0.1, 0.5, 0.5)  # Gaussian σ per upsampling stage, coarse to fine


def _call(module, x, sigmas):
    """Run one layer, handing σ to a controlled conv and the σ table to a container."""
    if isinstance(module, LipschitzConv2d):
        return module(x, None if sigmas is None else sigmas.get(module))
    if isinstance(module, (Chain, SkipLevel)):
        return module(x, sigmas)
    return module(x)


class Chain(nn.Sequential):
    """``nn.Sequential`` that hands every controlled conv its σ_max from ``sigmas``
    (``{conv: σ}``, see :func:`models.layers.grouped_sigmas`); without it each conv computes
    its own."""

    def forward(self, x, sigmas: dict | None = None):
        for module in self:
            x = _call(module, x, sigmas)
        return x


class DIPNet(nn.Module):
    """A network body plus the bookkeeping every architecture shares.

    ``forward`` computes σ_max of all controlled convs in one stacked call per weight shape
    (``sigma_method``: see :func:`models.layers.sigma_max`) and hands the values to the body.
    ``divisor`` is the factor the input's spatial size must be a multiple of; ``code_scale`` is
    output size / input size.
    """

    def __init__(self, body: Chain, name: str, code_scale: int, divisor: int = 1,
                 sigma_method: str = "auto"):
        super().__init__()
        self.body, self.name = body, name
        self.code_scale, self.divisor = code_scale, divisor
        self.sigma_method = sigma_method

    def forward(self, z):
        h, w = z.shape[-2:]
        if h % self.divisor or w % self.divisor:
            raise ValueError(f"{self.name}: input size {w}x{h} is not a multiple of {self.divisor}")
        convs = [m for m in self.lipschitz_layers() if m.controlled]
        return self.body(z, grouped_sigmas(convs, self.sigma_method) if convs else {})

    def lipschitz_layers(self):
        """Every LipschitzConv2d of the net (controlled or not), found once."""
        if "_convs" not in self.__dict__:
            self.__dict__["_convs"] = [m for m in self.modules() if isinstance(m, LipschitzConv2d)]
        return self.__dict__["_convs"]


def _conv(cin, cout, k, o, stride=1):
    conv = LipschitzConv2d(cin, cout, k, stride=stride, bias=o["bias"], ln_lambda=o["ln_lambda"],
                           pad=o["pad"], sigma_method=o["sigma_method"])
    return kaiming_init_(conv) if o["init"] == "kaiming" else conv


def _block(cin, cout, o, stride=1):
    """3×3 controlled conv → norm → LeakyReLU."""
    return [_conv(cin, cout, 3, o, stride), make_norm(o["norm"], cout, o["norm_lambda"]),
            nn.LeakyReLU(o["act_slope"])]


def _head(cin, cout, o):
    """The uncontrolled 1×1 output conv (and sigmoid)."""
    head = OutputConv2d(cin, cout, 1, bias=o["bias"])
    if o["init"] == "kaiming":
        kaiming_init_(head)
    return [head] + ([nn.Sigmoid()] if o["need_sigmoid"] else [])


def _sigmas(o, stages):
    sig = list(o["gaussian_sigmas"])
    if len(sig) != stages:
        raise ValueError(f"gaussian_sigmas needs one sigma per upsampling stage ({stages}), got {sig}")
    return sig


def decoder(in_channels, out_channels, o, upsampling=True):
    """The paper's decoder (``upsampling=False``: the convnet of the architecture ablation)."""
    c, stages = o["channels"], o["scales"]
    layers = _block(in_channels, c, o) + _block(c, c, o)
    sig = _sigmas(o, stages) if o["upsample"] == "gaussian" else [None] * stages
    for s in range(stages):
        if not upsampling:
            layers += _block(c, c, o) + _block(c, c, o)
        elif o["upsample"] == "deconv":  # the authors' variant: learned deconv + one conv, no norm
            layers += [make_upsample("deconv", c), _conv(c, c, 3, o)]
        else:
            layers += [make_upsample(o["upsample"], c, sig[s], o["gain"])]
            layers += _block(c, c, o) + _block(c, c, o)
    body = Chain(*layers, *_head(c, out_channels, o))
    if upsampling:
        return DIPNet(body, "decoder", code_scale=2 ** stages, sigma_method=o["sigma_method"])
    return DIPNet(body, "convnet", code_scale=1, sigma_method=o["sigma_method"])


def convnet(in_channels, out_channels, o):
    return decoder(in_channels, out_channels, o, upsampling=False)


class SkipLevel(nn.Module):
    """One scale of DIP's skip net: ``after(cat(skip(x), deeper(x)))``."""

    def __init__(self, skip, deeper, after):
        super().__init__()
        self.skip, self.deeper, self.after = skip, deeper, after

    def forward(self, x, sigmas: dict | None = None):
        d = _call(self.deeper, x, sigmas)
        if self.skip is not None:
            d = torch.cat([_call(self.skip, x, sigmas), d], 1)
        return _call(self.after, d, sigmas)


def _per_scale(v, n, what):
    v = list(v) if isinstance(v, Sequence) else [v] * n
    if len(v) != n:
        raise ValueError(f"{what} needs {n} values (one per scale), got {v}")
    return v


def hourglass(in_channels, out_channels, o):
    n = o["scales"]
    down = _per_scale(o["channels_down"], n, "channels_down")
    up = _per_scale(o["channels_up"], n, "channels_up")
    skip = _per_scale(o["channels_skip"], n, "channels_skip")
    sig = _sigmas(o, n) if o["upsample"] == "gaussian" else [None] * n
    norm = lambda ch: make_norm(o["norm"], ch, o["norm_lambda"])  # noqa: E731
    act = lambda: nn.LeakyReLU(o["act_slope"])  # noqa: E731

    inner = None
    for i in reversed(range(n)):  # build from the coarsest scale outwards
        cin = in_channels if i == 0 else down[i - 1]
        k = down[i] if i == n - 1 else up[i + 1]
        deeper = _block(cin, down[i], o, stride=2) + _block(down[i], down[i], o)
        deeper += ([inner] if inner is not None else [])
        deeper += [make_upsample(o["upsample"], k, sig[n - 1 - i], o["gain"])]
        branch = Chain(_conv(cin, skip[i], 1, o), norm(skip[i]), act()) if skip[i] else None
        after = [norm(skip[i] + k)] + _block(skip[i] + k, up[i], o)
        after += [_conv(up[i], up[i], 1, o), norm(up[i]), act()]
        inner = SkipLevel(branch, Chain(*deeper), Chain(*after))
    body = Chain(inner, *_head(up[0], out_channels, o))
    return DIPNet(body, "hourglass", code_scale=1, divisor=2 ** n, sigma_method=o["sigma_method"])


# ----------------------------------------------------------------------------- the registry
# Every option of every net: its default where the net's entry does not set one, and its help.
COMMON = dict(ln_lambda=0.0, upsample="bilinear", gaussian_sigmas=PAPER_SIGMAS,
              norm="mean_only", norm_lambda=1.0, pad="reflection", need_sigmoid=True,
              bias=True, scales=5, gain="faithful", sigma_method="auto")
OPTION_HELP = {
    "ln_lambda": "Lipschitz bound λ of every 3×3 conv: a number, one per conv, or 0 = no control",
    "upsample": "×2 upsampling: " + " | ".join(UPSAMPLES),
    "gaussian_sigmas": "σ of each Gaussian upsampling stage, coarse to fine",
    "norm": "normalisation: " + " | ".join(NORMS),
    "norm_lambda": "Lipschitz bound of the lipschitz_batch norms",
    "pad": "conv padding: " + " | ".join(PADS),
    "need_sigmoid": "sigmoid on the output",
    "bias": "conv biases",
    "scales": "upsampling stages (decoder) or levels (hourglass)",
    "gain": "DC gain of the Gaussian upsampling: " + " | ".join(GAINS),
    "sigma_method": "how σ_max is computed (all exact): " + " | ".join(SIGMA_METHODS)
                    + "; auto = the fastest on the device",
    "channels": "width of every conv",
    "channels_down": "hourglass encoder widths (one number, or one per level)",
    "channels_up": "hourglass decoder widths (one number, or one per level)",
    "channels_skip": "hourglass skip widths (one number, or one per level; 0 = no skip)",
    "act_slope": "negative slope of the LeakyReLUs",
    "init": "conv initialisation: kaiming (the authors') | default (PyTorch's)",
}
OPTION_CHOICES = {"upsample": UPSAMPLES, "norm": NORMS, "pad": PADS, "gain": GAINS,
                  "sigma_method": SIGMA_METHODS, "init": ("kaiming", "default")}


@dataclass(frozen=True)
class NetSpec:
    """A registered network: ``build(in_channels, out_channels, options) -> DIPNet``, its own
    defaults over ``COMMON``, the tiny widths of the tests and ``reproduce.py --toy``, and the
    options that set its width (what a preset's width of another net becomes)."""
    build: Callable
    defaults: dict
    toy: dict
    about: str
    width: tuple = ("channels",)


_DECODER = dict(ln_lambda=1.4, channels=128, act_slope=0.01, init="kaiming")
NETS = {
    # the authors' decoder: λ 1.4, mean-only norm, LeakyReLU(0.01), Kaiming-uniform init
    "decoder": NetSpec(decoder, _DECODER, dict(channels=8), "the paper's decoder (Sec. 5)"),
    "convnet": NetSpec(convnet, _DECODER, dict(channels=8),
                       "the decoder without upsampling, code at full resolution (Sec. 5.2)"),
    # DIP's skip net: batch norm, LeakyReLU(0.2), PyTorch's default init, no control
    "hourglass": NetSpec(hourglass, dict(norm="batch", channels_down=128, channels_up=128,
                                         channels_skip=4, act_slope=0.2, init="default"),
                         dict(channels_down=8, channels_up=8, scales=3),
                         "DIP's skip net (Ulyanov et al. 2018, supplementary)",
                         width=("channels_down", "channels_up")),
}


def net_options(name: str) -> dict:
    """Every option of net ``name`` with its default."""
    if name not in NETS:
        raise ValueError(f"unknown net {name!r} ({' | '.join(NETS)})")
    return {**COMMON, **NETS[name].defaults}


def build_net(name: str, in_channels: int, out_channels: int, **options) -> DIPNet:
    """Build a registered net (``NETS``: decoder, hourglass, convnet).

    Options (all nets): ``ln_lambda`` (float, a list with one λ per controlled conv, or None/0 for
    no control), ``upsample``, ``gaussian_sigmas``, ``gain``, ``norm``, ``norm_lambda``, ``pad``,
    ``need_sigmoid``, ``bias``, ``scales``, ``act_slope``, ``init``, ``sigma_method``;
    decoder/convnet: ``channels``; hourglass: ``channels_down``, ``channels_up``,
    ``channels_skip`` (int or list).  ``OPTION_HELP`` describes each.
    """
    o = net_options(name)
    unknown = set(options) - set(o)
    if unknown:
        raise ValueError(f"unknown option(s) for {name}: {sorted(unknown)}")
    o.update(options)
    per_layer = o["ln_lambda"] if isinstance(o["ln_lambda"], Sequence) else None
    if per_layer is not None:
        o["ln_lambda"] = 1.0  # placeholder so every conv is built controlled; set below
    net = NETS[name].build(in_channels, out_channels, o)
    if per_layer is not None:
        convs = lipschitz_convs(net)
        if len(per_layer) != len(convs):
            raise ValueError(f"ln_lambda list has {len(per_layer)} values, the net has "
                             f"{len(convs)} controlled convs")
        for (_, m), lam in zip(convs, per_layer):
            m.ln_lambda = lam
    return net


def code_shape(net: DIPNet, height: int, width: int) -> tuple[int, int]:
    """Spatial size of the input code that makes ``net`` output ``height × width``.

    Raises ValueError naming the size when it does not fit the architecture (a multiple of 32
    for the paper's nets; callers pad the image first, see utils.imageio.pad_to_multiple).
    """
    need = max(net.code_scale, net.divisor)
    if height % need or width % need:
        raise ValueError(f"image size {width}x{height} is not a multiple of {need} "
                         f"(required by {net.name}); pad or crop it first")
    return height // net.code_scale, width // net.code_scale


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
