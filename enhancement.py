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
from utils.task import Problem, Task, prepare

# ---- hyperparameters: the authors' enhancement values (code/enhance.py) ----
config = dict(
    net="decoder",                  # network: decoder | hourglass | convnet
    input="fourier",                # input code z: fourier | noise | meshgrid
    input_channels=32,              # channels of the code z
    input_var=1.0,                  # scale of the code
    ln_lambda=1.0,                  # Lipschitz bound λ of every 3×3 conv (0 = no control)
    upsample="bilinear",            # ×2 upsampling: nearest | bilinear | deconv | gaussian
    gaussian_sigmas=(0.1, 0.1, 0.1, 0.5, 0.5),  # σ of each Gaussian upsampling, coarse to fine
    norm="mean_only",               # normalisation: mean_only | batch | lipschitz_batch | none
    pad="reflection",               # conv padding: reflection | zero
    channels=128,                   # decoder width
    optimizer="adam",               # adam | lbfgs
    lr=0.001,                       # learning rate
    iters=100,                      # iterations: only the low frequencies are learned
    reg_noise_std=0.0,              # DIP's input perturbation z + N(0, std) per iteration
    exp_weight=0.99,                # weight of the moving average of outputs (output_ema)
    stop="none",                    # stopping rule: none | ratio | validation | variance
    stop_window=100,                # window n of the stopping rule (evaluations)
    stop_eps=0.01,                  # ε of the ratio rule
    stop_patience=1000,             # patience of the validation and variance rules (iterations)
    log_every=1,                    # measures (FBC, ratio, PSNR) every k iterations
    detail_gain=1.0,                # gain g of the detail layer x − base
    signed=False,                   # keep negative details too (the authors clip them to 0)
    seed=0,                         # seed of the init and the code
    device="auto",                  # auto | cpu | cuda
    restarts=1,                     # independent fits averaged
    crop=0,                         # centre crop (pixels) before anything; 0 = whole image
)
# ---- the CPU quick preset: a 256×256 centre crop and a narrower decoder ----
quick = dict(crop=256, channels=64, log_every=5)


def make_problem(img, cfg):
    x, padded, region = prepare(img, cfg)

    def enhanced(base):
        return enhance(x, base, cfg["detail_gain"], cfg["signed"])

    def finish(base, out, save):
        detailed = enhanced(base)
        save("base", base)
        save("enhanced", detailed)
        montage([x, base, detailed], ["input", f"base ({cfg['iters']} iterations)", "enhanced"],
                out / "side_by_side.png")
        return {}

    # the net fits the smooth base; what the user gets (output.png, restore()) is the enhanced
    return Problem(IdentityTerm(to_tensor(padded)), padded.shape[:2], region, finish=finish,
                   observed=x, present=enhanced)


TASK = Task("enhancement", config, make_problem, quick=quick, data_groups=("enhancement",),
            defaults=("chelsea",), order=5, metrics=())

if __name__ == "__main__":
    from utils.cli import main
    sys.exit(main(TASK))
