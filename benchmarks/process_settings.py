"""Do the command line's process settings make CPU fits faster, and do they change them?

    python -m benchmarks.process_settings [--setting denormals|heap] [--tasks denoising ...]
                                          [--iters 60] [--repeats 2] [--crop N]
                                          [--stop none|preset|RULE] [--out results/heap.md]

A command (the task scripts, ``reproduce.py``, the CPU benchmarks) sets its own process first,
before any torch work (``utils.device.command_process``); a call to ``restore()`` leaves the
caller's process as it is.  Each setting is compared here with the process as it was:

- ``denormals`` (``flush_denormals``): denormal floats (below 1.2e-38 in magnitude, kept by
  IEEE gradual underflow) flushed to zero.  Intel CPUs compute them in microcode.  Torch's
  worker threads take the mode of the thread that starts them, hence first.
- ``heap`` (``keep_freed_memory``): glibc's malloc keeps freed memory instead of giving the top
  of its heap back and serving large blocks with fresh mmaps, which a fit pays for every
  iteration in page faults (the kernel maps and zeroes its activations again).

Each fit runs in a fresh process (both settings are for the process's life), the other setting
as the command line sets it: each task's quick preset (fp32, its ``benchmarks.robustness`` crop
of the colour test image or ``--crop``, seed 0), the setting off and on, in alternating order
``--repeats`` times; the median seconds per iteration of each (the fit's own rate, start-up and
measures included), the process's page faults (minor) and peak resident memory, the share of
torch's threads that flushed (``utils.device.flushed_share``), and whether the outputs are bit
for bit the same.  (A fit amplifies any difference in rounding into another course: a setting
that changed the arithmetic would change results, not only speed.)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.cpu_modes import IMAGES, measure_of
from benchmarks.robustness import image, settings
from tasks import all_tasks, restore
from utils.args import integer
from utils.atomic import atomic_write_text
from utils.device import bf16_units, cpu_model, flushed_share, keep_freed_memory
from utils.tables import csv_text, markdown

SETTINGS = {"denormals": ("kept", "flushed"), "heap": ("given back", "kept")}
HEADER = ["setting", "task", "image", "crop", "iterations_off", "iterations_on", "off_s_per_it",
          "on_s_per_it", "speed_up", "faults_off", "faults_on", "peak_mb_off", "peak_mb_on",
          "flushed_share_off", "flushed_share_on", "identical", "max_abs_difference", "measure"]


def child(setting: str, on: bool, task: str, name: str, crop: int, iters: int, stop: str,
          out: str) -> None:
    """One fit in this (fresh) process, ``setting`` off or on and the other one as a command
    sets it, before any torch work (the imports start no worker thread); prints a JSON line
    (s/it, iterations, measure, page faults, peak memory, flushed share) and saves the output
    to ``out``."""
    torch.set_flush_denormal(on or setting != "denormals")
    if on or setting != "heap":
        keep_freed_memory()
    spec = all_tasks()[task]
    own = {} if stop == "preset" else {"stop": stop}   # preset: the task's own stop rule
    crop = {"crop": crop} if crop else {}
    r = restore(image(name), task=task, observed=False, preset="quick", amp="none",
                device="cpu", **settings(spec, 0, {"iters": iters, **own, **crop}))
    np.save(out, r.fitted)     # the net's output (enhancement: its base, not the enhanced)
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"s_per_it": 1 / r.fit.its_per_sec, "iterations": r.fit.iterations,
                      "measure": measure_of(spec, r), "share": flushed_share(),
                      "faults": use.ru_minflt, "peak_mb": use.ru_maxrss / 1024}))


def one_fit(setting, on, task, name, crop, iters, stop, out) -> dict:
    """:func:`child` in a fresh interpreter."""
    cmd = [sys.executable, "-m", "benchmarks.process_settings", "--child", setting,
           str(int(on)), task, name, str(crop), str(iters), stop, out]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(setting, tasks, name=IMAGES[-1], crop=0, iters=60, repeats=2, stop="none",
            log=print) -> list[list]:
    """Rows (``HEADER``) of every task: the quick preset's fp32 fit with ``setting`` off and on
    (each in a fresh process), alternating; s/it medians, their ratio, page faults and peak
    memory (medians), the shares of threads flushing, and whether the outputs are identical."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            got = {False: [], True: []}
            for k in range(repeats):
                for on in ((False, True) if k % 2 == 0 else (True, False)):
                    got[on].append(one_fit(setting, on, task.name, name, crop, iters, stop,
                                           os.path.join(tmp, f"{int(on)}_{k}.npy")))
            outs = {f: np.load(os.path.join(tmp, f"{int(f)}_0.npy")) for f in (False, True)}
            med = {key: [float(np.median([g[key] for g in got[f]])) for f in (False, True)]
                   for key in ("s_per_it", "faults", "peak_mb")}
            off, on = med["s_per_it"]
            diff = float(np.abs(outs[False].astype(np.float64) - outs[True]).max())
            rows.append([setting, task.name, name, crop or task.quick.get("crop", 0),
                         got[False][0]["iterations"], got[True][0]["iterations"], off, on,
                         off / on, *med["faults"], *med["peak_mb"], got[False][0]["share"],
                         got[True][0]["share"], "yes" if diff == 0 else "NO", diff,
                         got[True][0]["measure"]])
            names = SETTINGS[setting]
            log(f"{task.name}: {setting} {names[0]} {1e3 * off:.1f} ms/it, {names[1]} "
                f"{1e3 * on:.1f} ms/it ({off / on:.2f}×), page faults {med['faults'][0]:.0f} / "
                f"{med['faults'][1]:.0f}, outputs identical: {rows[-1][15]}", flush=True)
    return rows


