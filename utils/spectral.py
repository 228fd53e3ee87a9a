"""Frequency-band correspondence (FBC), the spectral-bias measure of Shi et al. (IJCV 2022), Sec. 3.

Batched, device-agnostic and free of host syncs, so the fit loop can log it every iteration.
"""
import numpy as np
import torch

from utils.metrics import gray_for_measures

__all__ = ["frequency_band_correspondence"]

_RING_CACHE = {}


def _ring_weights(h, w, bands, device):
    """(bands, h*(w//2+1)) matrix M such that |rfft2| ratios @ M.T = per-ring means of the full spectrum.

    Rings are defined on the fftshifted spectrum: centre (cx, cy) = (w//2, h//2), distance d of
    every pixel index from it, ring k holds r_{k-1} < d <= r_k, r_k = cx * linspace(0.2, 1, bands)_k,
    r_0 = -1 (so the first ring is the disk d <= r_1). We build them directly in unshifted FFT
    order (the mean does not care about the permutation) and fold the Hermitian half that rfft2
    drops: d is symmetric under (u, v) -> (-u, -v), so each kept column 1..ceil(w/2)-1 stands for
    two frequencies and gets weight 2; column 0 and, for even w, column w/2 are their own mirror.
    """
    key = (h, w, bands, str(device))
    m = _RING_CACHE.get(key)
    if m is None:
        f64 = dict(device=device, dtype=torch.float64)

        def axis_dist(n):  # |distance from the fftshift centre| of unshifted index u
            u = torch.arange(n, **f64)
            return torch.where(u < n - n // 2, u, n - u)

        wr = w // 2 + 1
        dy, dx = axis_dist(h)[:, None], axis_dist(w)[None, :wr]
        d = torch.sqrt(dy ** 2 + dx ** 2).reshape(-1)  # float64 sqrt: same ring membership as numpy
        # the columns rfft2 keeps once (0, and w/2 for an even width) count once, the others
        # twice; built without element writes, which on CUDA can copy from the host
        col = torch.arange(wr, device=device)
        once = (col == 0) | ((col == wr - 1) & (w % 2 == 0))
        mult = torch.full((wr,), 2.0, **f64).masked_fill_(once, 1.0)
        mult = mult.expand(h, wr).reshape(-1)
        radii = [-1.0] + [(w // 2) * float(s) for s in np.linspace(0.2, 1.0, bands)]
        rings = torch.stack([(d > lo) & (d <= hi) for lo, hi in zip(radii[:-1], radii[1:])])
        m = rings.to(torch.float64) * mult
        m = m / m.sum(1, keepdim=True)  # an empty ring gives 0/0 = NaN, as numpy's mean
        _RING_CACHE[key] = m
    return m


@torch.no_grad()
def frequency_band_correspondence(output, target, bands=5):
    """Per-band mean of the clipped transfer ratio between two images (Shi et al. 2022, Sec. 3).

    H(f) = clip(|F(out)|(f) / (|F(target)|(f) + 1e-8), 0, 1), F the 2-D DFT of the gray images
    (0.2989 R + 0.5870 G + 0.1140 B, clipped to [0, 1]); band k = mean of H over ring k of the
    centred spectrum (see ``_ring_weights``); frequencies beyond radius W//2 belong to no band.
    A value of 1 means the output reproduces the target's amplitude in that band.

    output: (B, C, H, W) or (C, H, W); target: the same shape, or with batch 1 (broadcast).
    Returns (B, bands) on the input device, float32 (float64 for float64 inputs).
    """
    go, gt = gray_for_measures(output), gray_for_measures(target)
    if go.shape[1:] != gt.shape[1:] or gt.shape[0] not in (1, go.shape[0]):
        raise ValueError(f"FBC needs matching image shapes, got output {tuple(output.shape)} "
                         f"and target {tuple(target.shape)}")
    b, (h, w) = go.shape[0], go.shape[-2:]
    # One rfft2 for both: the spectrum of a real image is Hermitian, so half of it suffices.
    amp = torch.fft.rfft2(torch.cat([go, gt])[:, 0]).abs().flatten(1)
    ratio = (amp[:b] / (amp[b:] + 1e-8)).clamp_(0, 1)
    # float64 ring means: a float32 BLAS sum over ~1e5 bins is off by ~1e-4
    return (ratio.double() @ _ring_weights(h, w, bands, ratio.device).T).to(ratio.dtype)
