"""Degradations (physics) and DIP data terms, kept separate from networks and solvers.

Data terms are ``nn.Module`` s holding the observation y (and mask / kernel) as buffers,
so ``.to(device)`` moves them. All are batched: row b of the network output is compared
with row b of y (B independent images / ensemble members).

The degradation helpers reproduce the settings of DIP (Ulyanov et al., CVPR 2018) and of
Shi et al. (IJCV 2022) and are deterministic given their seed.
"""
import copy
import io
import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .metrics import psnr

OBJECTIVES = ("mse", "spectral")   # DataTerm.loss: DIP's pixel MSE, or spectral_loss

__all__ = [
    "OBJECTIVES", "DataTerm", "IdentityTerm", "MaskedTerm", "DownsampleTerm", "BlurTerm",
    "lanczos_kernel",
    "downsample", "gaussian_kernel", "gaussian_radius", "max_blur_sigma", "blur",
    "add_gaussian_noise", "bernoulli_mask", "jpeg_compress", "pil_downscale", "bicubic_upscale",
    "enhance",
]


def _4d(t):
    t = torch.as_tensor(t)
    return t.unsqueeze(0) if t.dim() == 3 else t


# --------------------------------------------------------------------------- data terms
class DataTerm(nn.Module):
    """Base data term E(x; y) = mean over counted pixels of (A(x) - y)^2, per sample.

    Subclasses override :meth:`forward` (the operator A) and, where pixels are excluded,
    set the ``mask`` buffer (1 = counts; broadcastable to y).

    Held-out pixels (:meth:`with_holdout`, for the validation stop of Self-Validation DIP, Li et
    al., BMVC 2021): a random set of observed pixel positions, ``holdout`` (1, 1, h, w) = 1, is
    left out of :meth:`loss` and scored alone by :meth:`heldout_loss`.
    """

    # utils/tiles.py: a term can be fitted in tiles when A(x) at a pixel reads x near it only
    # (``local``); ``pixelwise``: from that pixel alone, so a tile's observation needs no edge
    # cut off; ``scale``: output pixels per observation pixel along an axis (SR's factor)
    pixelwise = False
    local = False
    scale = 1

    def __init__(self, observation, mask=None):
        super().__init__()
        self.register_buffer("observation", _4d(observation).float())
        self.register_buffer("mask", None if mask is None else _4d(mask).float())
        self.register_buffer("holdout", None)

    def with_holdout(self, fraction, seed=0, region=None):
        """A copy of this term whose loss leaves out ``round(fraction · n)`` of its n observed
        pixel positions (all channels of a position together), drawn with ``seed``; the
        observation and the operator are shared, not copied.

        region: (h, w) of the true image in the observation when it is padded: positions are
        drawn inside it, and the padding (a mirror of the image, which would show the net the
        noise of held-out pixels) leaves the loss too."""
        if not 0 < fraction < 1:
            raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
        y = self.observation
        H, W = y.shape[-2:]
        inside = torch.zeros(H, W, dtype=torch.bool, device=y.device)
        h, w = region or (H, W)
        inside[:h, :w] = True
        known = inside
        if self.mask is not None:   # only pixels that are observed can be held out
            known = inside & (self.mask > 0).all(1).all(0).expand(H, W)
        where = known.flatten().nonzero().flatten().cpu()
        g = torch.Generator().manual_seed(int(seed))
        n = min(max(1, round(fraction * len(where))), len(where) - 1)
        if n < 1:
            raise ValueError("too few observed pixels to hold any out")
        hold = torch.zeros(H * W)
        hold[where[torch.randperm(len(where), generator=g)[:n]]] = 1
        hold = hold.view(1, 1, H, W).to(y.device)
        inside = inside.float()[None, None]
        return self.with_buffers(holdout=hold, holdout_keep=inside * (1 - hold),
                                 measured=inside if self.mask is None else self.mask * inside)

    def with_buffers(self, **buffers):
        """A shallow copy of this term with some buffers replaced (the others shared)."""
        term = copy.copy(self)
        term._buffers = dict(self._buffers, **buffers)
        return term

    def fitted_mask(self):
        """1 where a pixel counts in :meth:`loss`: ``mask`` without the held-out positions (and,
        with held-out pixels, without the padding)."""
        if self.holdout is None:
            return self.mask
        keep = self.holdout_keep
        return keep if self.mask is None else self.mask * keep

    def measured_mask(self):
        """1 where a pixel counts in the fit's monitors (:meth:`psnr_of`, :meth:`saturation`):
        ``mask``, and with held-out pixels the true image only, as in :meth:`loss` (the
        padding is then no part of the fit, and its pixels, free to drift to 0 or 1, would
        mask a collapse of the image or fake one)."""
        return self.mask if self.holdout is None else self.measured

    def heldout_loss(self, ax):
        """(B,) mean of (A(x) − y)² over the held-out pixels, from an already computed A(x)
        (with Gaussian noise of variance σ², its expectation is the MSE to the clean image plus
        σ², as the net never saw these pixels' noise)."""
        r = (ax - self.observation) ** 2
        m = self.holdout.expand_as(r)
        return (r * m).flatten(1).sum(1) / m.flatten(1).sum(1)

    def forward(self, x):
        """A(x): identity here."""
        return x

    objective = "mse"       # the class default; a term's own: with_objective

    def with_objective(self, name):
        """A copy of this term whose :meth:`loss` is ``name`` (``OBJECTIVES``): ``mse``, DIP's
        pixel loss, or ``spectral`` (:meth:`spectral_loss`)."""
        if name not in OBJECTIVES:
            raise ValueError(f"unknown loss {name!r} ({' | '.join(OBJECTIVES)})")
        term = self.with_buffers()
        term.objective = name
        return term

    def loss(self, x):
        """(B,) the objective of a sample: :meth:`pixel_loss` or :meth:`spectral_loss`."""
        return self.spectral_loss(x) if self.objective == "spectral" else self.pixel_loss(x)

    def spectral_loss(self, x):
        """(B,) a spectral objective in the style of Deep Spectral Prior (Cheng, Zhao, Zeng,
        Lio, Schönlieb, Aviles-Rivero, arXiv 2505.19873, 2025): the Fourier coefficients of
        the fitted residual matched, amplitude and phase jointly, as the mean modulus

            E(x) = mean_{c,k} |F(m ⊙ (A x − y))_c(k)|,   F the unitary 2-D DFT per channel,

        m the counted pixels (the mask of inpainting, without held-out pixels; 1 elsewhere).

        Only the paper's abstract could be read here (its equations were out of reach), so
        every choice below is ours, made from what the abstract states ("directly matches
        Fourier coefficients between the network output and observed measurements", "the
        complex frequency domain", "joint learning of amplitude and phase") and from one
        constraint: the squared modulus summed over k is, by Parseval, exactly the pixel MSE
        (unitary F), so a spectral objective that differs from DIP's must not square it.
        Choices: the complex difference (amplitude and phase together, not |F x| − |F y|,
        which would drop the phase); its modulus, unsquared (an L1 norm over frequencies of
        the complex residual: every frequency's residual pulls with the same strength, where
        the MSE pulls with its size); the unitary normalisation (``norm="ortho"``, so a
        frequency's modulus is on the pixels' scale); the measurement compared as in the
        pixel loss (A x against y: the masked output for inpainting, the downsampled one for
        super-resolution, the blurred one for deblurring), the mask applied before the
        transform; the mean over channels and all H·W coefficients (the redundant half of
        a real signal's spectrum included, which only doubles weights); no frequency
        weighting and no pixel term; |·| of an exact 0 has gradient 0 (PyTorch's)."""
        r = self(x) - self.observation
        mask = self.fitted_mask()
        if mask is not None:
            r = r * mask
        return torch.fft.fft2(r, norm="ortho").abs().flatten(1).mean(1)

    def pixel_loss(self, x):
        """(B,) per-sample MSE between A(x) and y over the counted pixels (DIP's loss)."""
        r = (self(x) - self.observation) ** 2
        mask = self.fitted_mask()
        if mask is None:
            return r.flatten(1).mean(1)
        m = mask.expand_as(r)
        return (r * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)

    def psnr_obs(self, x):
        """(B,) PSNR of A(x) against y over the counted pixels (a fit-to-data monitor)."""
        return self.psnr_of(self(x).detach())

    def psnr_of(self, ax):
        """:meth:`psnr_obs` from an already computed A(x)."""
        return psnr(ax, self.observation.expand_as(ax), mask=self.measured_mask())

    def saturation(self, ax, tol=0.5 / 255):
        """(B,) fraction of the counted values of A(x) (or of y) within half a grey level of 0
        or 1: a sigmoid output stuck there has collapsed (utils.fit backtracking)."""
        s = ((ax <= tol) | (ax >= 1 - tol)).to(ax.dtype)
        mask = self.measured_mask()
        if mask is None:
            return s.flatten(1).mean(1)
        m = mask.expand_as(s)
        return (s * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)


