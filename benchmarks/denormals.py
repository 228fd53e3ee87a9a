"""Does flushing denormal floats to zero make CPU fits faster, and does it change them?

    python -m benchmarks.denormals [--tasks denoising ...] [--iters 60] [--repeats 2]
                                   [--stop none|preset|RULE] [--out results/denormals.md]

A denormal (a float below 1.2e-38 in magnitude, kept with gradual underflow) costs Intel CPUs
a microcode assist per operation.  The command line flushes them to zero in its process
(``utils.device.flush_denormals``, ``FLUSH_DENORMALS``), first, so that torch's worker threads
inherit the mode (``torch.set_flush_denormal`` changes the calling thread only).  So each fit
here runs in a fresh process, its mode set before any torch work: each task's quick preset
(fp32, its ``benchmarks.robustness`` crop of the colour test image, seed 0) with denormals kept
and flushed, in alternating order ``--repeats`` times; the median seconds per iteration of each
(the fit's own rate, start-up and measures included), the share of torch's threads that flushed
(``utils.device.flushed_share``: 1 and 0 expected), and whether the outputs are bit for bit the
same.  (A fit amplifies any difference in rounding into another course: where a flushed denormal
reached the output, the outputs would differ, and the flush would change results, not only speed.)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.cpu_modes import IMAGES, measure_of
from benchmarks.robustness import image, settings
from tasks import all_tasks, restore
from utils.atomic import atomic_write_text
from utils.device import bf16_units, cpu_model, flushed_share
from utils.tables import csv_text, markdown

HEADER = ["task", "image", "iterations_kept", "iterations_flushed", "kept_s_per_it",
          "flushed_s_per_it", "speed_up", "flushed_share_kept", "flushed_share_flushed",
          "identical", "max_abs_difference", "measure"]


def child(flush: bool, task: str, name: str, iters: int, stop: str, out: str) -> None:
    """One fit in this (fresh) process, denormals flushed or kept before any torch work (the
    imports start no worker thread); prints a JSON line (s/it, iterations, measure, flushed
    share) and saves the output to ``out``."""
    torch.set_flush_denormal(flush)
    spec = all_tasks()[task]
    own = {} if stop == "preset" else {"stop": stop}   # preset: the task's own stop rule
    r = restore(image(name), task=task, observed=False, preset="quick", amp="none",
                device="cpu", **settings(spec, 0, {"iters": iters, **own}))
    np.save(out, r.array)
    print(json.dumps({"s_per_it": 1 / r.fit.its_per_sec, "iterations": r.fit.iterations,
                      "measure": measure_of(spec, r), "share": flushed_share()}))


def one_fit(flush, task, name, iters, stop, out) -> dict:
    """:func:`child` in a fresh interpreter."""
    cmd = [sys.executable, "-m", "benchmarks.denormals", "--child", str(int(flush)), task, name,
           str(iters), stop, out]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(tasks, name=IMAGES[-1], iters=60, repeats=2, stop="none", log=print) -> list[list]:
    """Rows (``HEADER``) of every task: the quick preset's fp32 fit with denormals kept and
    flushed (each in a fresh process), alternating; s/it medians, their ratio, the shares of
    threads flushing, and whether the outputs are identical."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            got = {False: [], True: []}
            for k in range(repeats):
                for flush in ((False, True) if k % 2 == 0 else (True, False)):
                    got[flush].append(one_fit(flush, task.name, name, iters, stop,
                                              os.path.join(tmp, f"{int(flush)}_{k}.npy")))
            outs = {f: np.load(os.path.join(tmp, f"{int(f)}_0.npy")) for f in (False, True)}
            kept, flushed = (float(np.median([g["s_per_it"] for g in got[f]]))
                             for f in (False, True))
            diff = float(np.abs(outs[False].astype(np.float64) - outs[True]).max())
            rows.append([task.name, name, got[False][0]["iterations"],
                         got[True][0]["iterations"], kept, flushed, kept / flushed,
                         got[False][0]["share"], got[True][0]["share"],
                         "yes" if diff == 0 else "NO", diff, got[True][0]["measure"]])
            log(f"{task.name}: kept {1e3 * kept:.1f} ms/it, flushed {1e3 * flushed:.1f} ms/it "
                f"({kept / flushed:.2f}×), outputs identical: {rows[-1][9]}", flush=True)
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--child"]:
        flush, task, name, iters, stop, out = argv[1:7]
        return child(flush == "1", task, name, int(iters), stop, out)
    tasks = all_tasks()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", choices=list(tasks), default=list(tasks))
    p.add_argument("--iters", type=int, default=60, help="iterations of every fit (at most)")
    p.add_argument("--repeats", type=int, default=2, help="fits per setting")
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
          f"Each task's quick preset in fp32 on the {IMAGES[-1]} crop, seed 0, {length}, each "
          "fit in a fresh process with denormals kept (IEEE gradual underflow) or flushed to "
          "zero (as the command line runs, `utils.device.flush_denormals`), alternating "
          f"{args.repeats} times; iterations: those run (kept / flushed); s/it = the median of "
          "the fit's own rate; speed-up = kept's s/it over flushed's; threads flushing: the "
          "share of a parallel op's outputs flushed in each (1: every torch thread); identical: "
          "the two outputs bit for bit; measure: the task's (PSNR, super-resolution Y-PSNR, "
          "enhancement the fit to its input) with the flush.", ""]
    md += markdown(["task", "image", "iterations", "kept ms/it", "flushed ms/it", "speed-up",
                    "threads flushing (kept / flushed)", "outputs identical",
                    "max |difference|", "measure"],
                   [[r[0], r[1], f"{r[2]} / {r[3]}", f"{1e3 * r[4]:.1f}", f"{1e3 * r[5]:.1f}",
                     f"{r[6]:.2f}×", f"{r[7]:.2f} / {r[8]:.2f}", r[9], f"{r[10]:.3g}",
                     f"{r[11]:.3f}"] for r in rows])
    atomic_write_text(out, "\n".join(md) + "\n")
    atomic_write_text(out.with_suffix(".csv"), csv_text(HEADER, rows))
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
