"""Deblurring (a known Gaussian blur plus noise) with a spectrally controlled Deep Image Prior.

Not a task of the papers: it was added by following README, "Adding a task", to show that a
task is one file.  The observation is ``y = clip(k * x + N(0, σ/255), 0, 1)`` with k a Gaussian
kernel (utils.physics.gaussian_kernel, reflect-padded borders); the data term is
``‖k * f(z) − y‖²`` (utils.physics.BlurTerm).  The network is the paper's decoder with the
paper's λ (Shi et al., IJCV 2022); DIP (Ulyanov et al., CVPR 2018) is the prior.

    python deblurring.py                          # the 9 denoising images (or the embedded one)
    python deblurring.py --image photo.png --observed --blur-sigma 2   # a real blurred photo
"""
import math
import sys

from utils.imageio import ImageError, to_tensor
from utils.metrics import psnr, ssim
from utils.physics import (BlurTerm, add_gaussian_noise, blur, gaussian_kernel, gaussian_radius,
                           max_blur_sigma)
from utils.task import Problem, Task, prepare

# the largest --blur-sigma taken at all (a 301×301 kernel); the image bounds it further: the
# kernel's radius ceil(3σ) must be smaller than the (padded) image's shorter side
MAX_BLUR_SIGMA = 50.0

# ---- hyperparameters: the paper's decoder and λ; the degradation chosen here ----
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
    blur_sigma=1.6,                 # σ of the Gaussian blur kernel (pixels; radius ceil(3σ))
    sigma=2.55,                     # noise level σ on the 0-255 scale (1 %)
    seed=0,                         # seed of the noise, the init and the code
    device="auto",                  # auto | cpu | cuda
    restarts=1,                     # independent fits averaged
    crop=0,                         # centre crop (pixels) before anything; 0 = whole image
)
# ---- the CPU quick preset: a 128×128 centre crop and a narrower, faster decoder
# (benchmarks/robustness.py: results/robustness.md); denoising's backtracking pair, a check every
# iteration and a halved step size recovering over 20 good checks (without it the dark
# hubble_deep_field ended 1.4 dB below its blurred input, with it 1.0-1.4 dB above:
# results/deblurring_unseen.md; README, "Backtracking that recovers"); an image larger than the
# crop is fitted in blended tiles of the crop's size, each by its own net (tile: one such net for
# a whole 256² image came out 1.9 dB below Richardson-Lucy, the tiles 1.6 dB above it in 6 of 6
# runs, at 2.5× the time: results/tiles.md) ----
quick = dict(crop=128, channels=64, iters=900, lr=0.002, log_every=10, stop_window=20,
             backtrack_every=1, backtrack_recover=20, tile=128)


def make_problem(img, cfg):
    clean, padded, region = prepare(img, cfg)
    kernel = _kernel(img, cfg["blur_sigma"], padded.shape[:2])
    if cfg["observed"]:
        y = to_tensor(padded)
        return Problem(BlurTerm(y, kernel), y.shape[-2:], region, inputs={"blurred": clean},
                       observed=clean)
    x = to_tensor(padded)
    y = add_gaussian_noise(blur(x, kernel), cfg["sigma"], seed=cfg["seed"])
    h, w = region
    blurred = y[0, :, :h, :w].permute(1, 2, 0).numpy()
    base = {"psnr_in": float(psnr(y[..., :h, :w], x[..., :h, :w])[0]),
            "ssim_in": float(ssim(y[..., :h, :w], x[..., :h, :w])[0])}
    return Problem(BlurTerm(y, kernel), x.shape[-2:], region, target=x, baseline=base,
                   inputs={"blurred": blurred}, observed=blurred)


def _kernel(img, sigma, hw):
    """The blur kernel, or an ImageError naming the image when the kernel is wider than the
    padded image allows (refused, not clamped: a truncated kernel is another blur than the one
    asked for)."""
    top = max_blur_sigma(*hw)
    if gaussian_radius(sigma) > min(hw) - 1:
        raise ImageError(img.path or img.name, f"--blur-sigma {sigma:g} needs a kernel of radius "
                         f"{gaussian_radius(sigma)} px, wider than this {hw[1]}x{hw[0]} (padded) "
                         f"image allows: at most --blur-sigma {math.floor(top * 100) / 100:g} "
                         "for it")
    return gaussian_kernel(sigma)


def validate(cfg):
    if not 0 < cfg["blur_sigma"] <= MAX_BLUR_SIGMA:
        return (f"--blur-sigma must be a number in (0, {MAX_BLUR_SIGMA:g}] (pixels), got "
                f"{cfg['blur_sigma']}")


TASK = Task("deblurring", config, make_problem, synthetic=("sigma",), quick=quick,
            data_groups=("denoising",),
            defaults=("astronaut",), validate=validate, order=6,
            baselines=("input", "richardson_lucy"))

if __name__ == "__main__":
    from utils.cli import main
    sys.exit(main(TASK))
