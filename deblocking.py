"""JPEG artefact removal (deblocking) with a spectrally controlled Deep Image Prior.

Shi et al., IJCV 2022 (Sec. 5.2); Ulyanov et al., CVPR 2018 (Sec. 4).  The observation is a
Pillow JPEG at quality q with the authors' settings (optimize, progressive), decoded back; the
data term is ``‖f(z) − x_jpeg‖²``.  Colour images: the Y channel (BT.601) is compressed and
restored, as deblocking papers do (``--color rgb`` restores all three channels).

    python deblocking.py                       # classic5 and LIVE1 at q = 10
    python deblocking.py --image photo.jpg --observed   # a real JPEG: not re-compressed
"""
import sys

import numpy as np

from utils.imageio import to_tensor, to_uint8
from utils.metrics import psnr, psnr_b, rgb_to_y, ssim
from utils.physics import IdentityTerm, jpeg_compress
from utils.task import Problem, Task, main, prepare

# ---- hyperparameters: the authors' deblocking values (code/deblocking.py) ----
config = dict(
    net="decoder", input="fourier", input_channels=32, input_var=1.0,
    ln_lambda=1.4, upsample="bilinear", gaussian_sigmas=(0.1, 0.1, 0.1, 0.5, 0.5),
    norm="mean_only", pad="reflection", channels=128,
    optimizer="adam", lr=0.001, iters=10000, reg_noise_std=0.0, exp_weight=0.99,
    stop="ratio", stop_window=100, stop_eps=0.01, stop_patience=1000, log_every=1,
    quality=10,            # JPEG quality (the paper: 10, 20, 30)
    color="y",             # y: restore the Y channel of colour images; rgb: all three
    seed=0, device="auto", restarts=1, crop=0,
)
quick = dict(crop=128, channels=64, iters=600, lr=0.005, log_every=10, stop_window=20)


def _metrics(tag, img, ref):
    a, r = to_tensor(img), to_tensor(ref)
    return {f"psnr{tag}": float(psnr(a, r)[0]), f"ssim{tag}": float(ssim(a, r)[0]),
            f"psnr_b{tag}": float(psnr_b(a, r)[0])}


def make_problem(img, cfg, args):
    clean, padded, region = prepare(img, cfg, args.crop32)
    h, w = region
    if cfg["color"] == "y" and clean.shape[-1] == 3:
        # Y in [16, 235]/255 (BT.601 studio range), quantised to 8 bits like a decoded image
        luma = lambda a: to_uint8(rgb_to_y(to_tensor(a))[0, 0].numpy())[..., None] / 255.0  # noqa
        clean, padded = luma(clean).astype(np.float32), luma(padded).astype(np.float32)
        like = type(img)(**{**img.__dict__, "array": clean, "mode": "L", "alpha": None})
    else:
        like = img
    if args.observed:
        y = to_tensor(padded)
        return Problem(IdentityTerm(y), y.shape[-2:], region, inputs={"jpeg": clean}, like=like)
    # degrade the padded image (blocks stay aligned at the top-left, the padding is
    # bottom/right); with --crop32 there is no padding and this is the paper's protocol
    gray = padded.shape[-1] == 1
    obs = jpeg_compress(to_uint8(padded[..., 0] if gray else padded), cfg["quality"])
    obs = (obs.astype(np.float32) / 255.0).reshape(padded.shape)
    jpeg = obs[:h, :w]
    return Problem(IdentityTerm(to_tensor(obs)), obs.shape[:2], region,
                   target=to_tensor(padded), inputs={"jpeg": jpeg}, like=like,
                   baseline=_metrics("_in", jpeg, clean),
                   evaluate=lambda out: {"psnr_b": _metrics("", out, clean)["psnr_b"]})


def validate(cfg, args):
    if not 1 <= cfg["quality"] <= 100:
        return f"--quality must be in 1..100, got {cfg['quality']}"
    if cfg["color"] not in ("y", "rgb"):
        return f"--color must be y or rgb, got {cfg['color']}"


TASK = Task("deblocking", config, quick, make_problem,
            data_groups=("deblocking/classic5", "deblocking/LIVE1"), defaults=("camera",),
            validate=validate)

if __name__ == "__main__":
    sys.exit(main(TASK))
