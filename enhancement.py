"""Detail enhancement with the spectral bias of the Deep Image Prior.

Shi et al., IJCV 2022 (Sec. 5.5): fit ``‖f(z) − x‖²`` for only 100 iterations with λ = 1: the
network has learned the low frequencies only, a smooth base image.  The authors' enhancement is
``clip(x + clip(x − base, 0, 1), 0, 1)`` (the detail layer clipped to positives); ``--signed``
keeps the negative details too, ``--detail-gain`` scales the layer.

    python enhancement.py                   # tulips (or the embedded default)
    python enhancement.py --image photo.png --detail-gain 2 --signed
"""
import sys

from utils.imageio import to_tensor
from utils.physics import IdentityTerm, enhance
from utils.plots import montage
from utils.task import Problem, Task, main, prepare

# ---- hyperparameters: the authors' enhancement values (code/enhance.py) ----
config = dict(
    net="decoder", input="fourier", input_channels=32, input_var=1.0,
    ln_lambda=1.0, upsample="bilinear", gaussian_sigmas=(0.1, 0.1, 0.1, 0.5, 0.5),
    norm="mean_only", pad="reflection", channels=128,
    optimizer="adam", lr=0.001, iters=100, reg_noise_std=0.0, exp_weight=0.99,
    stop="none", stop_window=100, stop_eps=0.01, stop_patience=1000, log_every=1,
    detail_gain=1.0, signed=False,
    seed=0, device="auto", restarts=1, crop=0,
)
quick = dict(crop=256, channels=64, log_every=5)


def make_problem(img, cfg, args):
    x, padded, region = prepare(img, cfg, args.crop32)

    def finish(base, out, save):
        enhanced = enhance(x, base, cfg["detail_gain"], cfg["signed"])
        save("base", base)
        save("enhanced", enhanced)
        montage([x, base, enhanced], ["input", "base (100 iterations)", "enhanced"],
                out / "side_by_side.png")
        return {}

    return Problem(IdentityTerm(to_tensor(padded)), padded.shape[:2], region, finish=finish)


TASK = Task("enhancement", config, quick, make_problem, data_groups=("enhancement",),
            defaults=("chelsea",))

if __name__ == "__main__":
    sys.exit(main(TASK))
