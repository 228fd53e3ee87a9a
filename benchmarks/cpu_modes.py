"""Is bf16 as good as fp32 on this CPU, and how much faster?  The verdict ``--amp auto`` needs.

    python -m benchmarks.cpu_modes [--tasks denoising ...] [--images brick retina]
                                   [--seeds 0 1] [--resume] [--null] [--layout]
                                   [--fidelity] [--other-cpu CSV] [--set ENTRY=VALUE ...]
                                   [--out results/cpu_modes.md]

The candidate is the mode ``--amp auto`` would choose for a task whose parity is verified
(``utils.device.resolve_amp``: bf16 convolutions, channels-last where the probe finds it faster,
on a CPU with native bf16).  Each task's quick preset (with its ``quick_bf16`` values, in both
modes) runs on crops no preset was tuned on (``benchmarks.robustness.settings``: the preset's
centre crop of ``IMAGES``, two gray and two colour ``skimage.data`` images, each seed) twice,
in fp32 and in the candidate, the two in alternating order from case to case (so that a
machine's drift is shared); per run the task's measure (PSNR; super-resolution Y-PSNR;
enhancement: the PSNR of the fit to its input) and the seconds per iteration.  ``--null`` fits
each case once more in fp32 with another thread count: a run's Δ to that is what rounding alone
does to it.  ``--layout`` fits it once more in fp32 in the channels-last layout: the same
arithmetic with each output's sums in another order, a stronger null than the thread count
(oneDNN splits a conv's outputs between threads, so their sums keep their order; only the
reductions over pixels change).  On 2026-12-05 it moved inpainting runs by −1.20 dB on average
(worst −6.55), more than bf16 did (−0.57): the runs' spread under any rounding is wider than the
thread-count null showed.  The CSV is rewritten after every case, so ``--resume`` goes on after
a stop.  ``--other-cpu CSV`` sets the fp32 runs beside those of the same cases in another CPU's
CSV: what a rerun of one command on another machine changes.  ``--set lr=0.002`` (as in
``benchmarks.robustness``): a change of the quick preset, in both modes and the nulls (an
experiment: the report's command line names it).

Verdict per task: the candidate may be the default where it loses at most 0.1 dB on average
(fp32 − candidate over the task's runs) and at most 0.3 dB in its worst run, and takes at most
``utils.device.FASTER`` (0.9) of fp32's time per iteration; it then goes into
``utils.config.BF16_PARITY``.  (The first verdicts, on brick and retina only, passed denoising,
deblocking and inpainting; the grid's other two images then cost deblocking 0.88 dB and
inpainting 1.72 dB in a run, and the denoising demo image 1.86 dB: four runs per task were too
few, the grid is now 8 runs for those tasks.)  (Until 2026-12-05 this file read the two bounds
on |Δ|, before any run on a native-bf16 CPU.  The first such run showed what that reading
measures: a fit amplifies any rounding, and the same fp32 fit with 1 thread instead of 2 moved
single denoising runs by up to 0.20 dB, mean |Δ| 0.105, so that reading would refuse fp32
against itself.  It now bounds the loss; the null and the mean |Δ| are reported beside it.)
(The denoising,
deblocking and inpainting rows were measured again on 2026-12-05 after the validation rule's
default changed (centred window, both candidates): a kept row's fp32 value (cell, seed 0) was no
longer what the code gave, so ``--resume`` had mixed two versions; the other tasks' rows are
older.  A row must be re-measured whenever the fit's defaults change.)  (All rows were measured
again on 2026-12-05 after bf16's convolutions were centred, ``models.layers.centred_conv``, for
denoising, deblocking and inpainting, and for the demo image; super-resolution, enhancement and
deblurring were not, and have no rows.)  (Denoising's 16 runs on the Xeon with AMX were measured
again on 2026-12-06 after the quick preset's ``stop_min_gain``:
results/cpu_modes_denoising_amx_before_decide_at_end.md; the runs before it are in
results/cpu_modes_denoising_amx_before_min_gain.md; and with seeds 4–7 added after its
``stop_decide_at_end``: results/cpu_modes_denoising_amx.md, 32 runs.)

On a CPU without native bf16 the candidate is fp32 itself: the benchmark then checks that
``--amp auto`` gives outputs identical to ``--amp none`` (a short fit of each task), which is
the promise that nothing changes there, and writes that verdict.
"""
from __future__ import annotations

