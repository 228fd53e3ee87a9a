"""The three architectures: the paper's ``decoder``, DIP's ``hourglass`` (skip net), ``convnet``.

- ``decoder`` (Shi et al. IJCV 2022, Sec. 5): a code at H/32 × W/32 goes through two conv blocks
  and five ×2 upsampling stages of two conv blocks each, all at 128 channels, then a 1×1 conv and
  a sigmoid.  1,662,339 parameters for 32 inputs / 3 outputs (the authors' count).
- ``hourglass`` (Ulyanov et al. CVPR 2018, supplementary "skip" net): an encoder–decoder with
  1×1 skip branches; 2,217,831 parameters for 32/3 with batch norm (DIP's count).
- ``convnet``: the decoder without upsampling, the code at full resolution (the paper's
  architecture ablation, Sec. 5.2).

All convs except the final 1×1 output conv are ``LipschitzConv2d`` (controlled when ``ln_lambda``
is set); norms use per-sample statistics so independent fits can share a batch.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .layers import (LipschitzConv2d, kaiming_init_, lipschitz_convs, make_norm, make_upsample,
                     refresh_sigmas)

PAPER_SIGMAS = (0.1, 0.1, 0.1, 0.5, 0.5)  # Gaussian σ per upsampling stage, coarse to fine


class DIPNet(nn.Module):
    """A network body plus the bookkeeping every architecture shares.

    ``forward`` first computes σ_max of all controlled convs in one stacked call per weight shape
    (``refresh_sigmas``), then runs the body.  ``divisor`` is the factor the input's spatial size
    must be a multiple of; ``code_scale`` is output size / input size.
    """

    def __init__(self, body: nn.Module, name: str, code_scale: int, divisor: int = 1):
        super().__init__()
        self.body, self.name = body, name
        self.code_scale, self.divisor = code_scale, divisor
        self.group_sigmas = True

    def forward(self, z):
        h, w = z.shape[-2:]
        if h % self.divisor or w % self.divisor:
            raise ValueError(f"{self.name}: input size {w}x{h} is not a multiple of {self.divisor}")
        if self.group_sigmas:
            refresh_sigmas(self.controlled_convs())
        return self.body(z)

    def controlled_convs(self):
        """The controlled convs, found once (set ``ln_lambda`` per layer before the first
        forward, or call ``forget_convs()`` after changing which layers are controlled)."""
        if "_convs" not in self.__dict__:
            self.__dict__["_convs"] = [m for _, m in lipschitz_convs(self)]
        return self.__dict__["_convs"]

    def forget_convs(self):
        self.__dict__.pop("_convs", None)


def _conv(cin, cout, k, o, stride=1):
    conv = LipschitzConv2d(cin, cout, k, stride=stride, bias=o["bias"], ln_lambda=o["ln_lambda"],
                           pad=o["pad"])
    return kaiming_init_(conv) if o["init"] == "kaiming" else conv


def _block(cin, cout, o, stride=1):
    """3×3 controlled conv → norm → LeakyReLU."""
    return [_conv(cin, cout, 3, o, stride), make_norm(o["norm"], cout, o["norm_lambda"]),
            nn.LeakyReLU(o["act_slope"])]


def _head(cin, cout, o):
    """The uncontrolled 1×1 output conv (and sigmoid)."""
    head = nn.Conv2d(cin, cout, 1, bias=o["bias"])
    if o["init"] == "kaiming":
        kaiming_init_(head)
    return [head] + ([nn.Sigmoid()] if o["need_sigmoid"] else [])


def _sigmas(o, stages):
    sig = list(o["gaussian_sigmas"])
    if len(sig) != stages:
        raise ValueError(f"gaussian_sigmas needs one sigma per upsampling stage ({stages}), got {sig}")
    return sig


def decoder(in_channels, out_channels, o, upsampling=True):
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
    body = nn.Sequential(*layers, *_head(c, out_channels, o))
    if upsampling:
        return DIPNet(body, "decoder", code_scale=2 ** stages)
    return DIPNet(body, "convnet", code_scale=1)


class SkipLevel(nn.Module):
    """One scale of DIP's skip net: ``after(cat(skip(x), deeper(x)))``."""

    def __init__(self, skip, deeper, after):
        super().__init__()
        self.skip, self.deeper, self.after = skip, deeper, after

    def forward(self, x):
        d = self.deeper(x)
        return self.after(torch.cat([self.skip(x), d], 1) if self.skip is not None else d)


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
        branch = (nn.Sequential(_conv(cin, skip[i], 1, o), norm(skip[i]), act())
                  if skip[i] else None)
        after = [norm(skip[i] + k)] + _block(skip[i] + k, up[i], o)
        after += [_conv(up[i], up[i], 1, o), norm(up[i]), act()]
        inner = SkipLevel(branch, nn.Sequential(*deeper), nn.Sequential(*after))
    body = nn.Sequential(inner, *_head(up[0], out_channels, o))
    return DIPNet(body, "hourglass", code_scale=1, divisor=2 ** n)


