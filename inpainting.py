"""Inpainting with a Deep Image Prior whose spectral bias is controlled.

Shi et al., IJCV 2022 (Sec. 5.3); Ulyanov et al., CVPR 2018 (Sec. 4, Table 1).
Data term ``‖(f(z) − x0) ⊙ m‖²`` with m = 1 on known pixels.  Masks: the authors' 50 % Bernoulli
mask (regenerated bit for bit), a mask image beside the input (``NAME_mask.png``), or ``--mask``.

    python inpainting.py                                  # the 11 Bernoulli images of DIP Table 1
    python inpainting.py --image photo.png --mask holes.png --observed
"""
import dataclasses
import sys
from pathlib import Path

import numpy as np

from utils.imageio import ImageError, load_mask, to_tensor
from utils.metrics import psnr, ssim
from utils.physics import MaskedTerm, bernoulli_mask
from utils.task import Problem, Task, prepare

# ---- hyperparameters: the authors' inpainting values (code/inpainting.py) ----
config = dict(
    net="decoder",                  # network: decoder | hourglass | convnet
    input="fourier",                # input code z: fourier | noise | meshgrid
    input_channels=32,              # channels of the code z
    input_var=1.0,                  # scale of the code
    ln_lambda=1.6,                  # Lipschitz bound λ of every 3×3 conv (0 = no control)
    upsample="bilinear",            # ×2 upsampling: nearest | bilinear | deconv | gaussian
    gaussian_sigmas=(0.1, 0.1, 0.1, 0.5, 0.5),  # σ of each Gaussian upsampling, coarse to fine
    norm="mean_only",               # normalisation: mean_only | batch | lipschitz_batch | none
    pad="reflection",               # conv padding: reflection | zero
    channels=128,                   # decoder width
    optimizer="adam",               # adam | lbfgs
    lr=0.001,                       # learning rate
    iters=10000,                    # iterations (at most: the stop rule ends the fit earlier)
    reg_noise_std=0.0,              # DIP's input perturbation z + N(0, std) per iteration
    exp_weight=0.99,                # weight of the moving average of outputs (output_ema)
    stop="ratio",                   # stopping rule: ratio | validation | variance | none
    stop_window=100,                # window n of the stopping rule (evaluations)
    stop_eps=0.01,                  # ε of the ratio rule
    stop_patience=1000,             # patience of the validation and variance rules (iterations)
    log_every=1,                    # measures (FBC, ratio, PSNR) every k iterations
    drop_rate=0.5,                  # Bernoulli mask: the fraction of pixels dropped
    mask_seed=100,                  # Bernoulli mask: np.random.seed(100), > drop_rate is known
    mask=None,                      # mask image (white = known pixel) for every image
    mask_threshold=0.0,             # mask: known from this gray level (0-1); 0: two-valued only
    seed=0,                         # seed of the init and the code
    device="auto",                  # auto | cpu | cuda
    restarts=1,                     # independent fits averaged
    crop=0,                         # centre crop (pixels) before anything; 0 = whole image
)
# ---- the CPU quick preset: a 128×128 centre crop and a narrower, faster decoder at lr 0.002
# (0.005 collapses grayscale fits; benchmarks/robustness.py: results/robustness.md); an image
# larger than the crop is fitted in blended tiles of the crop's size unless a hole of its mask is
# too wide for them (tile: one such net for a whole 256² image came out 1.1–2.6 dB below
# biharmonic inpainting, the tiles 0.07 below to 1.0 dB above it: results/tiles.md) ----
quick = dict(crop=128, channels=64, iters=900, lr=0.002, log_every=10, stop_window=20,
             tile=128)


def mask_file(img, cfg):
    """The user's mask file (--mask, or NAME_mask.png beside the image), or None."""
    path = cfg["mask"]
    if path is None and img.path is not None:
        # the file's own stem: img.name may be made unique in a folder (x.png beside x.jpg)
        sibling = Path(img.path).with_name(f"{Path(img.path).stem}_mask.png")
        path = sibling if sibling.exists() else None
    if path is None and cfg["observed"]:
        beside = f", or {Path(img.path).stem}_mask.png beside the image" if img.path else ""
        raise ImageError(img.path or img.name, "--observed inpainting needs a mask: --mask "
                         f"FILE{beside}")
    return path