import datetime
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from benchmarks.robustness import TARGETS, grid_parser, image, set_overrides, settings
from tasks import all_tasks, restore
from utils.atomic import atomic_write_text
from utils.config import BF16_PARITY
from utils.device import FASTER, bf16_units, command_process, cpu_model, resolve_amp
from utils.imageio import to_tensor
from utils.metrics import psnr
from utils.tables import csv_text, markdown

# benchmarks.cpu_preset's unseen set: images no preset was tuned on, gray (brick, cell) and
# colour (retina, hubble_deep_field)
IMAGES, SEEDS = ("brick", "retina", "cell", "hubble_deep_field"), (0, 1)
MEAN_DB, WORST_DB = 0.1, 0.3     # the most the candidate may lose: on average, in its worst run
CHECK_ITERS = 20                 # the identity check's fits on a CPU without native bf16


def measure_of(task, r) -> float:
    """The task's measure of a run (enhancement, which has no ground truth: the PSNR of the
    base layer, ``r.fitted``, to its input)."""
    if task.name not in TARGETS:
        return float(psnr(to_tensor(r.fitted), to_tensor(r.observed))[0])
    return float(r.metrics[TARGETS[task.name][0]])


def run(task, name, seed, amp, channels_last, **extra):
    """One quick-preset run in a mode (``extra``: other options, e.g. a test's tiny net):
    (measure, seconds per iteration, result).  The task's bf16 quick preset (``quick_bf16``,
    the one a bf16 fit gets) in both modes: the two runs differ in their arithmetic only."""
    r = restore(image(name), task=task.name, observed=False, preset="quick", amp=amp,
                channels_last=channels_last, **settings(task, seed, {**task.quick_bf16, **extra}))
    return measure_of(task, r), 1 / r.fit.its_per_sec, r


HEADER = ["task", "image", "seed", "fp32", "candidate", "delta_db", "fp32_s_per_it",
          "candidate_s_per_it", "speed_up", "null_fp32", "null_delta_db", "cl_fp32",
          "cl_delta_db", "cl_s_per_it"]
REQUIRED = HEADER[:11]   # the columns of a row before --layout existed


