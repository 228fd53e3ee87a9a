"""JPEG artefact removal (deblocking) with a spectrally controlled Deep Image Prior.

Shi et al., IJCV 2022 (Sec. 5.2); Ulyanov et al., CVPR 2018 (Sec. 4).  The observation is a
Pillow JPEG at quality q with the authors' settings (optimize, progressive), decoded back; the
data term is ``‖f(z) − x_jpeg‖²``.  Colour images: the Y channel (BT.601) is compressed and
restored, as deblocking papers do (``--color rgb`` restores all three channels).  A real colour
JPEG (``--observed``) comes back in colour: the net restores its Y, and the input's chroma
(Cb, Cr) is put back (``Problem.present``: the outputs, the montage and ``restore()``).

    python deblocking.py                       # classic5 and LIVE1 at q = 10
    python deblocking.py --image photo.jpg --observed   # a real JPEG: not re-compressed
"""
import dataclasses
import sys

import numpy as np

from utils.imageio import from_uint8, to_array, to_tensor, to_uint8
from utils.metrics import psnr, psnr_b, rgb_to_y, rgb_to_ycbcr, ssim, ycbcr_to_rgb
from utils.physics import IdentityTerm, jpeg_compress
from utils.task import Problem, Task, prepare

# ---- hyperparameters: the authors' deblocking values (code/deblocking.py) ----
config = dict(
    net="decoder",                  # network: decoder | hourglass | convnet
    input="fourier",                # input code z: fourier | noise | meshgrid
    input_channels=32,              # channels of the code z
    input_var=1.0,                  # scale of the code
    ln_lambda=1.4,                  # Lipschitz bound λ of every 3×3 conv (0 = no control)
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
    quality=10,                     # JPEG quality q (the paper: 10, 20, 30)
    color="y",                      # colour images: y = restore the Y channel; rgb = all three
    seed=0,                         # seed of the init and the code
    device="auto",                  # auto | cpu | cuda
    restarts=1,                     # independent fits averaged
    crop=0,                         # centre crop (pixels) before anything; 0 = whole image
)
# ---- the CPU quick preset: a 128×128 centre crop and a narrower, faster decoder at lr 0.002,
# the moving average of outputs as the result (benchmarks/robustness.py); an image larger than
# the crop is fitted in blended tiles of the crop's size (tile: one such net for a whole 256²
# image came out within 0.22 dB of the JPEG input, below it in 4 of 6 runs; the tiles 0.9–1.4
# dB above it: results/tiles.md) ----
quick = dict(crop=128, channels=64, iters=600, lr=0.002, log_every=10, stop_window=20,
             use_ema=True, tile=128)


def _metrics(tag, img, ref):
    a, r = to_tensor(img), to_tensor(ref)
    return {f"psnr{tag}": float(psnr(a, r)[0]), f"ssim{tag}": float(ssim(a, r)[0]),
            f"psnr_b{tag}": float(psnr_b(a, r)[0])}


def with_chroma(luma, colour):
    """RGB (h, w, 3) of the restored Y (h, w, 1) and the chroma (Cb, Cr) of ``colour``, the
    input's RGB (h, w, 3), clipped to [0, 1]."""
    ycc = rgb_to_ycbcr(to_tensor(colour))
    ycc[:, :1] = to_tensor(luma)
    return np.clip(to_array(ycbcr_to_rgb(ycc)), 0, 1)


def _luma(a):
    """The Y (BT.601, in [16, 235]/255) of an RGB (h, w, 3) image, quantised to 8 bits like a
    decoded image: (h, w, 1)."""
    return from_uint8(to_uint8(rgb_to_y(to_tensor(a))[0, 0].numpy()))


def make_problem(img, cfg):
    clean, padded, region = prepare(img, cfg)
    h, w = region
    if cfg["color"] == "y" and clean.shape[-1] == 3 and cfg["observed"]:
        # a user's colour JPEG: the net restores Y (as below), the output keeps its chroma
        colour = clean
        clean, padded = _luma(clean), _luma(padded)
        y = to_tensor(padded)
        return Problem(IdentityTerm(y), y.shape[-2:], region, inputs={"jpeg": colour},
                       like=img, observed=clean, present=lambda out: with_chroma(out, colour),
                       notes=[f"{img.path or img.name}: a colour image: the net restores its "
                              "Y channel and the output keeps the input's chroma (Cb, Cr); "
                              "--color rgb restores all three channels"])
    if cfg["color"] == "y" and clean.shape[-1] == 3:
        clean, padded = _luma(clean), _luma(padded)
        like = dataclasses.replace(img, array=clean, mode="L", alpha=None)
        alpha = " (its alpha channel dropped)" if img.alpha is not None else ""
        notes = [f"{img.path or img.name}: a colour image: its Y channel is compressed and "
                 f"restored, as deblocking papers do, so the outputs are gray{alpha}; --color rgb "
                 "compresses and restores all three channels"]
    else:
        like, notes = img, []
    if cfg["observed"]:
        y = to_tensor(padded)
        return Problem(IdentityTerm(y), y.shape[-2:], region, inputs={"jpeg": clean}, like=like,
                       observed=clean, notes=notes)
    # degrade the padded image (blocks stay aligned at the top-left, the padding is
    # bottom/right); with --crop32 there is no padding and this is the paper's protocol
    obs = from_uint8(jpeg_compress(to_uint8(padded), cfg["quality"]))
    jpeg = obs[:h, :w]
    return Problem(IdentityTerm(to_tensor(obs)), obs.shape[:2], region,
                   target=to_tensor(padded), inputs={"jpeg": jpeg}, like=like,
                   baseline=_metrics("_in", jpeg, clean), observed=jpeg,
                   evaluate=lambda out: {"psnr_b": _metrics("", out, clean)["psnr_b"]},
                   notes=notes)


def validate(cfg):
    if not 1 <= cfg["quality"] <= 100:
        return f"--quality must be in 1..100, got {cfg['quality']}"
    if cfg["color"] not in ("y", "rgb"):
        return f"--color must be y or rgb, got {cfg['color']}"


TASK = Task("deblocking", config, make_problem, synthetic=("quality",), quick=quick,
            data_groups=("deblocking/classic5", "deblocking/LIVE1"), defaults=("camera",),
            validate=validate, order=2, metrics=("psnr", "ssim", "psnr_b"), baselines=("input",),
            protocol=(("deblocking/classic5", {"quality": 10}),
                      ("deblocking/classic5", {"quality": 20}),
                      ("deblocking/classic5", {"quality": 30}),
                      ("deblocking/LIVE1", {"quality": 10})))

if __name__ == "__main__":
    from utils.cli import main
    sys.exit(main(TASK))
