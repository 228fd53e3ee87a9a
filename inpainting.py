"""Inpainting with a Deep Image Prior whose spectral bias is controlled.

Shi et al., IJCV 2022 (Sec. 5.3); Ulyanov et al., CVPR 2018 (Sec. 4, Table 1).
Data term ``‖(f(z) − x0) ⊙ m‖²`` with m = 1 on known pixels.  Masks: the authors' 50 % Bernoulli
mask (regenerated bit for bit), a mask image beside the input (``NAME_mask.png``), or ``--mask``.

    python inpainting.py                                  # the 11 Bernoulli images of DIP Table 1
    python inpainting.py --image photo.png --mask holes.png --observed
"""
import sys
from pathlib import Path

import numpy as np

from utils.imageio import ImageError, load_mask, to_tensor
from utils.metrics import psnr, ssim
from utils.physics import MaskedTerm, bernoulli_mask
from utils.task import Problem, Task, main, prepare

# ---- hyperparameters: the authors' inpainting values (code/inpainting.py) ----
config = dict(
    net="decoder", input="fourier", input_channels=32, input_var=1.0,
    ln_lambda=1.6, upsample="bilinear", gaussian_sigmas=(0.1, 0.1, 0.1, 0.5, 0.5),
    norm="mean_only", pad="reflection", channels=128,
    optimizer="adam", lr=0.001, iters=10000, reg_noise_std=0.0, exp_weight=0.99,
    stop="ratio", stop_window=100, stop_eps=0.01, stop_patience=1000, log_every=1,
    drop_rate=0.5, mask_seed=100,   # the Bernoulli mask: np.random.seed(100), > 0.5 is known
    seed=0, device="auto", restarts=1, crop=0,
)
quick = dict(crop=128, channels=64, iters=600, lr=0.005, log_every=10, stop_window=20)


def _mask_for(img, args, shape_hw):
    path = args.mask
    if path is None and img.path is not None:
        sibling = Path(img.path).with_name(f"{img.name}_mask.png")
        path = sibling if sibling.exists() else None
    if path is None:
        if args.observed:
            raise ImageError(img.path or img.name, "--observed inpainting needs --mask")
        return None
    return load_mask(path, img.array.shape[:2])


def make_problem(img, cfg, args):
    user_mask = _mask_for(img, args, img.array.shape[:2])
    # the mask follows the image through the quick crop / --crop32 exactly like the pixels
    a = img.array if user_mask is None else np.concatenate(
        [img.array, user_mask[..., None].astype(np.float32)], -1)
    stacked = type(img)(**{**img.__dict__, "array": a})
    clean, padded, region = prepare(stacked, cfg, args.crop32)
    h, w = region
    if user_mask is None:
        known = bernoulli_mask(h, w, cfg["drop_rate"], cfg["mask_seed"])[0]
    else:
        clean, padded, known = clean[..., :-1], padded[..., :-1], clean[..., -1] > 0.5
    m_pad = np.zeros(padded.shape[:2] + (1,), np.float32)
    m_pad[:h, :w, 0] = known                       # padded border pixels count as unknown
    m = to_tensor(m_pad)
    x = to_tensor(padded)
    y = x * m
    masked = clean * known[..., None]
    inputs = {"masked": masked, "mask": known[..., None].astype(np.float32)}
    if args.observed:
        return Problem(MaskedTerm(y, m), x.shape[-2:], region, inputs=inputs)
    fill = clean.copy()
    for c in range(clean.shape[-1]):                # the "mean of the known pixels" baseline
        fill[..., c][~known] = clean[..., c][known].mean()
    ft, xt = to_tensor(fill), to_tensor(clean)
    base = {"psnr_in": float(psnr(ft, xt)[0]), "ssim_in": float(ssim(ft, xt)[0])}
    return Problem(MaskedTerm(y, m), x.shape[-2:], region, target=x, inputs=inputs,
                   baseline=base)


def validate(cfg, args):
    if not 0 <= cfg["drop_rate"] < 1:
        return f"--drop-rate must be in [0, 1), got {cfg['drop_rate']}"


def add_arguments(g):
    g.add_argument("--mask", help="mask image (white = known pixel) for every --image")


TASK = Task("inpainting", config, quick, make_problem, data_groups=("inpainting/bernoulli",),
            defaults=("camera",), validate=validate, add_arguments=add_arguments)

if __name__ == "__main__":
    sys.exit(main(TASK))