def null_run(task, name, seed, **extra) -> float:
    """The fp32 fit again with one torch thread instead of this process's (the sums in another
    order): how far one run's measure moves when nothing but rounding changes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        return run(task, name, seed, "none", False, **extra)[0]
    finally:
        torch.set_num_threads(threads)


def parity(tasks, images, seeds, amp, channels_last, log=print, done=None, null=False,
           on_row=None, layout=False, **extra) -> list[list]:
    """Rows (``HEADER``: task, image, seed, fp32 measure, candidate measure, Δ = candidate −
    fp32, the two s/it, speed-up, with ``null`` the fp32 measure of :func:`null_run` and its Δ,
    with ``layout`` the fp32 fit in the channels-last layout (the one ``--amp auto`` would give
    fp32 with utils.device.FP32_CHANNELS_LAST), its Δ and s/it; NaN where not measured)
    of every case, the two modes in alternating order.  done: rows of an earlier run by (task,
    image, seed), kept (a missing null or layout run is measured); on_row(rows) after each."""
    rows, k, done = [], 0, done or {}
    for task in tasks:
        for name in images:
            for seed in seeds:
                row = done.get((task.name, name, seed))
                if row is None:
                    modes = [("none", False), (amp, channels_last)]
                    got = {}
                    for mode in (modes if k % 2 == 0 else modes[::-1]):
                        got[mode[0]] = run(task, name, seed, *mode, **extra)[:2]
                    (p32, t32), (pc, tc) = got["none"], got[amp]
                    row = [task.name, name, seed, p32, pc, pc - p32, t32, tc, t32 / tc,
                           *[math.nan] * (len(HEADER) - 9)]
                    log(f"{task.name} {name} seed {seed}: fp32 {p32:.2f} dB {t32:.3f} s/it, "
                        f"{amp} {pc:.2f} dB {tc:.3f} s/it ({t32 / tc:.2f}×)", flush=True)
                k += 1
                if null and math.isnan(row[9]):
                    row[9] = null_run(task, name, seed, **extra)
                    row[10] = row[9] - row[3]
                    log(f"{task.name} {name} seed {seed}: fp32 again in another thread count "
                        f"{row[9]:.2f} dB (Δ {row[10]:+.2f})", flush=True)
                if layout and math.isnan(row[11]):
                    pl, tl = run(task, name, seed, "none", True, **extra)[:2]
                    row[11:14] = [pl, pl - row[3], tl]
                    log(f"{task.name} {name} seed {seed}: fp32 channels-last {pl:.2f} dB "
                        f"(Δ {row[12]:+.2f}) {tl:.3f} s/it", flush=True)
                rows.append(row)
                if on_row:
                    on_row(rows)
    return rows


def read_rows(path: Path) -> dict:
    """The cases of an earlier run (``--resume``), by (task, image, seed)."""
    import csv
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        out = {}
        for d in csv.DictReader(f):
            if set(REQUIRED) <= set(d):
                out[d["task"], d["image"], int(d["seed"])] = [
                    d["task"], d["image"], int(d["seed"]),
                    *(float(d[h]) if d.get(h) else math.nan for h in HEADER[3:])]
        return out


SPEED_ITERS, SPEED_REPEATS = 60, 2   # the per-task speed-up: short fits, no stop


def speedups(tasks, amp, channels_last, log=print, **extra) -> list[list]:
    """Rows (task, fp32 ms/it, candidate ms/it, candidate's time / fp32's) of every task's quick
    preset (its bf16 values in both modes) on the colour test crop, ``SPEED_ITERS`` iterations
    without a stop, the two modes alternating ``SPEED_REPEATS`` times; the median of each."""
    rows = []
    for task in tasks:
        got = {"none": [], amp: []}
        for k in range(SPEED_REPEATS):
            modes = [("none", False), (amp, channels_last)]
            for mode in (modes if k % 2 == 0 else modes[::-1]):
                got[mode[0]].append(run(task, IMAGES[-1], 0, *mode, **{
                    "iters": SPEED_ITERS, "stop": "none", **extra})[1])
        t32, tc = (1000 * float(np.median(got[m])) for m in ("none", amp))
        rows.append([task.name, t32, tc, tc / t32])
        log(f"{task.name}: fp32 {t32:.1f} ms/it, {amp} {tc:.1f} ms/it ({tc / t32:.2f}×)",
            flush=True)
    return rows


def speed_section(tasks=None, **extra) -> str:
    """The speed table's section on the quick presets (``benchmarks.speed`` on a CPU)."""
    tasks = list((tasks or all_tasks()).values())
    amp, channels_last, why = resolve_amp("auto", torch.device("cpu"), verified=True)
    lines = ["", "## Every task's quick preset: fp32 and the mode `--amp auto` chooses", ""]
    if amp == "none":
        return "\n".join(lines + [f"`--amp auto` is fp32 on this CPU ({why}): nothing to "
                                   "compare.", ""])
    rows = speedups(tasks, amp, channels_last, log=lambda *a, **k: None, **extra)
    lines += [f"The candidate: {why}. Each task's quick preset (with its `quick_bf16` values in "
              f"both modes) on the {IMAGES[-1]} crop, {SPEED_ITERS} iterations without a stop, "
              f"the two modes alternating {SPEED_REPEATS} times; ms/it = the median of the "
              "fit's own rate (start-up and measures included). Whether the mode is the "
              "default for a task: results/cpu_modes.md (parity).", ""]
    lines += markdown(["task", "fp32 ms/it", f"{amp} ms/it", "time / fp32's"],
                      [[r[0], f"{r[1]:.1f}", f"{r[2]:.1f}", f"{r[3]:.2f}×"] for r in rows])
    return "\n".join(lines) + "\n"