def report(args, argv, rows) -> str:
    """The markdown page of a comparison."""
    off, on = SETTINGS[args.setting]
    length = (f"at most {args.iters} iterations (the preset's stop rule)" if args.stop == "preset"
              else f"{args.iters} iterations (stop {args.stop})")
    crop = f"{args.crop}×{args.crop} centre crop" if args.crop else "crop (the preset's)"
    what = {"denormals": "denormal floats kept (IEEE gradual underflow) or flushed to zero "
                         "(`utils.device.flush_denormals`), freed memory kept",
            "heap": "freed memory given back to the system (glibc's defaults) or kept "
                    "(`utils.device.keep_freed_memory`), denormals flushed"}[args.setting]
    md = [f"# The command line's process settings in CPU fits: {args.setting}", "",
          f"- device: CPU {cpu_model()}, {os.cpu_count()} cores, native bf16: {bf16_units()}, "
          f"torch threads {torch.get_num_threads()}, torch {torch.__version__}",
          f"- command: `{' '.join(['python -m benchmarks.process_settings', *argv])}`",
          f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}", "",
          f"Each task's quick preset in fp32 on the {IMAGES[-1]} {crop}, seed 0, {length}, "
          f"each fit in a fresh process with {what}, alternating {args.repeats} times; "
          f"iterations: those run ({off} / {on}); s/it = the median of the fit's own rate; "
          f"speed-up = {off}'s s/it over {on}'s; page faults (minor) and peak resident memory of "
          "the process, medians; threads flushing: the share of a parallel op's outputs flushed "
          "(1: every torch thread); identical: the two outputs bit for bit; measure: the task's "
          "(PSNR, super-resolution Y-PSNR, enhancement the fit to its input).", ""]
    md += markdown(["task", "crop", "iterations", f"{off} ms/it", f"{on} ms/it", "speed-up",
                    "page faults", "peak MiB", "threads flushing", "outputs identical",
                    "max |difference|", "measure"],
                   [[r[1], r[3], f"{r[4]} / {r[5]}", f"{1e3 * r[6]:.1f}", f"{1e3 * r[7]:.1f}",
                     f"{r[8]:.2f}×", f"{r[9]:.0f} / {r[10]:.0f}", f"{r[11]:.0f} / {r[12]:.0f}",
                     f"{r[13]:.2f} / {r[14]:.2f}", r[15], f"{r[16]:.3g}", f"{r[17]:.3f}"]
                    for r in rows])
    return "\n".join(md) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--child"]:
        setting, on, task, name, crop, iters, stop, out = argv[1:9]
        return child(setting, on == "1", task, name, int(crop), int(iters), stop, out)
    tasks = all_tasks()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", choices=list(SETTINGS), default="heap")
    p.add_argument("--tasks", nargs="+", choices=list(tasks), default=list(tasks))
    p.add_argument("--iters", type=integer(1), default=60, help="iterations of every fit (at most)")
    p.add_argument("--repeats", type=integer(1), default=2, help="fits per setting")
    p.add_argument("--crop", type=integer(0), default=0,
                   help="the centre crop's side (0: each preset's quick-check crop)")
    p.add_argument("--stop", default="none",
                   help="the stop rule (none: every fit runs --iters; preset: the task's own)")
    p.add_argument("--out", help="the report (default results/<setting>.md)")
    args = p.parse_args(argv)
    rows = compare(args.setting, [tasks[n] for n in args.tasks], crop=args.crop,
                   iters=args.iters, repeats=args.repeats, stop=args.stop)
    out = Path(args.out or f"results/{args.setting}.md")
    atomic_write_text(out, report(args, argv, rows))
    atomic_write_text(out.with_suffix(".csv"), csv_text(HEADER, rows))
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
