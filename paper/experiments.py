"""The experiments: each is one task script run with one stated setting on one set of images.

A task without an entry in ``SPECIFIC`` gets its script's values on each entry of its protocol
(``Task.protocol``), so a new task is reproduced without editing this file.  Nothing here is
tuned on the ground truth: each method has one setting for all images.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from paper.published import setting_key


@dataclass(frozen=True)
class Run:
    """One experiment: a task script, a setting on top of its defaults, a set of images."""
    name: str               # folder under OUT/runs/
    script: str             # task name (the script <name>.py)
    args: tuple             # command-line entries on top of the script's config block
    group: str | None       # dataset group of the images; None = the one figure image
    about: str              # the setting, in words
    setting: str = ""       # the protocol setting it is scored at (published.setting_key)


def _args(settings: dict) -> tuple:
    return tuple(a for k, v in settings.items() for a in (f"--{k.replace('_', '-')}", str(v)))


def default_runs(task) -> list[Run]:
    """The script's values on each protocol entry."""
    runs = []
    for group, settings in task.protocol:
        last = group.rstrip("/").split("/")[-1]
        name = "_".join([task.name] + ([last] if last != task.name else [])
                        + [f"{k}{v}" for k, v in settings.items()])
        what = ", ".join(f"{k} {v}" for k, v in settings.items())
        runs.append(Run(name, task.name, _args(settings), group,
                        f"the script defaults{' at ' + what if what else ''}",
                        setting_key(settings)))
    return runs


DIP_DENOISE = ("--net", "hourglass", "--input", "noise", "--input-var", "0.1", "--lambda", "0",
               "--norm", "batch", "--lr", "0.01", "--reg-noise-std", "0.0333")
NO_STOP = ("--stop", "none", "--log-every", "10")
SIGMA_LISTS = {"all 0.1": ("0.1",) * 5, "paper": ("0.1", "0.1", "0.1", "0.5", "0.5"),
               "all 0.5": ("0.5",) * 5, "all 1.0": ("1.0",) * 5}


def denoising_runs(task, seeds):
    """Denoising σ = 25 on the 9 images: DIP's setting, ours per seed, and three variants."""
    g, s = "denoising", setting_key({"sigma": 25})
    runs = [Run("dip_1800", "denoising", DIP_DENOISE + ("--iters", "1800", "--stop", "none",
                                                         "--log-every", "10"), g,
                "DIP's setting: hourglass, noise input (var 0.1), batch norm, no control, lr 0.01, "
                "1800 it., input noise 1/30", s)]
    # the paper's stop is named: the script's default is the rule benchmarks/stopping.py found best
    ratio = ("--stop", "ratio")
    runs += [Run(f"ours_seed{k}", "denoising", ("--seed", str(k)) + ratio, g,
                 f"ours: the paper's configuration (decoder, λ 1.4, bilinear, ratio stop), seed {k}",
                 s) for k in seeds]
    runs += [Run("ours_gaussian", "denoising", ("--upsample", "gaussian", "--lambda", "1.8")
                 + ratio, g, "ours with Gaussian upsampling (σ 0.1,0.1,0.1,0.5,0.5), λ 1.8", s),
             Run("ours_variance", "denoising", ("--stop", "variance"), g,
                 "ours with the variance stop (ES-WMV) instead of the ratio stop", s),
             Run("ours_validation", "denoising", ("--stop", "validation"), g,
                 "ours with the validation stop (5 % of the pixels held out) instead of the "
                 "ratio stop", s),
             Run("ours_2restarts", "denoising", ("--restarts", "2", "--run-on") + ratio, g,
                 "ours, two fits of the same noisy image (seeds seed and seed + 1000) as one "
                 "batch, each reported alone and their outputs at the stops averaged; the fit "
                 "runs on after the stops to 10 000 iterations (the peak and the end)", s)]
    return runs


def sr_runs(task, seeds):
    """×4 and ×8 on Set5 and Set14: DIP's recipe, with and without the Lipschitz bound."""
    out = []
    for group, settings in task.protocol:
        f, s = settings["factor"], group.split("/")[-1]
        its = 2000 if f == 4 else 4000
        out += [Run(f"sr_x{f}_{s}_dip", "super_resolution", ("--factor", str(f)), group,
                    f"DIP's recipe, ×{f}: hourglass, noise input, lr 0.01, {its} it., no control",
                    setting_key(settings)),
                Run(f"sr_x{f}_{s}_ours", "super_resolution", ("--factor", str(f), "--lambda",
                                                              "1.4"), group,
                    f"DIP's recipe, ×{f}, with every conv Lipschitz-bounded at λ 1.4",
                    setting_key(settings))]
    return out


# the tasks whose experiments are more than the script's defaults
SPECIFIC = {"denoising": denoising_runs, "super_resolution": sr_runs}


def task_runs(task, seeds) -> list[Run]:
    fn = SPECIFIC.get(task.name)
    return fn(task, seeds) if fn else default_runs(task)


