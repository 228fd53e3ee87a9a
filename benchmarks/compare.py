"""Two settings of the CPU quick presets, run by ``benchmarks.robustness`` on the same grid, paired
run by run: the same task, image and seed see the same degraded image, so B − A is a paired
difference and the images' spread cancels out of it.

    python -m benchmarks.compare A.csv B.csv [--names whole tiles] [--out results/pairs.md]

Writes a Markdown table: per task the number of paired runs, the mean of B − A (its smallest
and largest), how many runs B improves, each setting's gap to the task's classic method on the
same degraded image (``benchmarks.robustness.CLASSIC``) and the median ratio of their times;
then every paired run.  Runs found in one CSV only are listed, never paired.  No number in the
table is from elsewhere than the two CSVs.
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

from benchmarks.robustness import ours, read_rows, vs_classic
from utils.atomic import atomic_write_text
from utils.tables import markdown


def _mean(values) -> str:
    values = [v for v in values if v is not None]
    return f"{np.mean(values):+.2f} (worst {min(values):+.2f})" if values else "—"


def paired(a: dict, b: dict) -> list[tuple]:
    """(key, row of A, row of B) for every (task, image, seed) in both, in A's order."""
    return [(k, a[k], b[k]) for k in a if k in b]


def report(a_path, b_path, names=("A", "B")) -> list[str]:
    """The Markdown lines comparing the runs of ``b_path`` with those of ``a_path``."""
    a, b = read_rows(a_path), read_rows(b_path)
    pairs = paired(a, b)
    if not pairs:
        raise SystemExit(f"error: {b_path}: no run in common with {a_path} (task, image, seed)")
    na, nb = names
    md = [f"# {nb} against {na}: the same runs of the CPU quick presets, paired", "",
          f"- {na}: `{a_path}`; {nb}: `{b_path}` (`benchmarks.robustness` CSVs; their Markdown "
          "beside them names the device and the command)",
          f"- written by `python -m benchmarks.compare` on "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}; each pair: the same task, "
          "image and seed, so the same degraded image", "", "## Per task", ""]
    rows = []
    for task in dict.fromkeys(k[0] for k, _, _ in pairs):
        mine = [(ra, rb) for k, ra, rb in pairs if k[0] == task]
        d = [ours(rb) - ours(ra) for ra, rb in mine]
        rows.append([task, len(mine), f"{np.mean(d):+.2f}", f"{min(d):+.2f} … {max(d):+.2f}",
                     f"{sum(x > 0 for x in d)}/{len(d)}",
                     _mean(vs_classic(ra) for ra, _ in mine),
                     _mean(vs_classic(rb) for _, rb in mine),
                     f"{np.median([rb[5] / ra[5] for ra, rb in mine]):.2f}"])
    md += markdown(["task", "pairs", f"{nb} − {na} (mean)", "min … max", f"{nb} better",
                    f"{na} − classic", f"{nb} − classic", f"time {nb} / {na} (median)"], rows)
    md += ["", "The measure is each task's in `benchmarks.robustness` (PSNR; super-resolution: "
           "Y-PSNR), in dB; − classic: negative where the classic method is better.", "",
           "## Every pair", ""]
    md += markdown(["task", "image", "seed", "input", na, nb, f"{nb} − {na}", "classic",
                    f"seconds {na} / {nb}"],
                   [[*k, ra[3].split("→")[0].strip(), f"{ours(ra):.2f}", f"{ours(rb):.2f}",
                     f"{ours(rb) - ours(ra):+.2f}",
                     "—" if ra[9] is None else f"{ra[8]} {ra[9]:.2f}",
                     f"{ra[5]:.0f} / {rb[5]:.0f}"] for k, ra, rb in pairs])
    alone = [(p, k) for p, rows_, other in ((a_path, a, b), (b_path, b, a))
             for k in rows_ if k not in other]
    if alone:
        md += ["", "Not paired (in one CSV only): " + "; ".join(
            f"{k[0]} {k[1]} seed {k[2]} ({Path(p).name})" for p, k in alone)]
    return md


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="the robustness CSV of the reference setting")
    p.add_argument("b", help="the robustness CSV of the setting compared with it")
    p.add_argument("--names", nargs=2, default=("A", "B"), metavar=("A", "B"),
                   help="what the report calls the two settings (default: A B)")
    p.add_argument("--out", help="write the Markdown here (default: print it)")
    args = p.parse_args(argv)
    for path in (args.a, args.b):
        if not Path(path).is_file():
            raise SystemExit(f"error: {path}: no such CSV")
    text = "\n".join(report(args.a, args.b, tuple(args.names))) + "\n"
    if args.out:
        atomic_write_text(args.out, text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
