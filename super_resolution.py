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
import sys

import numpy as np

from utils.imageio import pad_to_multiple, to_tensor, to_uint8
from utils.metrics import y_psnr
from utils.physics import DownsampleTerm, bicubic_upscale, pil_downscale
from utils.task import Problem, Task, main, prepare

# ---- hyperparameters: DIP's super-resolution recipe (×4; ×8 uses 4000 iterations, 0.05) ----
config = dict(
    net="hourglass", input="noise", input_channels=32, input_var=0.1,
    ln_lambda=0.0, upsample="bilinear", gaussian_sigmas=(0.1, 0.1, 0.1, 0.5, 0.5),
    norm="batch", pad="reflection", channels_down=128, channels_up=128, channels_skip=4,
    scales=5, optimizer="adam", lr=0.01, iters=2000, reg_noise_std=0.03, exp_weight=0.99,
    stop="none", stop_window=100, stop_eps=0.01, stop_patience=1000, log_every=1,
    factor=4,
    seed=0, device="auto", restarts=1, crop=0,
)
X8 = dict(iters=4000, reg_noise_std=0.05)   # DIP's ×8 setting
quick = dict(crop=128, channels_down=32, channels_up=32, iters=300, log_every=10)


def _u8(a):
    return to_uint8(a[..., 0] if a.shape[-1] == 1 else a)


def _f32(u8, channels):
    a = u8.astype(np.float32) / 255.0
    return a.reshape(a.shape[:2] + (channels,))


def make_problem(img, cfg, args):
    f = cfg["factor"]
    c = img.array.shape[-1]
    if args.observed:  # the input is the low-resolution image: the output is f times larger
        lr_img = img.array
        lr_pad, _ = pad_to_multiple(lr_img, max(32 // f, 1) * (2 if min(lr_img.shape[:2]) * f < 64 else 1))
        region = (lr_img.shape[0] * f, lr_img.shape[1] * f)
        out_hw = (lr_pad.shape[0] * f, lr_pad.shape[1] * f)
        bic = _f32(bicubic_upscale(_u8(lr_img), f), c)
        return Problem(DownsampleTerm(to_tensor(lr_pad), f), out_hw, region,
                       inputs={"lr": lr_img, "bicubic": bic})
    hr, hr_pad, region = prepare(img, cfg, args.crop32, multiple=32)
    lr_pad = _f32(pil_downscale(_u8(hr_pad), f), c)
    lr = lr_pad[:region[0] // f, :region[1] // f]
    bic = _f32(bicubic_upscale(_u8(lr), f), c)
    hr_eval = hr[:bic.shape[0], :bic.shape[1]]
    return Problem(DownsampleTerm(to_tensor(lr_pad), f), hr_pad.shape[:2], region,
                   target=to_tensor(hr_pad), inputs={"lr": lr, "bicubic": bic},
                   baseline={"y_psnr_bicubic": float(y_psnr(to_tensor(bic), to_tensor(hr_eval))[0])},
                   evaluate=lambda out: {"y_psnr": float(y_psnr(
                       to_tensor(out[:bic.shape[0], :bic.shape[1]]), to_tensor(hr_eval))[0])})


def validate(cfg, args):
    if cfg["factor"] not in (2, 4, 8):
        return f"--factor must be 2, 4 or 8, got {cfg['factor']}"
    if cfg["factor"] == 8:  # DIP's ×8 recipe, unless given on the command line
        for k, v in X8.items():
            if getattr(args, k, None) is None and not args.quick:
                cfg[k] = v


TASK = Task("super_resolution", config, quick, make_problem,
            data_groups=("super_resolution/Set5", "super_resolution/Set14"),
            defaults=("astronaut",), validate=validate)

if __name__ == "__main__":
    sys.exit(main(TASK))