def figure_runs(toy):
    """The runs behind the figures (all on the figure image, 10 000 it., no stop); in toy mode
    each sweep keeps two values.  Returns (pair, λ sweep, σ sweep, architectures) as dicts."""
    d = "denoising"
    fig = dict(
        dip=Run("fig_dip", d, DIP_DENOISE + ("--iters", "10000") + NO_STOP, None,
                "DIP: hourglass, no control, 10 000 it."),
        ours=Run("fig_ours", d, ("--stop", "none"), None,
                 "ours: decoder, λ 1.4, 10 000 it., no stop, measured every iteration"))
    lam = {"1": Run("fig_lambda1", d, ("--lambda", "1") + NO_STOP, None, "decoder, λ 1"),
           "1.4": fig["ours"],
           "2": Run("fig_lambda2", d, ("--lambda", "2") + NO_STOP, None, "decoder, λ 2"),
           "none": Run("fig_lambda0", d, ("--lambda", "0") + NO_STOP, None, "decoder, no control")}
    sig = {k: Run("fig_sigma_" + k.replace(" ", "").replace(".", ""), d,
                  ("--upsample", "gaussian", "--lambda", "1.8", "--gaussian-sigmas", *v) + NO_STOP,
                  None, f"decoder, Gaussian upsampling σ ({', '.join(v)}), λ 1.8")
           for k, v in SIGMA_LISTS.items()}
    arch = {"hourglass": Run("fig_arch_hourglass", d, ("--net", "hourglass", "--lambda", "0")
                             + NO_STOP, None, "hourglass, no control, the denoising setting"),
            "decoder": lam["none"],
            "convnet": Run("fig_arch_convnet", d, ("--net", "convnet", "--lambda", "0") + NO_STOP,
                           None, "convnet (no upsampling, full-resolution code), no control")}
    if toy:
        lam = {k: lam[k] for k in ("1.4", "none")}
        sig = {k: sig[k] for k in ("paper", "all 0.5")}
        arch = {k: arch[k] for k in ("decoder", "convnet")}
    return fig, lam, sig, arch


def decay_runs(toy):
    """benchmarks/decay.py's remedies at paper scale on the figure image (the script's decoder,
    10 000 it., no stop): those the figure runs have already (no control, λ 1 and 1.4, the
    Gaussian upsampling at λ 1.8) and the others; in toy mode two of them."""
    d, lam0 = "denoising", ("--lambda", "0")
    runs = {"lambda_1.2": Run("decay_lambda1.2", d, ("--lambda", "1.2") + NO_STOP, None,
                              "decoder, λ 1.2"),
            "lambda_1.8": Run("decay_lambda1.8", d, ("--lambda", "1.8") + NO_STOP, None,
                              "decoder, λ 1.8"),
            "input_noise": Run("decay_input_noise", d, lam0 + ("--reg-noise-std", "0.0333")
                               + NO_STOP, None, "decoder, no control, input noise 1/30"),
            "ema": Run("decay_ema", d, lam0 + ("--use-ema",) + NO_STOP, None,
                       "decoder, no control, the moving average of outputs as the result"),
            "spectral": Run("decay_spectral", d, lam0 + ("--loss", "spectral") + NO_STOP, None,
                            "decoder, no control, the spectral objective (Deep Spectral Prior "
                            "style)")}
    return {k: runs[k] for k in ("ema", "spectral")} if toy else runs


def all_runs(tasks, only, seeds, toy) -> list[Run]:
    """The runs of the selected parts (task names and/or 'figures') in priority order, without
    duplicates."""
    runs = [r for name, task in tasks.items() if name in only for r in task_runs(task, seeds)]
    if "figures" in only:
        for d in (*figure_runs(toy), decay_runs(toy)):
            runs += d.values()
    return prioritised(list({r.name: r for r in runs}.values()))


# The order a budgeted GPU session runs them in (issue #23, short leases of one ~9-minute
# command): first the central claim (the figure runs of DIP's hourglass, the decoder without
# control and with λ 1.4: PSNR over 10 000 iterations on the figure image), then the 9-image
# denoising table as a single run with the paper's ratio stop, DIP's 1800 iterations, the
# validation stop, the batched 2 restarts, the other seed; then the decay remedies
# (benchmarks/decay.py at paper scale) and the other figure runs,
# inpainting, SR ×4 then ×8 (Set5 before Set14), deblocking classic5 then LIVE1, enhancement,
# and last the variants and the tasks the papers do not have.
PRIORITY = (r"fig_dip$", r"fig_lambda0$", r"fig_ours$", r"ours_seed0$", r"dip_1800$",
            r"ours_validation$", r"ours_2restarts$", r"ours_seed\d+$", r"decay_", r"fig_",
            r"inpainting",
            r"sr_x4_Set5", r"sr_x4_Set14", r"sr_x8_Set5", r"sr_x8_Set14",
            r"deblocking_classic5", r"deblocking_LIVE1", r"enhancement")


def priority(run: Run) -> int:
    """Rank of a run in ``PRIORITY`` (the number of patterns when none matches)."""
    return next((k for k, pat in enumerate(PRIORITY) if re.match(pat, run.name)), len(PRIORITY))


def prioritised(runs: list[Run]) -> list[Run]:
    """The runs in priority order (stable: the listed order within a rank)."""
    return sorted(runs, key=priority)
