"""Image quality metrics (torch, batched, device-agnostic, no host sync).

All functions take images of shape (B, C, H, W) -- or a single (C, H, W) image,
treated as B = 1 -- with values in [0, 1], and return one value per image, shape (B,).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "rgb_to_ycbcr", "rgb_to_y", "ycbcr_to_rgb", "y_psnr", "psnr_b",
           "gray_for_measures"]


def _4d(x):
    """(C,H,W) -> (1,C,H,W); (B,C,H,W) unchanged."""
    if x.dim() == 3:
        return x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected a (B,C,H,W) or (C,H,W) tensor, got shape {tuple(x.shape)}")
    return x


def _float(x):
    # Metrics are never computed in half precision (the mse of good reconstructions underflows).
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


# --------------------------------------------------------------------------- PSNR
def psnr(x, y, mask=None, data_range=1.0):
    """Peak signal-to-noise ratio, PSNR = 10 log10(range^2 / MSE), per image.

    With ``mask`` (shape (B or 1, 1 or C, H, W), 1 = pixel counts) the MSE is
    sum(m (x - y)^2) / sum(m) over the counted pixels (and channels) only.
    """
    x, y = _float(_4d(x)), _float(_4d(y))
    err = (x - y) ** 2
    if mask is None:
        mse = err.flatten(1).mean(1)
    else:
        m = _4d(mask).to(err.dtype).expand_as(err)
        # clamp: an empty mask gives inf PSNR rather than nan
        mse = (err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(data_range ** 2 / mse)


# --------------------------------------------------------------------------- SSIM
def _gaussian_window(sigma, radius, device, dtype):
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def ssim(x, y, data_range=1.0, sigma=1.5, win_size=11, K1=0.01, K2=0.03):
    """Structural similarity (Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 2004), per image.

    SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
    C1 = (K1 L)^2, C2 = (K2 L)^2, local moments from an 11x11 Gaussian window (sigma 1.5,
    population covariance), 'valid' filtering (no padding), mean over the map and over
    channels. Matches ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=L)`` (skimage filters with padding
    and then crops (win-1)/2 pixels, i.e. the same valid region).
    """
    x, y = _float(_4d(x)), _float(_4d(y))
    C = x.shape[1]
    g = _gaussian_window(sigma, win_size // 2, x.device, x.dtype)
    gh = g.view(1, 1, 1, -1).repeat(C, 1, 1, 1)
    gv = g.view(1, 1, -1, 1).repeat(C, 1, 1, 1)

    def filt(t):  # separable depthwise Gaussian, valid region only
        return F.conv2d(F.conv2d(t, gh, groups=C), gv, groups=C)

    mu_x, mu_y = filt(x), filt(y)
    # one batched pass for the second moments
    sxx, syy, sxy = filt(torch.cat([x * x, y * y, x * y])).chunk(3)
    var_x, var_y, cov = sxx - mu_x ** 2, syy - mu_y ** 2, sxy - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


# --------------------------------------------------------------------------- colour
# ITU-R BT.601 "studio swing", as MATLAB rgb2ycbcr, for RGB in [0,1]:
#   [Y Cb Cr]^T = (M [R G B]^T + o) / 255, Y in [16,235]/255, Cb, Cr in [16,240]/255.
_M = [[65.481, 128.553, 24.966],
      [-37.797, -74.203, 112.0],
      [112.0, -93.786, -18.214]]
_O = [16.0, 128.0, 128.0]


def gray_for_measures(img):
    """The gray image of the spectral-bias measures (FBC, blurriness, sharpness), as the authors:
    ``clip(0.2989 R + 0.5870 G + 0.1140 B, 0, 1)`` (MATLAB rgb2gray weights, full range).

    (B, C, H, W) or (C, H, W) in [0, 1], C = 1 or 3 -> (B, 1, H, W); one channel is only
    clipped.  Float64 stays float64, anything else becomes float32.  Evaluation on luma (SR,
    deblocking) uses :func:`rgb_to_y` instead: BT.601 studio range, as those benchmarks do.
    """
    x = img.detach()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected a (B,C,H,W) or (C,H,W) image with C = 1 or 3, got {tuple(img.shape)}")
    if x.dtype != torch.float64:
        x = x.float()
    if x.shape[1] == 3:
        x = 0.2989 * x[:, 0:1] + 0.5870 * x[:, 1:2] + 0.1140 * x[:, 2:3]
    return x.clamp(0, 1)


def rgb_to_ycbcr(x):
    """RGB in [0,1] -> YCbCr (B,3,H,W), BT.601 studio range (MATLAB rgb2ycbcr), scaled by 1/255."""
    x = _float(_4d(x))
    M = torch.tensor(_M, dtype=x.dtype, device=x.device) / 255
    o = torch.tensor(_O, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255
    return torch.einsum("ij,bjhw->bihw", M, x) + o


def rgb_to_y(x):
    """Luma only: Y = (65.481 R + 128.553 G + 24.966 B + 16) / 255, shape (B,1,H,W)."""
    return rgb_to_ycbcr(x)[:, :1]


def ycbcr_to_rgb(x):
    """Inverse of :func:`rgb_to_ycbcr`: RGB = M^-1 (255 YCbCr - o) / 1 (not clipped)."""
    x = _float(_4d(x))
    # invert in float64 for an exact round trip, then cast
    Minv = torch.linalg.inv(torch.tensor(_M, dtype=torch.float64)) * 255
    o = torch.tensor(_O, dtype=torch.float64) / 255
    Minv = Minv.to(device=x.device, dtype=x.dtype)
    o = o.to(device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return torch.einsum("ij,bjhw->bihw", Minv, x - o)


def y_psnr(x, y, border=4, data_range=1.0):
    """DIP's super-resolution score: PSNR on the BT.601 Y channel after cropping ``border``
    pixels on each side (DIP, Ulyanov et al. 2018, Sec. 4 / the standard SR protocol).
    Single-channel images are used as they are."""
    x, y = _4d(x), _4d(y)
    if x.shape[1] == 3:
        x, y = rgb_to_y(x), rgb_to_y(y)
    if border > 0:
        x = x[..., border:-border, border:-border]
        y = y[..., border:-border, border:-border]
    return psnr(x, y, data_range=data_range)


# --------------------------------------------------------------------------- PSNR-B
def _bef(x, block):
    """Blocking effect factor per image and channel, shape (B, C) (Yim & Bovik 2011, Eqs. 3-8).

    D_B   = mean of squared differences of horizontally/vertically adjacent pixel pairs that
            straddle a block boundary (columns/rows k*block-1 | k*block, 0-based),
    D_B^c = the same over all other adjacent pairs,
    eta   = log2(block) / log2(min(H, W)) if D_B > D_B^c else 0,
    BEF   = eta (D_B - D_B^c).
    The means divide by the number of pairs actually counted (N_HB + N_VB, resp.
    N_HBc + N_VBc), which equals the paper's counts when H, W are multiples of ``block``.
    """
    H, W = x.shape[-2:]
    dh = (x[..., :, 1:] - x[..., :, :-1]) ** 2  # pair (j, j+1) is column j of dh, (B,C,H,W-1)
    dv = (x[..., 1:, :] - x[..., :-1, :]) ** 2  # (B,C,H-1,W)
    # boundary pairs as 0/1 weights built on the device (boolean indexing would sync the host)
    bh = ((torch.arange(W - 1, device=x.device) % block) == block - 1).to(x.dtype)
    bv = ((torch.arange(H - 1, device=x.device) % block) == block - 1).to(x.dtype)
    n_hb = len(range(block - 1, W - 1, block)) * H
    n_vb = len(range(block - 1, H - 1, block)) * W
    n_hc, n_vc = (W - 1) * H - n_hb, (H - 1) * W - n_vb
    s_hb = (dh * bh).sum((-1, -2))
    s_vb = (dv * bv[:, None]).sum((-1, -2))
    s_hc = dh.sum((-1, -2)) - s_hb
    s_vc = dv.sum((-1, -2)) - s_vb
    d_b = (s_hb + s_vb) / max(n_hb + n_vb, 1)
    d_bc = (s_hc + s_vc) / max(n_hc + n_vc, 1)
    eta = math.log2(block) / math.log2(min(H, W))
    return torch.where(d_b > d_bc, eta * (d_b - d_bc), torch.zeros_like(d_b))


def psnr_b(x, ref, block=8):
    """PSNR-B (Yim & Bovik, "Quality assessment of deblocked images", IEEE TIP 2011), per image.

    PSNR-B = 10 log10(1 / (MSE(x, ref) + BEF(x))) for images in [0,1], where the blocking
    effect factor BEF (see :func:`_bef`) is measured on the *test* image ``x``. For colour
    images the MSE is over all channels and BEF is the mean of the per-channel BEFs,
    i.e. MSE-B = mean_c (MSE_c + BEF_c) (Yim & Bovik define it for one channel).
    Equals PSNR whenever BEF = 0 (D_B <= D_B^c).
    """
    x, ref = _float(_4d(x)), _float(_4d(ref))
    if block < 2:
        raise ValueError("block must be >= 2")
    mse = ((x - ref) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / (mse + _bef(x, block).mean(1)))


def estimate_sigma(img) -> float:
    """σ of additive Gaussian noise in an (H, W, C) image in [0, 1], on the same scale: the
    wavelet (finest diagonal band) median estimator of Donoho & Johnstone (1994), as
    ``skimage.restoration.estimate_sigma``, averaged over the channels (``--sigma auto``)."""
    from skimage.restoration import estimate_sigma as wavelet_sigma
    a = np.asarray(img, dtype=np.float64)
    a = a[..., None] if a.ndim == 2 else a
    return float(np.mean([wavelet_sigma(a[..., c]) for c in range(a.shape[-1])]))