FIDELITY = dict(channels=64, crop=128, lr=0.001, checkpoints=(0, 100, 300))


def fidelity(name="astronaut", channels_last=False, channels=None, crop=None, checkpoints=None,
             seed=0) -> list[list]:
    """How close bf16's arithmetic is to fp32's, without a fit's chaos: the quick preset's
    decoder (λ 1.4, Fourier input) fitted in fp32 (Adam, plain MSE) to the centre crop of
    ``name``; at each checkpoint the bf16 forward and backward of the same weights, with the
    convolutions plain (``models.layers.lowered`` off: only the conv is bf16) and centred
    (``models.layers.centred_conv``).  Rows: layout, iteration, then per variant the PSNR of
    the bf16 output to the fp32 output and the gradient's error relative to fp32's (‖g − g₃₂‖ /
    ‖g₃₂‖ over every parameter)."""
    import models.layers as layers
    from benchmarks.stopping import crop as centre_crop
    from models.inputs import make_input
    from models.nets import build_net, code_shape
    channels, crop = channels or FIDELITY["channels"], crop or FIDELITY["crop"]
    checkpoints = checkpoints or FIDELITY["checkpoints"]
    x = to_tensor(centre_crop(name, crop))
    torch.manual_seed(seed)
    net = build_net("decoder", 32, x.shape[1], channels=channels, ln_lambda=1.4)
    z = make_input("fourier", 32, *code_shape(net, crop, crop))
    if channels_last:
        net, z = (net.to(memory_format=torch.channels_last),
                  z.contiguous(memory_format=torch.channels_last))
    params = list(net.parameters())
    opt = torch.optim.Adam(params, FIDELITY["lr"])
    real, rows = layers.lowered, []

    def output_and_grad(amp):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = net(z).float()
        return out, torch.autograd.grad((out - x).square().mean(), params)

    try:
        for it in range(max(checkpoints) + 1):
            if it in checkpoints:
                ref, g32 = output_and_grad(False)
                norm = torch.cat([g.flatten() for g in g32]).norm()
                row = ["channels-last" if channels_last else "default", it]
                for variant in ("plain", "centred"):
                    layers.lowered = real if variant == "centred" else (lambda v: False)
                    out, g = output_and_grad(True)
                    layers.lowered = real
                    err = torch.cat([(a - b).flatten() for a, b in zip(g, g32)]).norm() / norm
                    row += [float(psnr(out.detach(), ref.detach())[0]), float(err)]
                rows.append(row)
            loss = (net(z) - x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        layers.lowered = real
    return rows


FIDELITY_HEADER = ["layout", "iteration", "plain: output PSNR to fp32 (dB)",
                   "plain: gradient error", "centred: output PSNR to fp32 (dB)",
                   "centred: gradient error"]


def fidelity_section(rows) -> list[str]:
    """The report's section on :func:`fidelity`."""
    return ["", "## bf16's arithmetic against fp32's, without a fit's chaos", "",
            f"`--fidelity`: the quick preset's decoder ({FIDELITY['channels']} channels, λ 1.4) "
            f"fitted in fp32 (lr {FIDELITY['lr']:g}) to the astronaut crop "
            f"({FIDELITY['crop']}²); at each checkpoint the same weights' forward and backward in "
            "bf16, the convolutions plain or centred (`models.layers.centred_conv`; the 1×1 "
            "output conv in fp32). A whole fit's outcome depends on its rounding (the null "
            "above); this compares the arithmetic itself.", ""] + markdown(
        FIDELITY_HEADER, [[r[0], r[1], f"{r[2]:.1f}", f"{r[3]:.4f}", f"{r[4]:.1f}", f"{r[5]:.4f}"]
                          for r in rows])


def identity(tasks, images, log=print) -> list[list]:
    """Rows (task, image, identical, max |difference|) of short fits with --amp auto and none."""
    rows = []
    for task in tasks:
        for name in images:
            outs = [run(task, name, 0, amp, False, iters=CHECK_ITERS)[2].fitted
                    for amp in ("auto", "none")]
            diff = float(np.abs(outs[0] - outs[1]).max())
            rows.append([task.name, name, "yes" if diff == 0 else "NO", f"{diff:.3g}"])
            log(f"{task.name} {name}: --amp auto vs none, max |difference| {diff:.3g}", flush=True)
    return rows


def other_cpu_section(rows, path: Path) -> list[str]:
    """The report's section on ``--other-cpu``: fp32 here against fp32 in another CPU's run of
    this benchmark (its CSV, and the device and date lines of the report beside it), per case
    both hold: the same code, preset, seed and image, the arithmetic of another machine.  A user
    who reruns a command on another computer sees this much change."""
    theirs = read_rows(path)
    pairs = [(r, theirs[r[0], r[1], r[2]]) for r in rows if (r[0], r[1], r[2]) in theirs]
    report = path.with_suffix(".md")
    about = [line for line in (report.read_text(encoding="utf-8").splitlines()
                               if report.exists() else [])
             if line.startswith(("- device:", "- date:"))] or ["- device: not recorded"]
    lines = ["", "## fp32 on another CPU", "",
             f"`--other-cpu {path.name}`: the fp32 fit of each case here against the fp32 fit of "
             "the same case in that run (same preset, seed and image; only the machine's "
             "arithmetic differs, if the code is the same: compare the dates with the history). "
             "That run:", "", *(f"  {line}" for line in about), ""]
    if not pairs:
        return lines + ["No case in common.", ""]
    d = np.array([mine[3] - other[3] for mine, other in pairs])
    lines += [f"{len(d)} cases: Δ (here − there) mean {d.mean():+.3f} dB, mean |Δ| "
              f"{np.abs(d).mean():.3f}, worst |Δ| {np.abs(d).max():.3f}.", ""]
    return lines + markdown(["task", "image", "seed", "fp32 here", "fp32 there", "Δ (dB)"],
                            [[*m[:3], f"{m[3]:.3f}", f"{o[3]:.3f}", f"{m[3] - o[3]:+.3f}"]
                             for m, o in pairs])


def mean_interval(d) -> str:
    """The 95 % interval of the mean of the paired differences ``d`` (Student's t, n − 1 degrees
    of freedom): mean ± t·s/√n.  How well the runs pin down a mean loss of 0.1 dB: a fit's Δ
    spreads by tenths of a dB under any rounding (the null), so a few runs cannot."""
    d = np.asarray(d, dtype=float)
    if d.size < 2:
        return "—"
    mean, half = d.mean(), stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return f"{mean - half:+.2f} … {mean + half:+.2f} ({d.size} runs)"


def verdicts(rows) -> list[list]:
    """Per task: mean Δ, mean and worst loss (fp32 − candidate), mean |Δ|, the null's mean |Δ|
    and worst |Δ| (where measured), the median speed-up, whether parity is kept, and the 95 %
    interval of the mean Δ (:func:`mean_interval`); last, the same two bounds read on the null
    (fp32 against itself: would it pass?) and how many runs lose more than ``WORST_DB``, the
    candidate's and the null's."""
    out = []
    for name in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == name]
        d = np.array([r[5] for r in mine])
        nd = np.array([r[10] for r in mine if not math.isnan(r[10])])
        ld = np.array([r[12] for r in mine if not math.isnan(r[12])])
        lup = np.array([r[6] / r[13] for r in mine if not math.isnan(r[13])])
        up = np.array([r[8] for r in mine])
        ok = within_bounds(d)
        faster = 1 / np.median(up) <= FASTER
        out.append([name, f"{d.mean():+.3f}", f"{(-d).max():+.3f}", f"{np.abs(d).mean():.3f}",
                    f"{np.abs(nd).mean():.3f} / {np.abs(nd).max():.3f}" if nd.size else "—",
                    f"{ld.mean():+.3f} / {np.abs(ld).mean():.3f} / {(-ld).max():+.3f}, "
                    f"{np.median(lup):.2f}×" if ld.size else "—",
                    f"{np.median(up):.2f}×", "yes" if ok else "NO",
                    "yes" if ok and faster else "no", "yes" if name in BF16_PARITY else "no",
                    mean_interval(d), null_bounds(d, nd)])
    return out