class IdentityTerm(DataTerm):
    """A = I: denoising, JPEG deblocking, detail enhancement (DIP Sec. 4; Shi et al. Sec. 5).
    E(x) = ||x - y||^2 / N."""
    pixelwise = local = True


class MaskedTerm(DataTerm):
    """Inpainting (DIP Sec. 4, Eq. 6): E(x) = ||(x - x0) * m||^2, m = 1 on known pixels.

    :meth:`loss` follows DIP's code, ``mse(out * m, x0 * m)``: the squared masked error is
    averaged over ALL pixels (known or not), i.e. it is the known-pixel MSE scaled by the
    known fraction. Only known pixels get gradient. :meth:`psnr_obs` uses known pixels only.
    Mask shape (B or 1, 1 or C, H, W).
    """

    pixelwise = local = True

    def __init__(self, observation, mask):
        super().__init__(observation, mask)

    def pixel_loss(self, x):
        r = ((x - self.observation) * self.fitted_mask()) ** 2
        return r.flatten(1).mean(1)


def lanczos_kernel(factor):
    """DIP's 'lanczos2' downsampling kernel, phase 0.5, shape (4f, 4f), sums to 1.

    k(i, j) = L(d_i) L(d_j), i, j = 1..4f, d_i = |i + 0.5 - (4f + 2)/2| / f,
    L(d) = 2 sin(pi d) sin(pi d / 2) / (pi^2 d^2), L(0) = 1 (Lanczos window, support a = 2),
    as ``get_kernel(factor, 'lanczos', 0.5, 4f + 1, support=2)`` in DIP's models/downsampler.py.
    """
    f = int(factor)
    if f < 1:
        raise ValueError("factor must be a positive integer")
    i = torch.arange(1, 4 * f + 1, dtype=torch.float64)
    d = (i + 0.5 - (4 * f + 2) / 2).abs() / f
    safe = torch.where(d == 0, torch.ones_like(d), d)
    L = 2 * torch.sin(math.pi * safe) * torch.sin(math.pi * safe / 2) / (math.pi ** 2 * safe ** 2)
    L = torch.where(d == 0, torch.ones_like(d), L)
    k = L[:, None] * L[None, :]
    return (k / k.sum()).float()


