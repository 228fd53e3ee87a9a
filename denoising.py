"""Denoising with a Deep Image Prior whose spectral bias is controlled.

Shi, Mettes, Maji, Snoek, "On Measuring and Controlling the Spectral Bias of the Deep Image
Prior", IJCV 2022 (Sec. 5.1); Ulyanov, Vedaldi, Lempitsky, "Deep Image Prior", CVPR 2018.
The observation is ``clip(x + N(0, σ/255), 0, 1)``; the data term is ``‖f(z) − y‖²``.  The
default stop is the validation rule (5 % of the pixels held out of the loss; Li et al., BMVC
2021), the best of the oracle-free rules measured by ``python -m benchmarks.stopping``
(results/stopping.md); ``--stop ratio`` is the paper's rule (Sec. 4.3).

    python denoising.py                         # the paper's 9 images (or the embedded default)
    python denoising.py --image my_photo.png --observed   # a real noisy photo: no noise added
    python denoising.py --stop ratio                      # the paper's stopping rule
    python denoising.py --lambda auto                     # λ chosen by the held-out pixels
    python denoising.py --help
"""
import sys

from utils.imageio import to_tensor
from utils.metrics import estimate_sigma, psnr, ssim
from utils.physics import IdentityTerm, add_gaussian_noise
from utils.task import Problem, Task, prepare

# ---- hyperparameters: the paper's values (Shi et al. 2022, code/denoising.py) ----
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
    stop="validation",              # stopping rule: validation | ratio (paper) | variance | none
    stop_window=100,                # window n of the stopping rule (evaluations)
    stop_eps=0.01,                  # ε of the ratio rule
    stop_patience=1000,             # patience of the validation and variance rules (iterations)
    log_every=1,                    # measures (FBC, ratio, PSNR) every k iterations
    sigma=25.0,                     # noise level σ on the 0-255 scale (auto: estimated, --observed)
    seed=0,                         # seed of the noise, the init and the code
    device="auto",                  # auto | cpu | cuda
    restarts=1,                     # independent fits averaged (DIP: +0.6 dB for two)
    crop=0,                         # centre crop (pixels) before anything; 0 = whole image
)
# ---- the CPU quick preset: a 128×128 centre crop and a narrower, faster decoder; the moving
# average of outputs is the result (benchmarks/robustness.py: results/robustness.md), warmed up
# (ema_warmup: the unfitted first outputs leave it early; chosen for bf16 fits by
# benchmarks/cpu_preset.py, results/cpu_preset.md, and in fp32 too since 2026-12-06: on 32 unseen
# crops +0.44 dB, results/unseen_denoising_ema_warmup.md); the stop's window and patience are those
# benchmarks/stopping.py measured (results/stopping.md); the backtracking checks every iteration
# and a halved step size recovers over 20 good checks (a dark image's fit no longer starves after
# its output collapsed: results/denoising_backtracking.md); the validation rule keeps the first
# output of a flat minimum (stop_min_gain: on 16 unseen crops +0.17 dB, and a rerun with another
# thread count moves a result half as far: results/cpu_modes_denoising_amx_before_decide_at_end.md),
# and a fit that ends on a risen held-out loss before the patience has run out returns that
# minimum's output (stop_decide_at_end: camera seed 0 of the robustness grid 25.40 → 27.16 dB);
# an image larger than the crop is fitted in tiles of the crop's size, 32 pixels of overlap
# blended, each by its own net (tile: one 64-channel net for a whole 256² image came out 2.5–4.8
# dB below CBM3D, the tiles about as close as on crops: results/tiles.md) ----
quick = dict(crop=128, channels=64, iters=600, lr=0.005, log_every=10, stop_window=10,
             stop_patience=200, use_ema=True, ema_warmup=True, backtrack_every=1,
             backtrack_recover=20, stop_min_gain=0.002, stop_decide_at_end=True, tile=128)


def make_problem(img, cfg):
    clean, padded, region = prepare(img, cfg)
    if cfg["observed"]:
        y = to_tensor(padded)
        base = {}
        if cfg["sigma"] == "auto":   # a real noisy photo: σ from its wavelet coefficients
            base["sigma_estimate"] = 255 * estimate_sigma(clean)
        return Problem(IdentityTerm(y), y.shape[-2:], region, inputs={"noisy": clean},
                       observed=clean, baseline=base)
    x = to_tensor(padded)
    y = add_gaussian_noise(x, cfg["sigma"], seed=cfg["seed"])
    h, w = region
    noisy = y[0, :, :h, :w].permute(1, 2, 0).numpy()
    base = {"psnr_in": float(psnr(y[..., :h, :w], x[..., :h, :w])[0]),
            "ssim_in": float(ssim(y[..., :h, :w], x[..., :h, :w])[0])}
    return Problem(IdentityTerm(y), x.shape[-2:], region, target=x, baseline=base,
                   inputs={"noisy": noisy}, observed=noisy)


def validate(cfg):
    if cfg["sigma"] == "auto" and not cfg["observed"]:
        return ("--sigma auto estimates σ of a noisy photo: it needs --observed (the synthetic "
                "noise needs a number)")
    return None


TASK = Task("denoising", config, make_problem, synthetic=("sigma",), quick=quick,
            data_groups=("denoising",),
            validate=validate, auto_options=("sigma",),
            defaults=("astronaut",), order=1,
            protocol=(("denoising", {"sigma": 25.0}),), baselines=("input", "cbm3d", "nlm", "tv"))

if __name__ == "__main__":
    from utils.cli import main
    sys.exit(main(TASK))