def within_bounds(d) -> bool:
    """Whether runs with Δ ``d`` (candidate − fp32) lose at most ``MEAN_DB`` on average and
    ``WORST_DB`` in the worst run: the verdict's parity."""
    return -d.mean() <= MEAN_DB and (-d).max() <= WORST_DB


def null_bounds(d, nd) -> str:
    """The verdict's bounds read on the null's Δ (its mean loss / worst loss, kept or not), and
    the runs over the worst-run bound: the candidate's, the null's ("—" without a null)."""
    if not nd.size:
        return "—"
    over = lambda x: f"{int((-x > WORST_DB).sum())}/{x.size}"  # noqa: E731
    return (f"{-nd.mean():+.3f} / {(-nd).max():+.3f}, {'yes' if within_bounds(nd) else 'NO'}; "
            f"runs losing > {WORST_DB}: {over(d)} / {over(nd)}")


def main(argv=None):
    if argv is None:     # a command's own process, as the task scripts set it
        command_process()
    argv = sys.argv[1:] if argv is None else list(argv)
    tasks = all_tasks()
    p = grid_parser(__doc__, IMAGES, SEEDS, "results/cpu_modes.md")
    p.add_argument("--resume", action="store_true",
                   help="keep the cases already in the CSV beside --out, run only the others")
    p.add_argument("--null", action="store_true",
                   help="each case's fp32 fit once more with another thread count (the null)")
    p.add_argument("--layout", action="store_true",
                   help="each case's fp32 fit once more in the channels-last layout (the "
                        "verdict on utils.device.FP32_CHANNELS_LAST)")
    p.add_argument("--other-cpu", metavar="CSV", default=None,
                   help="also compare the fp32 fits with those in another CPU's CSV of this "
                        "benchmark (the same cases)")
    p.add_argument("--fidelity", action="store_true",
                   help="also bf16's output and gradient against fp32's on fixed weights")
    args = p.parse_args(argv)
    if args.other_cpu and not Path(args.other_cpu).is_file():
        p.error(f"--other-cpu {args.other_cpu}: no such file")
    chosen = [tasks[n] for n in args.tasks]
    amp, channels_last, why = resolve_amp("auto", torch.device("cpu"), verified=True)
    out = Path(args.out)
    md = ["# The numeric mode of CPU fits: bf16 against fp32", "",
          f"- device: CPU {cpu_model()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}, ATen capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: "
          f"{bf16_units()}",
          f"- command: `{' '.join(['python -m benchmarks.cpu_modes', *argv])}`",
          f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
          f"- the candidate `--amp auto` would choose for a verified task: {why}", ""]
    if amp == "none":
        rows = identity(chosen, args.images)
        md += [f"No bf16 to measure on this CPU: `--amp auto` is fp32. Check that nothing "
               f"changed: a {CHECK_ITERS}-iteration quick-preset fit of each task with `--amp "
               "auto` and with `--amp none` (seed 0), the outputs compared.", ""]
        md += markdown(["task", "image", "identical", "max |difference|"], rows)
        csv = csv_text(["task", "image", "identical", "max_abs_difference"], rows)
    else:
        csv_path = out.with_suffix(".csv")
        done = read_rows(csv_path) if args.resume else {}
        # the CSV keeps the earlier cases outside this grid (other tasks, images, seeds)
        grid = {(t.name, n, s) for t in chosen for n in args.images for s in args.seeds}
        others = [r for k, r in done.items() if k not in grid]
        order = {n: k for k, n in enumerate(tasks)}
        merged = lambda rows: sorted(rows + others, key=lambda r: order[r[0]])  # noqa: E731
        rows = merged(parity(chosen, args.images, args.seeds, amp, channels_last, done=done,
                             null=args.null, layout=args.layout,
                             **set_overrides(chosen[0], args.set),
                             on_row=lambda rows: atomic_write_text(
                                 csv_path, csv_text(HEADER, merged(rows)))))
        md += ["## Verdict per task", "",
               f"Δ = the candidate's measure − fp32's, per run (the same preset, seed and "
               f"image). The candidate may be the default where it loses at most {MEAN_DB} dB "
               f"on average (mean loss = −mean Δ) and at most {WORST_DB} dB in its worst run. "
               "The null: the fp32 run again with another thread count (the sums in another "
               "order), its |Δ| to the first (mean / worst): how much of a run's Δ is the fit's "
               "sensitivity to any rounding. fp32 channels-last (`--layout`): the fp32 fit in "
               "the channels-last layout (the same arithmetic, each output's sums in another "
               "order: the verdict on `utils.device.FP32_CHANNELS_LAST`), its Δ to fp32 (mean / "
               "mean |Δ| / worst loss) and the median of fp32's seconds per iteration over its. "
               "Speed-up: fp32's seconds per iteration over the "
               "candidate's (median over the task's runs, start-up and measures included); the "
               f"candidate is the default where parity is kept and it takes ≤ {FASTER} of "
               "fp32's time (as the probe requires). The 95 % interval: a confidence interval "
               "for the mean Δ of runs like these in general (other seeds and images of the "
               "kind; Student's t over the runs' Δ); the verdict reads the runs' own mean. The "
               "bounds on the null: the same two bounds read on the null's Δ (would fp32 pass "
               "against itself?), and the runs that lose more than the worst-run bound, the "
               "candidate's / the null's.", ""]
        md += markdown(["task", "mean Δ (dB)", "worst loss", "mean |Δ|", "null |Δ| mean / worst",
                        "fp32 channels-last: Δ mean / mean |Δ| / worst loss, speed-up",
                        "speed-up", "parity kept", "default (parity, and faster)",
                        "in BF16_PARITY", "mean Δ: 95 % interval",
                        "the bounds on the null: mean / worst loss, kept; runs over"],
                       verdicts(rows))
        md += ["", "## Every run", ""]
        md += markdown([*HEADER[:4], amp, *HEADER[5:7], f"{amp}_s_per_it", *HEADER[8:]],
                       [[*r[:3], *(f"{v:.3f}" for v in r[3:8]), f"{r[8]:.2f}",
                         *("" if math.isnan(v) else f"{v:.3f}" for v in r[9:])] for r in rows])
        if args.other_cpu:
            md += other_cpu_section(rows, Path(args.other_cpu))
        if args.fidelity:
            md += fidelity_section([r for cl in (False, True) for r in fidelity(channels_last=cl)])
        csv = csv_text(HEADER, rows)
    atomic_write_text(out, "\n".join(md) + "\n")
    atomic_write_text(out.with_suffix(".csv"), csv)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