def _pads(f):
    # total padding 4f - f makes the output exactly HR / f; DIP pads (4f - f)/2 per side
    # (even f); for odd f the extra pixel goes to the right/bottom.
    lo = (3 * f) // 2
    return lo, 3 * f - lo


def _apply_kernel(x, kernel, f):
    C = x.shape[1]
    lo, hi = _pads(f)
    w = kernel.to(x.dtype).expand(C, 1, *kernel.shape)  # depthwise: each channel on its own
    return F.conv2d(F.pad(x, (lo, hi, lo, hi), mode="replicate"), w, stride=f, groups=C)


def downsample(x, factor):
    """DIP's fixed SR degradation: replicate pad, depthwise conv with :func:`lanczos_kernel`,
    stride f. (B,C,H,W) -> (B,C,H//f,W//f) (exact when H, W are multiples of f)."""
    x = _4d(x)
    return _apply_kernel(x, lanczos_kernel(factor).to(x.device), int(factor))


class DownsampleTerm(DataTerm):
    """Super-resolution (DIP Sec. 4, Eq. 5): E(x) = ||d(x) - y_LR||^2, d = :func:`downsample`."""

    local = True    # an LR pixel reads a 4f × 4f footprint of x

    def __init__(self, observation, factor):
        super().__init__(observation)
        self.factor = self.scale = int(factor)
        self.register_buffer("kernel", lanczos_kernel(self.factor))

    def forward(self, x):
        return _apply_kernel(x, self.kernel, self.factor)


def gaussian_radius(sigma):
    """The radius of :func:`gaussian_kernel`'s default grid: ceil(3σ)."""
    return int(math.ceil(3 * sigma))


def max_blur_sigma(height, width):
    """The largest σ whose kernel :func:`blur` can apply to an (height, width) image with its
    reflect padding: radius ceil(3σ) ≤ min(height, width) − 1.  A wider kernel would reach
    past the mirrored image (and a σ of hundreds builds a kernel of millions of taps)."""
    return (min(int(height), int(width)) - 1) / 3


def gaussian_kernel(sigma, radius=None, max_radius=None):
    """Normalised 2-D Gaussian ``k(i, j) ∝ exp(-(i² + j²) / (2σ²))`` on a (2r+1)² grid,
    r = ceil(3σ) by default; sums to 1. float32 tensor.  max_radius: a ValueError, before
    anything is allocated, for a larger r."""
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"blur sigma must be a finite number > 0, got {sigma}")
    r = gaussian_radius(sigma) if radius is None else int(radius)
    if max_radius is not None and r > max_radius:
        raise ValueError(f"blur sigma {sigma:g} needs a kernel of radius {r}, more than "
                         f"{max_radius}")
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).float()


