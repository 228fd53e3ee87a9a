"""Does flushing denormal floats to zero make CPU fits faster, and does it change them?

    python -m benchmarks.denormals [--tasks denoising ...] [--iters 60] [--repeats 2]
                                   [--stop none|preset|RULE] [--out results/denormals.md]

A denormal (a float below 1.2e-38 in magnitude, kept with gradual underflow) costs Intel CPUs
a microcode assist per operation.  ``utils.device.fit_settings`` flushes them to zero for the
length of every CPU fit (``FLUSH_DENORMALS``).  Here each task's quick preset (fp32, its
``benchmarks.robustness`` crop of the colour test image, seed 0) is fitted with the switch on
and off, in alternating order ``--repeats`` times: the median seconds per iteration of each
(the fit's own rate, start-up and measures included) and whether the outputs are bit for bit
the same.  (A fit amplifies any difference in rounding into another course: where a flushed
denormal reached the output, the outputs would differ, and the flush would be a change of the
results, not only of speed.)
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

import numpy as np
import torch

import utils.device as device
from benchmarks.cpu_modes import IMAGES, measure_of
from benchmarks.robustness import image, settings
from tasks import all_tasks, restore
from utils.atomic import atomic_write_text
from utils.device import bf16_units, cpu_model
from utils.tables import csv_text, markdown

HEADER = ["task", "image", "iterations", "kept_s_per_it", "flushed_s_per_it", "speed_up",
          "identical", "max_abs_difference", "measure"]


def compare(tasks, name=IMAGES[-1], iters=60, repeats=2, stop="none", log=print,
            **extra) -> list[list]:
    """Rows (``HEADER``) of every task: the quick preset's fp32 fit with denormals kept and
    flushed, alternating; s/it medians, their ratio, and whether the outputs are identical."""
    rows, real = [], device.FLUSH_DENORMALS
    own = {} if stop == "preset" else {"stop": stop}   # preset: the task's own stop rule
    try:
        for task in tasks:
            rate, outs, measure = {False: [], True: []}, {}, {}
            for k in range(repeats):
                for flush in ((False, True) if k % 2 == 0 else (True, False)):
                    device.FLUSH_DENORMALS = flush
                    r = restore(image(name), task=task.name, observed=False, preset="quick",
                                amp="none", **settings(task, 0, {"iters": iters, **own,
                                                                 **extra}))
                    rate[flush].append(1 / r.fit.its_per_sec)
                    outs.setdefault(flush, r.array)
                    measure.setdefault(flush, measure_of(task, r))
            kept, flushed = (float(np.median(rate[f])) for f in (False, True))
            diff = float(np.abs(outs[False].astype(np.float64) - outs[True]).max())
            rows.append([task.name, name, iters, kept, flushed, kept / flushed,
                         "yes" if diff == 0 else "NO", diff, measure[True]])
            log(f"{task.name}: kept {1e3 * kept:.1f} ms/it, flushed {1e3 * flushed:.1f} ms/it "
                f"({kept / flushed:.2f}×), outputs identical: {rows[-1][6]}", flush=True)
    finally:
        device.FLUSH_DENORMALS = real
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    tasks = all_tasks()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", choices=list(tasks), default=list(tasks))
    p.add_argument("--iters", type=int, default=60, help="iterations of every fit")
    p.add_argument("--repeats", type=int, default=2, help="fits per switch setting")
    p.add_argument("--stop", default="none",
                   help="the stop rule (none: every fit runs --iters; preset: the task's own)")
    p.add_argument("--out", default="results/denormals.md")
    args = p.parse_args(argv)
    rows = compare([tasks[n] for n in args.tasks], iters=args.iters, repeats=args.repeats,
                   stop=args.stop)
    out = Path(args.out)
    length = (f"at most {args.iters} iterations (the preset's stop rule)" if args.stop == "preset"
              else f"{args.iters} iterations (stop {args.stop})")
    md = ["# Denormal floats in CPU fits: kept or flushed to zero", "",
          f"- device: CPU {cpu_model()}, {os.cpu_count()} cores, native bf16: {bf16_units()}, "
          f"torch threads {torch.get_num_threads()}, torch {torch.__version__}",
          f"- command: `{' '.join(['python -m benchmarks.denormals', *argv])}`",
          f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}", "",
          f"Each task's quick preset in fp32 on the {IMAGES[-1]} crop, seed 0, {length}, "
          f"with denormals kept (IEEE gradual underflow) and "
          f"flushed to zero (`utils.device.FLUSH_DENORMALS`, the default), alternating "
          f"{args.repeats} times; s/it = the median of the fit's own rate; speed-up = kept's "
          "s/it over flushed's; identical: the two outputs bit for bit; measure: the task's "
          "(PSNR, super-resolution Y-PSNR, enhancement the fit to its input) with the flush.", ""]
    md += markdown(["task", "image", "iterations", "kept ms/it", "flushed ms/it", "speed-up",
                    "outputs identical", "max |difference|", "measure"],
                   [[*r[:3], f"{1e3 * r[3]:.1f}", f"{1e3 * r[4]:.1f}", f"{r[5]:.2f}×", r[6],
                     f"{r[7]:.3g}", f"{r[8]:.3f}"] for r in rows])
    atomic_write_text(out, "\n".join(md) + "\n")
    atomic_write_text(out.with_suffix(".csv"), csv_text(HEADER, rows))
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
