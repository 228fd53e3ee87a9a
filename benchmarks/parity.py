"""Parity of the numeric modes: is a faster mode as good as strict fp32 on a full denoising run?

    python -m benchmarks.parity [--modes fp32 tf32 tf32-compile bf16-compile] [--iters 10000]
                                [--image PATH] [--out results/parity-cuda.md] [--quick]

One 512² paper image (the figure image, F16; the embedded skimage astronaut without a data
folder), denoising σ 25 in the paper's configuration (``denoising.py --full --crop32``: decoder,
λ 1.4, measures every iteration) with the same seed, **no stop** and 10 000 iterations, once per
numeric mode of ``reproduce.py --mode`` (``paper.runner.MODES``): strict fp32 (the reference),
tf32 (PyTorch's default on CUDA: cuDNN computes the fp32 convolutions in TF32), bf16 autocast,
with or without ``torch.compile``.  Per mode: PSNR of the last output, of the moving average,
the peak PSNR and its iteration, ms per iteration.  The verdict names the fastest mode whose
last and moving-average PSNR are both within ``TOLERANCE_DB`` of strict fp32: the mode the
paper runs use (issue #12).  ``--quick`` is the CPU test: a 64² crop, 8 channels, 6 iterations.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
import tempfile
from pathlib import Path

import torch

import dataset
from paper.runner import FIG_IMAGE, MODES
from tasks import get_task
from utils.args import integer, report_path
from utils.atomic import atomic_write_text
from utils.cli import main as task_main
from utils.members import dropped_compile
from utils.tables import markdown

TOLERANCE_DB = 0.1
DEFAULT_MODES = ("fp32", "tf32", "tf32-compile", "bf16-compile")
QUICK = ("--quick", "--crop", "64", "--channels", "8", "--log-every", "2")


def figure_image(data_dir):
    """The figure image of the paper runs, or None (the script's embedded image)."""
    if data_dir is None:
        return None
    paths = dataset.task_images(data_dir, "denoising")
    named = [p for p in paths if p.stem.lower() == FIG_IMAGE.lower()]
    return (named or paths or [None])[0]


def run_mode(mode, image, iters, out: Path, quick: bool) -> dict:
    """One denoising fit in ``mode``; its summary.json plus the peak of its logged PSNR."""
    argv = (list(QUICK) if quick else ["--full", "--crop32"]) + [
        "--quiet", "--stop", "none", "--seed", "0", "--iters", str(iters),
        "--out", str(out / mode), *MODES[mode]] + (["--image", str(image)] if image else [])
    status = task_main(get_task("denoising"), argv)
    recs = sorted((out / mode).glob("*/summary.json"))
    if status or not recs:
        return {"mode": mode, "error": f"exit status {status}"}
    rec = json.loads(recs[0].read_text())
    dropped = dropped_compile(rec.get("warnings", []))
    if dropped:      # the fit ran eager: not this mode (utils.members' first-step check)
        return {"mode": mode, "error": dropped}
    with (recs[0].parent / "log.csv").open(newline="") as f:
        rows = [(int(r["iteration"]), float(r["psnr_gt"])) for r in csv.DictReader(f)]
    # the last output counts too: a fit that logs every k iterations may not log its last
    peak_it, peak = max(rows + [(rec["iterations"], rec["psnr"])], key=lambda r: r[1])
    return dict(mode=mode, image=rec["image"], psnr=rec["psnr"], psnr_ema=rec["psnr_ema"],
                peak=peak, peak_iteration=peak_it, iterations=rec["iterations"],
                ms_per_it=1e3 / rec["its_per_sec"], seconds=rec["seconds"],
                device=rec["device"], torch=rec["torch"], cuda=rec.get("cuda"))


def verdict(results: list[dict], reference="fp32") -> tuple[str | None, str]:
    """(the fastest mode within tolerance of the reference, the sentence that says so)."""
    ref = next((r for r in results if r["mode"] == reference and "error" not in r), None)
    if ref is None:
        return None, f"no {reference} run: no verdict"
    ok = [r for r in results if "error" not in r
          and abs(r["psnr"] - ref["psnr"]) <= TOLERANCE_DB
          and abs(r["psnr_ema"] - ref["psnr_ema"]) <= TOLERANCE_DB]
    if not ok:   # a NaN reference compares with nothing
        return None, f"the {reference} run's PSNR is not finite: no verdict"
    best = min(ok, key=lambda r: r["ms_per_it"])
    slower = [r["mode"] for r in results if "error" not in r and r not in ok]
    return best["mode"], (f"fastest mode within {TOLERANCE_DB} dB of strict fp32 (last and "
                          f"moving-average PSNR): **{best['mode']}** ({best['ms_per_it']:.2f} "
                          f"ms/it vs {ref['ms_per_it']:.2f}); the paper runs use `reproduce.py "
                          f"--mode {best['mode']}`" + (f"; outside the tolerance: "
                                                       f"{', '.join(slower)}" if slower else ""))


def report(results, text, command, quick=False) -> str:
    ok = [r for r in results if "error" not in r]
    ref = next((r for r in ok if r["mode"] == "fp32"), None)
    head = ok[0] if ok else {}
    lines = ["# Numeric-mode parity: denoising, one image, no stop", "",
             f"- device: {head.get('device', '—')} · "
             f"torch {head.get('torch', torch.__version__)}"
             + (f" (CUDA {head['cuda']})" if head.get("cuda") else ""),
             f"- image: {head.get('image', '—')}, σ 25, seed 0, {head.get('iterations', '—')} "
             + ("iterations, TOY scale (`--quick`, 64² crop, 8 channels): not a parity result"
                if quick else "iterations, the paper's configuration (`denoising.py --full "
                "--crop32 --stop none`); ms/it is the fit's wall time over its iterations "
                "(compilation included)"),
             f"- command: `{command}`",
             f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}", ""]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["mode"], " ".join(MODES[r["mode"]]) or "(default)", "—", "—", "—",
                         "—", "—", "—", r["error"]])
            continue
        d = (lambda k: f"{r[k] - ref[k]:+.2f}") if ref else (lambda k: "—")
        rows.append([r["mode"], " ".join(MODES[r["mode"]]) or "(default)", f"{r['psnr']:.2f}",
                     d("psnr"), f"{r['psnr_ema']:.2f}", d("psnr_ema"),
                     f"{r['peak']:.2f} @ {r['peak_iteration']}", f"{r['ms_per_it']:.2f}", ""])
    lines += markdown(["mode", "fit options", "PSNR last", "Δ vs fp32", "PSNR EMA", "Δ EMA",
                       "peak @ it.", "ms/it", "note"], rows)
    return "\n".join(lines + ["", "Verdict: " + text, ""])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=None)
    p.add_argument("--iters", type=integer(1), default=None, help="default 10000 (6 with --quick)")
    p.add_argument("--image", help="the image (default: the figure image of the data folder)")
    p.add_argument("--out", help="default results/parity-cuda.md (with --quick: no file)")
    p.add_argument("--quick", action="store_true", help="CPU test scale")
    args = p.parse_args(argv)
    modes = args.modes or (("fp32", "tf32", "bf16") if args.quick else DEFAULT_MODES)
    if "fp32" not in modes:
        modes = ("fp32", *modes)
    image = Path(args.image) if args.image else figure_image(dataset.resolve_data_dir())
    iters = args.iters or (6 if args.quick else 10000)
    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        results = [run_mode(m, image, iters, Path(tmp), args.quick) for m in modes]
    _, text = verdict(results)
    if args.quick:     # a toy fit says nothing of the modes' parity
        text = "none at TOY scale (`--quick`): the paper runs' mode is decided by a full run"
    md = report(results, text, "python -m benchmarks.parity" + "".join(f" {a}" for a in argv),
                args.quick)
    print(md)
    if path := report_path(args.out, args.quick, "results/parity-cuda.md"):
        atomic_write_text(path, md)
    return 0 if any("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
