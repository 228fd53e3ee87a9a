"""Layers that control the spectral bias of a Deep Image Prior network.

Shi, Mettes, Maji, Snoek, "On Measuring and Controlling the Spectral Bias of the Deep Image
Prior", IJCV 2022 (Sec. 4): a Lipschitz-controlled convolution bounds the largest singular value
of every conv, a Gaussian-controlled upsampling replaces learned/bilinear upsampling with a fixed
low-pass transposed conv, and normalisations without (or with bounded) scaling keep the bound.

Every normalisation here uses **per-sample** statistics: samples of a batch never mix, so a batch
can hold independent fits (several images or restarts) and give the same numbers as separate runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# the faster exact method per device type, from benchmarks/speed.py (CPU: eigvalsh 19 ms vs
# svdvals 94 ms for the decoder's 12 convs; CUDA: to be confirmed by the GPU benchmark)
FASTEST_SIGMA = {"cpu": "eigvalsh", "cuda": "eigvalsh"}
SIGMA_METHODS = ("auto", "svdvals", "eigvalsh")
PADS = ("reflection", "zero")
NORMS = ("mean_only", "batch", "lipschitz_batch", "none")
UPSAMPLES = ("nearest", "bilinear", "deconv", "gaussian")
GAINS = ("faithful", "unit")


def sigma_max(weights: torch.Tensor, method: str = "auto") -> torch.Tensor:
    """Exact largest singular value of each matrix in ``weights`` (..., rows, cols).

    ``svdvals``: ``torch.linalg.svdvals`` (the reference).  ``eigvalsh``: square root of the
    largest eigenvalue of the smaller Gram matrix ``W Wᵀ`` (or ``Wᵀ W``), which equals σ_max² and
    is much cheaper for the wide (out, in·k·k) matrices of a conv; it agrees with ``svdvals`` to
    1e-5 relative (tests/test_models.py).  ``auto``: the faster of the two on the device.
    Power iteration is not offered: the authors found it inaccurate (paper Sec. 4.1).  The result
    carries no gradient and is computed in fp32 (the Gram route in fp64) even under autocast.
    """
    w = weights.detach()
    if method == "auto":
        method = FASTEST_SIGMA.get(w.device.type, "svdvals")
    with torch.autocast(w.device.type, enabled=False):
        if method == "svdvals":
            return torch.linalg.svdvals(w.float())[..., 0]
        if method == "eigvalsh":
            w = w.double()  # fp64: immune to TF32 matmul and to the squared condition number
            gram = w @ w.mT if w.shape[-2] <= w.shape[-1] else w.mT @ w
            return torch.linalg.eigvalsh(gram)[..., -1].clamp_min(0).sqrt().float()
    raise ValueError(f"unknown sigma method {method!r} ({' | '.join(SIGMA_METHODS)})")


class LipschitzConv2d(nn.Conv2d):
    """Convolution with a bounded Lipschitz constant (paper Eq. 5).

    ``W_eff = W / max(1, σ_max(W) / λ)`` where σ_max is the exact largest singular value of ``W``
    reshaped to ``(out, in·k·k)``, recomputed at every forward and treated as a constant in the
    backward pass (as in the authors' code).  ``ln_lambda`` None or 0 disables the control (a plain
    conv).  ``pad`` is ``reflection`` or ``zero`` ('same' padding for odd kernels).
    ``sigma_method`` is how σ_max is computed when the caller does not hand it to ``forward``
    (see :func:`sigma_max`; ``auto`` = the fastest exact method on the weight's device).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, bias=True,
                 ln_lambda: float | None = None, pad: str = "reflection",
                 sigma_method: str = "auto"):
        if pad not in PADS:
            raise ValueError(f"pad must be 'reflection' or 'zero', got {pad!r}")
        if sigma_method not in SIGMA_METHODS:
            raise ValueError(f"unknown sigma method {sigma_method!r} ({' | '.join(SIGMA_METHODS)})")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=(kernel_size - 1) // 2, bias=bias,
                         padding_mode="reflect" if pad == "reflection" else "zeros")
        # λ lives in a buffer as well, so that batched members (utils/members.py stacks the
        # buffers of its nets) can each have their own: --lambda auto
        self.register_buffer("bound", torch.tensor(math.inf))
        self.ln_lambda = ln_lambda
        self.sigma_method = sigma_method

    @property
    def ln_lambda(self) -> float | None:
        """λ, or None for no control (λ = ∞ gives the same weights but is still controlled)."""
        return self._ln_lambda

    @ln_lambda.setter
    def ln_lambda(self, value):
        self._ln_lambda = float(value) if value else None
        self.bound.fill_(self._ln_lambda or math.inf)

    @property
    def controlled(self) -> bool:
        return self.ln_lambda is not None

    def effective_weight(self, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """``W / max(1, σ/λ)``; σ = σ_max(W) unless given (a grouped computation, see
        :func:`grouped_sigmas`)."""
        if not self.controlled:
            return self.weight
        if sigma is None:
            sigma = sigma_max(self.weight.flatten(1), self.sigma_method)
        return self.weight / torch.clamp(sigma / self.bound, min=1.0)

    def forward(self, x, sigma: torch.Tensor | None = None):
        w = self.effective_weight(sigma)
        p = self.padding[0]
        if self.padding_mode == "reflect" and p and min(x.shape[-2:]) <= p:
            # a map too small to reflect (the 1×1 code of a 32×32 image): replicate instead
            x = F.pad(x, (p, p, p, p), mode="replicate")
            y = F.conv2d(x, w, self.bias, self.stride)
        elif self.padding_mode == "reflect" and lowered(x):
            return centred_conv(lambda v, k: self._conv_forward(v, k, None), x, w, self.bias)
        else:
            y = self._conv_forward(x, w, self.bias)
        return keep_precision(y, x)


def lowered(x: torch.Tensor) -> bool:
    """Whether a convolution of ``x`` runs below its precision: ``x`` is fp32 and autocast (bf16
    or fp16) is on for its device."""
    return x.dtype == torch.float32 and torch.is_autocast_enabled(x.device.type)


def centred_conv(conv, x: torch.Tensor, w: torch.Tensor, bias) -> torch.Tensor:
    """``conv(x, w) + b`` as ``conv(x − μ, w) + (Σ_taps w) μ + b`` (in x's precision), μ = the
    per-sample, per-channel mean of ``x`` over the map: the conv sees only what varies.

    A smooth image's feature maps are their mean plus little (after a LeakyReLU most are
    positive).  A bf16 conv rounds its input and its output to 8 bits of mantissa relative to
    the *value*, mean included, so the part that varies, which the fit is about, keeps fewer bits.
    Measured on fixed weights of the quick preset's decoder (``benchmarks.cpu_modes
    --fidelity``): at the start the bf16 output is 112 dB from fp32's instead of 86 and the
    gradient's relative error 0.0045 instead of 0.061; on weights fitted for 100-300 iterations
    the effect is mixed (#26, results/cpu_modes.md).  The mean's share
    is exact in fp32: with reflection (or replicate) padding a conv maps a constant map to a
    constant map, (Σ_taps w) μ, at any stride; with zero padding it would not (the borders), so
    only reflection-padded convs use this.  In exact arithmetic the two are the same function
    with the same gradients; under fp32 nothing calls this (the fp32 path stays the authors')."""
    # μ is a constant to autograd: the gradient in x is then conv(x)'s own, with no broadcast
    # of a gradient of μ added back into the map (a slow pass on a CPU)
    mu = x.detach().mean(dim=(2, 3), keepdim=True)
    y = conv(x - mu, w)
    with torch.autocast(x.device.type, enabled=False):
        dc = torch.einsum("oi,bi->bo", w.to(x.dtype).sum(dim=(2, 3)), mu.flatten(1))
        if bias is not None:
            dc = dc + bias
    # (in place: on a CPU, ``a + b`` into a new channels-last map with b broadcast took 20 times
    # as long as ``add_``)
    return y.to(x.dtype).add_(dc[:, :, None, None])


def keep_precision(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A layer's output ``y`` in the precision of its input ``x``.

    Under bf16 autocast only the convolutions run in bf16 (every conv of the nets ends with
    this, or hands on fp32 itself: :func:`centred_conv`, the fp32 output conv): what follows
    goes on in fp32, so that the mean-only norm's ``x − mean(x)`` does not
    cancel in bf16 (a smooth image's maps are their mean plus little, which bf16's 8 bits of
    mantissa lose; measured on the CPU: some fits of the quick preset derailed 2-3 dB below
    fp32 when the whole net ran in bf16), and the elementwise layers run in fp32, which a CPU
    also does faster than bf16."""
    return y.to(x.dtype) if y.dtype != x.dtype else y


class OutputConv2d(nn.Conv2d):
    """``nn.Conv2d`` (the nets' uncontrolled 1×1 output conv) whose output keeps the input's
    precision (:func:`keep_precision`).  Under autocast it runs in its input's precision: its
    input is the widest map at full size and its output the image, so bf16 would round the
    image's logits (a 52 dB fit is finer than bf16 resolves), and the conv itself, a few
    channels out, costs less in fp32 than the cast of its input to bf16."""

    def forward(self, x):
        if lowered(x):
            with torch.autocast(x.device.type, enabled=False):
                return super().forward(x)
        return keep_precision(super().forward(x), x)


class TransposedConv2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (the learned ``deconv`` upsampling) whose output keeps the input's
    precision (:func:`keep_precision`)."""

    def forward(self, x, output_size=None):
        return keep_precision(super().forward(x, output_size), x)


class GaussianUpsample(nn.Module):
    """Gaussian-controlled ×2 upsampling (paper Sec. 4.2): a fixed depthwise transposed conv.

    Kernel 5×5, stride 2, padding 2, output_padding 1, ``k(i,j) ∝ exp(-(d_i² + d_j²)/(2σ²))``
    with ``d_i = (i − 3)/2`` for i = 1..5, normalised to sum 1.  With ``gain='faithful'`` (the
    authors' construction) a constant input of 1 gives an output of mean 1/4, since each output
    pixel collects only every other tap; ``gain='unit'`` multiplies by 4 so the DC gain is 1.
    A small σ (0.1) is practically zero insertion, a large one a smooth interpolation.
    """

    def __init__(self, channels: int, sigma: float, gain: str = "faithful"):
        super().__init__()
        if gain not in GAINS:
            raise ValueError(f"gain must be 'faithful' or 'unit', got {gain!r}")
        self.sigma, self.gain = float(sigma), gain
        d = (torch.arange(1, 6, dtype=torch.float64) - 3) / 2
        g = torch.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * self.sigma ** 2))
        k = g / g.sum() * (4.0 if gain == "unit" else 1.0)
        self.register_buffer("kernel", k.float().expand(channels, 1, 5, 5).clone())

    def forward(self, x):
        return keep_precision(F.conv_transpose2d(x, self.kernel.to(x.dtype), stride=2, padding=2,
                                                 output_padding=1, groups=x.shape[1]), x)


class _Centre(torch.autograd.Function):
    """``x − mean_{H,W}(x)`` with its backward ``g − mean_{H,W}(g)`` as one operation.

    The same function as the two-term expression, whose backward autograd would assemble from
    two gradients of x (the subtraction's and the mean's, broadcast) added into one: on a CPU
    that broadcast addition into a channels-last map was a tenth of a fit's time."""
    generate_vmap_rule = True     # batched members (utils/members.py) vmap the nets

    @staticmethod
    def forward(x):
        return x - x.mean(dim=(2, 3), keepdim=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return g - g.mean(dim=(2, 3), keepdim=True)


class MeanOnlyNorm(nn.Module):
    """Mean-only normalisation (the paper code's default norm): ``y = x − mean_{H,W}(x) + β``.

    The mean is taken per sample and per channel; there is no scaling, so the Lipschitz bound of
    the convolutions is not undone.  One learned bias per channel.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return _Centre.apply(x) + self.bias.view(1, -1, 1, 1)


class SampleBatchNorm2d(nn.Module):
    """Batch norm with per-sample statistics: ``y = γ (x − μ) / sqrt(σ² + eps) + β``.

    μ, σ² are each sample's channel mean and (biased) variance over H, W.  For a batch of one
    (every DIP fit) this equals ``nn.BatchNorm2d`` in training mode, which is how DIP always runs
    its net; unlike it, samples of a batch never mix and there are no running statistics.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def _scale(self, var):  # (B, C, 1, 1) -> effective γ per sample
        return self.weight.view(1, -1, 1, 1).expand_as(var)

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        inv_std = torch.rsqrt(var + self.eps)
        return (x - mean) * inv_std * self._scale(var) + self.bias.view(1, -1, 1, 1)


class LipschitzBatchNorm2d(SampleBatchNorm2d):
    """Batch norm whose Lipschitz constant is bounded by ``norm_lambda`` (Gouk et al. 2021).

    The layer is the affine map ``x ↦ γ_c x / sqrt(σ_c² + eps) + const`` with constant
    ``L = max_c |γ_c| / sqrt(σ_c² + eps)``; γ is rescaled by ``1 / max(1, L / λ)`` (per sample,
    from that sample's statistics, treated as a constant in the backward pass).
    """

    def __init__(self, channels: int, norm_lambda: float = 1.0, eps: float = 1e-5):
        super().__init__(channels, eps)
        self.norm_lambda = float(norm_lambda)

    def _scale(self, var):
        gain = self.weight.abs().view(1, -1, 1, 1) * torch.rsqrt(var + self.eps)
        lip = gain.amax(dim=1, keepdim=True).detach()
        return self.weight.view(1, -1, 1, 1) / torch.clamp(lip / self.norm_lambda, min=1.0)


def make_norm(kind: str, channels: int, norm_lambda: float | None = None) -> nn.Module:
    if kind == "mean_only":
        return MeanOnlyNorm(channels)
    if kind == "batch":
        return SampleBatchNorm2d(channels)
    if kind == "lipschitz_batch":
        return LipschitzBatchNorm2d(channels, norm_lambda if norm_lambda else 1.0)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r} ({' | '.join(NORMS)})")


def make_upsample(kind: str, channels: int, sigma: float = 0.5, gain: str = "faithful"):
    """×2 upsampling: ``nearest``, ``bilinear`` (align_corners=False, as nn.Upsample),
    ``gaussian`` (fixed, see GaussianUpsample) or ``deconv`` (learned 4×4 stride-2)."""
    if kind in ("nearest", "bilinear"):
        return nn.Upsample(scale_factor=2, mode=kind)
    if kind == "gaussian":
        return GaussianUpsample(channels, sigma, gain)
    if kind == "deconv":
        return TransposedConv2d(channels, channels, 4, stride=2, padding=1)
    raise ValueError(f"unknown upsample {kind!r} ({' | '.join(UPSAMPLES)})")


def kaiming_init_(conv: nn.Conv2d) -> nn.Conv2d:
    """The authors' conv init: Kaiming uniform, a = 0, fan_in (bias keeps PyTorch's default)."""
    nn.init.kaiming_uniform_(conv.weight, a=0, mode="fan_in")
    return conv


def lipschitz_convs(net: nn.Module):
    """(name, module) of every controlled conv in ``net``."""
    return [(n, m) for n, m in net.named_modules()
            if isinstance(m, LipschitzConv2d) and m.controlled]


def grouped_sigmas(convs, method: str = "auto") -> dict:
    """σ_max of every conv in ``convs``, computed with one call per group of same-shaped
    weights (a stacked decomposition beats 12 small ones); returns ``{conv: σ}`` for the caller
    to hand to each conv's ``forward``."""
    groups: dict[tuple, list] = {}
    for m in convs:
        groups.setdefault(tuple(m.weight.shape), []).append(m)
    out = {}
    for mods in groups.values():
        sig = sigma_max(torch.stack([m.weight.flatten(1) for m in mods]), method)
        out.update(zip(mods, sig.unbind(0)))
    return out


@torch.no_grad()
def spectral_norms(net: nn.Module) -> dict[str, float]:
    """σ_max of the *effective* weight of every controlled conv, exact (svdvals), on the host."""
    return {name: float(torch.linalg.svdvals(m.effective_weight().flatten(1).float())[0])
            for name, m in lipschitz_convs(net)}


__all__ = ["sigma_max", "LipschitzConv2d", "GaussianUpsample", "MeanOnlyNorm",
           "SampleBatchNorm2d", "LipschitzBatchNorm2d", "make_norm", "make_upsample",
           "kaiming_init_", "lipschitz_convs", "grouped_sigmas", "spectral_norms"]
