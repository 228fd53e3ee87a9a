"""Classic (non-DIP) methods the paper tables compare with, run on the CPU.

Each method takes the task's ``Problem`` (its ``observed`` degraded image, (h, w, C) in [0, 1],
and its ``inputs``) and the resolved configuration, and returns its estimate of the clean image
at the true size, float32 (h, w, C); baselines.py scores it with ``utils.task.score``, the very
function that scores the DIP outputs.  A task names its methods in ``Task.baselines``.
"""
from __future__ import annotations

import importlib.util

import numpy as np

NLM_H = 0.8           # h = NLM_H * sigma
NLM_ARGS = dict(patch_size=5, patch_distance=6, fast_mode=True)
TV_WEIGHT = 0.08      # one weight for all images, fixed a priori (not tuned on ground truth)
RL_ITERS = 30         # Richardson-Lucy iterations, fixed a priori


def degraded_input(problem, cfg):
    """The degraded input itself (noisy image, JPEG image, blurred image)."""
    return problem.observed


def cbm3d(problem, cfg):
    """CBM3D (``bm3d.bm3d_rgb``, opponent colour space, 'np' profile), σ known; BM3D for gray."""
    if not available("cbm3d"):
        raise RuntimeError("the bm3d package is not installed")
    import bm3d     # here, not at import: it takes about 1.2 s (scipy.signal, bm4d)
    z, sigma = problem.observed.astype(np.float64), cfg["sigma"] / 255
    out = bm3d.bm3d_rgb(z, sigma) if z.shape[2] == 3 else bm3d.bm3d(z[..., 0], sigma)[..., None]
    return np.asarray(out, np.float32)


def nl_means(problem, cfg):
    """skimage non-local means: h = 0.8 σ, σ known, 5×5 patches, 13×13 search, fast mode."""
    from skimage.restoration import denoise_nl_means
    s, z = cfg["sigma"] / 255, problem.observed
    out = denoise_nl_means(z, h=NLM_H * s, sigma=s, channel_axis=-1, **NLM_ARGS)
    return np.asarray(out, np.float32).reshape(z.shape)


def tv_chambolle(problem, cfg):
    """skimage total-variation denoising (Chambolle), one weight for all images."""
    from skimage.restoration import denoise_tv_chambolle
    out = denoise_tv_chambolle(problem.observed, weight=TV_WEIGHT, channel_axis=-1)
    return np.asarray(out, np.float32)


def bicubic(problem, cfg):
    """Pillow bicubic upscaling of the LR image (made by the task with the LR image)."""
    return problem.inputs["bicubic"]


def mean_fill(problem, cfg):
    """Holes filled with the mean of the known pixels (per channel)."""
    z, m = problem.observed, np.broadcast_to(problem.inputs["mask"] > 0.5, problem.observed.shape)
    mean = (z * m).sum((0, 1)) / m.sum((0, 1))
    return np.where(m, z, mean).astype(np.float32)


def biharmonic(problem, cfg):
    """skimage ``inpaint_biharmonic`` of the unknown pixels."""
    from skimage.restoration import inpaint_biharmonic
    unknown = problem.inputs["mask"][..., 0] <= 0.5
    return np.asarray(inpaint_biharmonic(problem.observed, unknown, channel_axis=-1), np.float32)


def richardson_lucy(problem, cfg):
    """skimage Richardson-Lucy deconvolution with the known blur kernel, 30 iterations, on the
    image reflect-padded by the kernel size (skimage's zero boundary would ring at the edges,
    where the degradation reflected)."""
    from skimage.restoration import richardson_lucy as rl
    psf = problem.data_term.kernel.numpy().astype(np.float64)
    r = psf.shape[0]
    z = np.pad(problem.observed.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
    out = np.stack([rl(z[..., c], psf, num_iter=RL_ITERS, clip=True)[r:-r, r:-r]
                    for c in range(z.shape[2])], -1)
    return out.astype(np.float32)


# name -> (method, label in the tables, one line on its setting)
METHODS = {
    "input": (degraded_input, "degraded input", "the degraded input itself, no restoration"),
    "cbm3d": (cbm3d, "CBM3D", "bm3d.bm3d_rgb(noisy, sigma_psd=σ/255), profile 'np', opponent "
                              "colour space (σ known)"),
    "nlm": (nl_means, "NLM", f"skimage denoise_nl_means(h={NLM_H}·σ, σ known, patch_size=5, "
                             "patch_distance=6, fast_mode=True)"),
    "tv": (tv_chambolle, "TV", f"skimage denoise_tv_chambolle(weight={TV_WEIGHT}), one weight "
                               "fixed a priori (no tuning on ground truth)"),
    "bicubic": (bicubic, "bicubic", "Pillow BICUBIC upscaling of the LR image"),
    "mean_fill": (mean_fill, "mean fill", "holes = the mean of the known pixels"),
    "biharmonic": (biharmonic, "biharmonic", "skimage inpaint_biharmonic"),
    "richardson_lucy": (richardson_lucy, "Richardson-Lucy",
                        f"skimage richardson_lucy with the true kernel, {RL_ITERS} iterations, "
                        "reflect-padded"),
}


def available(name: str) -> bool:
    """False where a method's package is missing (its cells then read 'not available')."""
    return not (name == "cbm3d" and importlib.util.find_spec("bm3d") is None)
