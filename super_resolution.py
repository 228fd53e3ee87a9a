"""Super-resolution with the Deep Image Prior (DIP's recipe), spectral-bias controls optional.

Ulyanov et al., CVPR 2018 (Sec. 4, Eq. 5): data term ``‖d(f(z)) − x_LR‖²`` with d DIP's fixed
Lanczos-2 downsampler (utils.physics.DownsampleTerm).  The authors of the spectral-bias paper
(Shi et al., IJCV 2022, Sec. 5.4) report SR but ship no script: the defaults are DIP's, and
``--lambda`` / ``--upsample gaussian`` add the controls.  Evaluation as DIP: Y-PSNR (BT.601) with
a 4-pixel border removed, bicubic side by side.

    python super_resolution.py                        # Set5 and Set14, ×4
    python super_resolution.py --factor 8
    python super_resolution.py --image small.png --observed   # upscale a real low-res image ×4
"""
import dataclasses
import sys

from utils.imageio import from_uint8, pad_to_multiple, to_tensor, to_uint8
from utils.metrics import psnr, y_psnr
from utils.physics import DownsampleTerm, bicubic_upscale, pil_downscale
from utils.task import Problem, Task, prepare

# ---- hyperparameters: DIP's super-resolution recipe (×4; ×8: the preset below) ----
config = dict(
    net="hourglass",                # network: hourglass | decoder | convnet
    input="noise",                  # input code z: noise | fourier | meshgrid
    input_channels=32,              # channels of the code z
    input_var=0.1,                  # scale of the code
    ln_lambda=0.0,                  # Lipschitz bound λ of every 3×3 conv (0 = no control: DIP)
    upsample="bilinear",            # ×2 upsampling: nearest | bilinear | deconv | gaussian
    gaussian_sigmas=(0.1, 0.1, 0.1, 0.5, 0.5),  # σ of each Gaussian upsampling, coarse to fine
    norm="batch",                   # normalisation: batch | mean_only | lipschitz_batch | none
    pad="reflection",               # conv padding: reflection | zero
    channels_down=128,              # hourglass encoder width
    channels_up=128,                # hourglass decoder width
    channels_skip=4,                # hourglass skip width
    scales=5,                       # hourglass levels
    optimizer="adam",               # adam | lbfgs
    lr=0.01,                        # learning rate
    iters=2000,                     # iterations
    reg_noise_std=0.03,             # DIP's input perturbation z + N(0, std) per iteration
    exp_weight=0.99,                # weight of the moving average of outputs (output_ema)
    stop="none",                    # stopping rule: none (DIP) | ratio | validation | variance
    stop_window=100,                # window n of the stopping rule (evaluations)
    stop_eps=0.01,                  # ε of the ratio rule
    stop_patience=1000,             # patience of the validation and variance rules (iterations)
    log_every=1,                    # measures (FBC, ratio, PSNR) every k iterations
    factor=4,                       # upscaling factor: 2 | 4 | 8
    seed=0,                         # seed of the init, the code and the input perturbation
    device="auto",                  # auto | cpu | cuda
    restarts=1,                     # independent fits averaged
    crop=0,                         # centre crop (pixels) before anything; 0 = whole image
)
# ---- presets: DIP's ×8 recipe (unless given on the command line); the CPU quick preset, a
# narrower hourglass on a 128×128 crop with the moving average as the result
# (benchmarks/robustness.py: results/robustness.md); a larger image of yours is fitted by one
# net (--tile 128: 0.64 dB better on 256² images at 2.88× the time, results/tiles.md) ----
presets = (dict(when=dict(factor=8), values=dict(iters=4000, reg_noise_std=0.05)),)
quick = dict(crop=128, channels_down=32, channels_up=32, iters=1500, log_every=10, use_ema=True)


def make_problem(img, cfg):
    f = cfg["factor"]
    if cfg["observed"]:  # the input is the low-resolution image: the output is f times larger
        lr_img = img.array
        lr_pad, _ = pad_to_multiple(lr_img, max(32 // f, 1) * (2 if min(lr_img.shape[:2]) * f < 64 else 1))
        region = (lr_img.shape[0] * f, lr_img.shape[1] * f)
        out_hw = (lr_pad.shape[0] * f, lr_pad.shape[1] * f)
        bic = from_uint8(bicubic_upscale(to_uint8(lr_img), f))
        return Problem(DownsampleTerm(to_tensor(lr_pad), f), out_hw, region,
                       inputs={"bicubic": bic, "lr": lr_img}, observed=lr_img)
    hr, hr_pad, (h, w) = prepare(img, cfg, multiple=32)
    region, notes = (h // f * f, w // f * f), []
    if region != (h, w):    # DIP crops the image to a multiple of the factor, then downscales it
        notes = [f"{img.path or img.name}: {w}×{h} is not a multiple of ×{f}: its top-left "
                 f"{region[1]}×{region[0]} is degraded, restored and scored"]
        hr, hr_pad, _ = prepare(dataclasses.replace(img, array=hr[:region[0], :region[1]]),
                                cfg, multiple=32)
    lr_pad = from_uint8(pil_downscale(to_uint8(hr_pad), f))
    lr = lr_pad[:region[0] // f, :region[1] // f]
    bic = from_uint8(bicubic_upscale(to_uint8(lr), f))
    return Problem(DownsampleTerm(to_tensor(lr_pad), f), hr_pad.shape[:2], region, notes=notes,
                   target=to_tensor(hr_pad), inputs={"bicubic": bic, "lr": lr}, observed=lr,
                   baseline={"psnr_in": float(psnr(to_tensor(bic), to_tensor(hr))[0]),
                             "y_psnr_bicubic": float(y_psnr(to_tensor(bic), to_tensor(hr))[0])},
                   evaluate=lambda out: {"y_psnr": float(y_psnr(
                       to_tensor(out[:bic.shape[0], :bic.shape[1]]), to_tensor(hr))[0])})


def validate(cfg):
    if cfg["factor"] not in (2, 4, 8):
        return f"--factor must be 2, 4 or 8, got {cfg['factor']}"
    if cfg.get("tile") and cfg.get("tile_overlap", 0) % cfg["factor"]:   # tiles on the LR grid
        return (f"--tile-overlap must be a multiple of --factor ({cfg['factor']}), got "
                f"{cfg['tile_overlap']}")


TASK = Task("super_resolution", config, make_problem, quick=quick, presets=presets,
            data_groups=("super_resolution/Set5", "super_resolution/Set14"),
            defaults=("astronaut",), validate=validate, order=4, metrics=("y_psnr",),
            baselines=("bicubic",),
            protocol=tuple((f"super_resolution/{s}", {"factor": f}) for s in ("Set5", "Set14")
                           for f in (4, 8)))

if __name__ == "__main__":
    from utils.cli import main
    sys.exit(main(TASK))