def blur(x, kernel):
    """Depthwise 'same' convolution of (B, C, H, W) with a 2-D kernel, reflect-padded borders
    (the degradation and the data term of deblurring use this one operator)."""
    x = _4d(x)
    C, (kh, kw) = x.shape[1], kernel.shape
    w = kernel.to(x.dtype).expand(C, 1, kh, kw)
    pad = (kw // 2, kw - 1 - kw // 2, kh // 2, kh - 1 - kh // 2)
    mode = "reflect" if min(x.shape[-2:]) > max(kh, kw) // 2 else "replicate"
    return F.conv2d(F.pad(x, pad, mode=mode), w, groups=C)


class BlurTerm(DataTerm):
    """Deblurring: E(x) = ||k * x - y||^2 with a fixed blur kernel k (:func:`blur`)."""

    local = True    # a pixel of k * x reads the kernel's footprint of x

    def __init__(self, observation, kernel):
        super().__init__(observation)
        self.register_buffer("kernel", torch.as_tensor(kernel, dtype=torch.float32))

    def forward(self, x):
        return blur(x, self.kernel)


# --------------------------------------------------------------------------- degradations
def add_gaussian_noise(x, sigma, seed):
    """x + n, n ~ N(0, (sigma/255)^2), clipped to [0, 1]; ``sigma`` on the 0-255 scale.

    The noise is ``np.random.RandomState(seed).normal(scale=sigma/255, size=x.shape)``, drawn
    in the array's own layout (as DIP's get_noisy_image, but without global seeding).
    numpy in -> float32 numpy out; torch in -> torch out (same dtype/device, same noise).
    """
    noise = np.random.RandomState(seed).normal(scale=sigma / 255.0, size=tuple(x.shape))
    if isinstance(x, torch.Tensor):
        return (x + torch.as_tensor(noise, dtype=x.dtype, device=x.device)).clamp(0, 1)
    return np.clip(np.asarray(x, dtype=np.float64) + noise, 0, 1).astype(np.float32)


def bernoulli_mask(height, width, rate=0.5, seed=100):
    """Random pixel mask of Shi et al.'s inpainting: True = known pixel, ``rate`` = drop rate.

    Identical to the authors' ``np.random.seed(seed); np.random.random_sample((1,H,W)) > rate``
    (a private RandomState gives the same stream and leaves the global state alone).
    Returns a bool array of shape (1, H, W).
    """
    return np.random.RandomState(seed).random_sample(size=(1, height, width)) > rate


def _to_pil(img):
    """A Pillow image of a uint8 (H, W), (H, W, 1) or (H, W, 3) array, and whether the input
    had a channel axis of one (to give the result the same layout)."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H,W) or (H,W,C) array, got {img.dtype}")
    single = img.ndim == 3 and img.shape[2] == 1
    return Image.fromarray(img[..., 0] if single else img), single


def _from_pil(im, single):
    a = np.array(im)
    return a[..., None] if single else a


def jpeg_compress(img, quality):
    """JPEG round trip in memory with Pillow, the authors' settings
    (``quality=q, optimize=True, progressive=True``). uint8 (H,W[,C]) in and out."""
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an int in 1..100, got {quality!r}")
    im, single = _to_pil(img)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality), optimize=True, progressive=True)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return _from_pil(decoded, single)


def pil_downscale(img, factor):
    """LR image for SR: Pillow resize to (W//f, H//f) with LANCZOS. uint8 (H,W[,C])."""
    im, single = _to_pil(img)
    w, h = im.size
    return _from_pil(im.resize((w // factor, h // factor), Image.LANCZOS), single)


def bicubic_upscale(img, factor):
    """SR baseline: Pillow BICUBIC resize of the LR image by ``factor`` (to (f W, f H))."""
    im, single = _to_pil(img)
    w, h = im.size
    return _from_pil(im.resize((w * factor, h * factor), Image.BICUBIC), single)


def enhance(x, base, detail_gain=1.0, signed=False):
    """Detail enhancement (DIP Sec. 4 / Shi et al.): boost the detail layer x - base, where
    base is the (smooth) DIP reconstruction of x.

    signed=False (authors' code): clip(x + g * clip(x - base, 0, 1), 0, 1)
    signed=True:                  clip(x + g * (x - base), 0, 1)
    numpy or torch.
    """
    clip = torch.clamp if isinstance(x, torch.Tensor) else np.clip
    detail = x - base
    if not signed:
        detail = clip(detail, 0, 1)
    return clip(x + detail_gain * detail, 0, 1)
