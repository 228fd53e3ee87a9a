"""Denoising with a Deep Image Prior whose spectral bias is controlled.

Shi, Mettes, Maji, Snoek, "On Measuring and Controlling the Spectral Bias of the Deep Image
Prior", IJCV 2022 (Sec. 5.1); Ulyanov, Vedaldi, Lempitsky, "Deep Image Prior", CVPR 2018.
The observation is ``clip(x + N(0, σ/255), 0, 1)``; the data term is ``‖f(z) − y‖²``.

    python denoising.py                         # the paper's 9 images (or the embedded default)
    python denoising.py --image my_photo.png --observed   # a real noisy photo: no noise added
    python denoising.py --help
"""
import sys

from utils.imageio import to_tensor
from utils.metrics import psnr, ssim
from utils.physics import IdentityTerm, add_gaussian_noise
from utils.task import Problem, Task, main, prepare

# ---- hyperparameters: the paper's values (Shi et al. 2022, code/denoising.py) ----
config = dict(
    net="decoder", input="fourier", input_channels=32, input_var=1.0,
    ln_lambda=1.4, upsample="bilinear", gaussian_sigmas=(0.1, 0.1, 0.1, 0.5, 0.5),
    norm="mean_only", pad="reflection", channels=128,
    optimizer="adam", lr=0.001, iters=10000, reg_noise_std=0.0, exp_weight=0.99,
    stop="ratio", stop_window=100, stop_eps=0.01, stop_patience=1000, log_every=1,
    sigma=25.0,            # noise level on the 0-255 scale
    seed=0, device="auto", restarts=1, crop=0,
)
# ---- CPU quick preset: a 128×128 centre crop and a narrower, faster decoder ----
quick = dict(crop=128, channels=64, iters=600, lr=0.005, log_every=10, stop_window=20)


def make_problem(img, cfg, args):
    clean, padded, region = prepare(img, cfg, args.crop32)
    if args.observed:
        y = to_tensor(padded)
        return Problem(IdentityTerm(y), y.shape[-2:], region, inputs={"noisy": clean})
    x = to_tensor(padded)
    y = add_gaussian_noise(x, cfg["sigma"], seed=cfg["seed"])
    h, w = region
    base = {"psnr_in": float(psnr(y[..., :h, :w], x[..., :h, :w])[0]),
            "ssim_in": float(ssim(y[..., :h, :w], x[..., :h, :w])[0])}
    return Problem(IdentityTerm(y), x.shape[-2:], region, target=x, baseline=base,
                   inputs={"noisy": y[0, :, :h, :w].permute(1, 2, 0).numpy()})


def validate(cfg, args):
    if cfg["sigma"] < 0:
        return f"--sigma must be >= 0, got {cfg['sigma']}"


TASK = Task("denoising", config, quick, make_problem, data_groups=("denoising",),
            defaults=("astronaut",), validate=validate)

if __name__ == "__main__":
    sys.exit(main(TASK))