DEFAULTS = {
    "common": dict(ln_lambda=None, upsample="bilinear", gaussian_sigmas=PAPER_SIGMAS,
                   norm="mean_only", norm_lambda=None, pad="reflection", need_sigmoid=True,
                   bias=True, scales=5, gain="faithful"),
    # the authors' decoder: λ 1.4, mean-only norm, LeakyReLU(0.01), Kaiming-uniform init
    "decoder": dict(ln_lambda=1.4, channels=128, act_slope=0.01, init="kaiming"),
    "convnet": dict(ln_lambda=1.4, channels=128, act_slope=0.01, init="kaiming"),
    # DIP's skip net: batch norm, LeakyReLU(0.2), PyTorch's default init, no control
    "hourglass": dict(norm="batch", channels_down=128, channels_up=128, channels_skip=4,
                      act_slope=0.2, init="default"),
}


def build_net(name: str, in_channels: int, out_channels: int, **options) -> DIPNet:
    """Build ``decoder``, ``hourglass`` or ``convnet``.

    Options (all nets): ``ln_lambda`` (float, a list with one λ per controlled conv, or None/0 for
    no control), ``upsample`` (nearest | bilinear | deconv | gaussian), ``gaussian_sigmas`` (one σ
    per upsampling stage, coarse to fine), ``gain`` (faithful | unit), ``norm`` (mean_only | batch
    | lipschitz_batch | none), ``norm_lambda``, ``pad`` (reflection | zero), ``need_sigmoid``,
    ``bias``, ``scales``, ``act_slope``, ``init`` (kaiming | default).  decoder/convnet:
    ``channels``; hourglass: ``channels_down``, ``channels_up``, ``channels_skip`` (int or list).
    """
    if name not in ("decoder", "hourglass", "convnet"):
        raise ValueError(f"unknown net {name!r} (decoder | hourglass | convnet)")
    o = {**DEFAULTS["common"], **DEFAULTS[name]}
    unknown = set(options) - set(o)
    if unknown:
        raise ValueError(f"unknown option(s) for {name}: {sorted(unknown)}")
    o.update(options)
    per_layer = o["ln_lambda"] if isinstance(o["ln_lambda"], Sequence) else None
    if per_layer is not None:
        o["ln_lambda"] = 1.0  # placeholder so every conv is built controlled; set below
    if name == "hourglass":
        net = hourglass(in_channels, out_channels, o)
    else:
        net = decoder(in_channels, out_channels, o, upsampling=(name == "decoder"))
    if per_layer is not None:
        convs = lipschitz_convs(net)
        if len(per_layer) != len(convs):
            raise ValueError(f"ln_lambda list has {len(per_layer)} values, the net has "
                             f"{len(convs)} controlled convs")
        for (_, m), lam in zip(convs, per_layer):
            m.ln_lambda = float(lam) if lam else None
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