def _checked(known, path):
    """A mask must mark some pixel known; one that marks every pixel leaves nothing to fill, and
    one that marks under a quarter of them known is likely inverted (the holes painted white)."""
    if not known.any():
        raise ImageError(path, "the mask marks no pixel as known (all black): nothing to fit")
    if known.all():
        return [f"{path}: the mask marks every pixel as known: nothing to fill"]
    if known.mean() < 0.25:
        return [f"{path}: the mask marks only {100 * known.mean():.0f} % of the pixels as known "
                "(white = known, black = to fill): if its holes are the white part, invert it"]
    return []


def user_mask(img, cfg):
    """(the user's mask as (H, W) bool, or None; warnings)."""
    path, threshold = mask_file(img, cfg), cfg["mask_threshold"]
    if path is None:
        return None, ([f"--mask-threshold {threshold}: no mask file, so the Bernoulli mask is "
                       "used"] if threshold else [])
    known = load_mask(path, img.array.shape[:2], threshold)
    return known, _checked(known, path)


def reads(img, cfg):
    """The mask file this image's run reads, checked (the command line calls this up front)."""
    path = mask_file(img, cfg)
    if path is not None:
        _checked(load_mask(path, img.array.shape[:2], cfg["mask_threshold"]), path)
    return [] if path is None else [Path(path)]


def make_problem(img, cfg):
    mask, notes = user_mask(img, cfg)
    # the mask follows the image through the quick crop / --crop32 exactly like the pixels
    a = img.array if mask is None else np.concatenate(
        [img.array, mask[..., None].astype(np.float32)], -1)
    stacked = dataclasses.replace(img, array=a)
    clean, padded, region = prepare(stacked, cfg)
    h, w = region
    if mask is None:
        known, rate = bernoulli_mask(h, w, cfg["drop_rate"], cfg["mask_seed"])[0], cfg["drop_rate"]
        if not known.any():     # as a mask file is checked (_checked), at the rate's extremes
            raise ImageError(img.path or img.name, f"--drop-rate {rate} drops every pixel of "
                             f"this {w}x{h} image: nothing to fit")
        notes = notes + [f"--drop-rate {rate} drops no pixel of this {w}x{h} image: nothing "
                         "to fill"] * bool(known.all())
    else:
        clean, padded, known = clean[..., :-1], padded[..., :-1], clean[..., -1] > 0.5
        if a.shape[:2] != clean.shape[:2]:     # cropped: check what is left
            notes = _checked(known, f"{mask_file(img, cfg)} (cropped to {w}x{h})")
    m_pad = np.zeros(padded.shape[:2] + (1,), np.float32)
    m_pad[:h, :w, 0] = known                       # padded border pixels count as unknown
    m = to_tensor(m_pad)
    x = to_tensor(padded)
    y = x * m
    masked = clean * known[..., None]
    inputs = {"masked": masked, "mask": known[..., None].astype(np.float32)}
    if cfg["observed"]:
        return Problem(MaskedTerm(y, m), x.shape[-2:], region, inputs=inputs, observed=masked,
                       notes=notes)
    fill = clean.copy()
    for c in range(clean.shape[-1]):                # the "mean of the known pixels" baseline
        fill[..., c][~known] = clean[..., c][known].mean()
    ft, xt = to_tensor(fill), to_tensor(clean)
    base = {"psnr_in": float(psnr(ft, xt)[0]), "ssim_in": float(ssim(ft, xt)[0])}
    return Problem(MaskedTerm(y, m), x.shape[-2:], region, target=x, inputs=inputs,
                   baseline=base, observed=masked, notes=notes)


def validate(cfg):
    # (0 would leave no pixel to fill, and psnr_in infinite; None: observed, unused)
    if cfg["drop_rate"] is not None and not 0 < cfg["drop_rate"] < 1:
        return f"--drop-rate must be in (0, 1), got {cfg['drop_rate']}"
    if not 0 <= cfg["mask_threshold"] <= 1:
        return f"--mask-threshold must be in [0, 1], got {cfg['mask_threshold']}"


TASK = Task("inpainting", config, make_problem, synthetic=("drop_rate", "mask_seed"),
            from_file=("drop_rate", "mask_seed"), quick=quick,
            data_groups=("inpainting/bernoulli",), defaults=("camera",), validate=validate,
            reads=reads, order=3, metrics=("psnr", "ssim"), baselines=("mean_fill", "biharmonic"))

if __name__ == "__main__":
    from utils.cli import main
    sys.exit(main(TASK))
