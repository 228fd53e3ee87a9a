"""Classic (non-DIP) baselines of the paper tables, on the CPU.

For every registered task that names classic methods (``Task.baselines``, utils/classic.py),
on each entry of its protocol (``Task.protocol``: a data group and the setting the papers score
it at), every image is centre-cropped to a multiple of 32 (``crop32``, as the authors), degraded
by the task's own ``make_problem`` with the script's seeds, restored by each method, and scored
by ``utils.task.score``: the functions the DIP runs use, so the rows are comparable with
reproduce.py's.

    python baselines.py [--only TASK] [--images N] [--force] [--out results/paper]

writes ``<out>/baselines_<task>.md`` and ``.csv`` (one row per image: group, setting, image,
``<method>_<metric>``); a task whose CSV exists is skipped unless ``--force``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dataset import resolve_data_dir, task_images
from paper.published import DISPLAY, MEANS, PER_IMAGE, setting_key
from paper.runner import IMAGE_ORDER, command_line
from paper.tables import Group, csv_method, published_method, render
from tasks import all_tasks
from utils.classic import METHODS, available
from utils.config import resolve_config
from utils.device import cpu_model
from utils.args import integer
from utils.atomic import atomic_write_text
from utils.imageio import load_image
from utils.tables import csv_number, csv_text, key_value
from utils.task import score

SLOW_S = 600          # a method over this many CPU seconds gets a note in its table
KEYS = ("group", "setting", "image")


def cases(task, data_dir=None, limit=None):
    """(group, setting, image stem, Problem, cfg) of every image of the task's protocol, the
    first ``limit`` per group."""
    data_dir = resolve_data_dir(data_dir)
    if data_dir is None:
        raise FileNotFoundError(f"no image folder: set DIP_DATA_DIR or run python -m "
                                f"dataset.fetch {task.data_groups[0].split('/')[0]}")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such image folder")
    for group, settings in task.protocol:
        paths = task_images(data_dir, group)
        if not paths:
            raise FileNotFoundError(f"no images of {group} under {data_dir}")
        order = IMAGE_ORDER.get(group)
        if order:
            paths.sort(key=lambda p: (order.index(p.stem) if p.stem in order else len(order),
                                      p.stem))
        cfg, _ = resolve_config(task, {**settings, "crop32": True}, "full")
        for p in paths[:limit]:
            img = load_image(p)
            yield group, setting_key(settings), p.stem, task.make_problem(img, cfg), cfg


def run_task(task, data_dir=None, limit=None, log=print):
    """Run the task's classic methods on its cases: (rows, columns, seconds per method)."""
    columns = [f"{m}_{k}" for m in task.baselines for k in task.metrics]
    rows, seconds = [], {m: 0.0 for m in task.baselines}
    for group, setting, image, problem, cfg in cases(task, data_dir, limit):
        row = {"group": group, "setting": setting, "image": image}
        for m in task.baselines:
            if not available(m):
                row.update({f"{m}_{k}": None for k in task.metrics})
                continue
            t0 = time.perf_counter()
            est = METHODS[m][0](problem, cfg)
            seconds[m] += time.perf_counter() - t0
            got = score(problem, np.clip(est, 0, 1))
            row.update({f"{m}_{k}": got.get(k) for k in task.metrics})
        rows.append(row)
        log(f"  {task.name} {group} {setting} {image}: "
            + ", ".join(f"{c}={row[c]:.4g}" for c in columns if row[c] is not None))
    return rows, columns, seconds


def run_meta(command, seconds, limit, wall):
    import scipy
    import skimage
    from importlib.metadata import PackageNotFoundError, version
    try:
        bm3d_version = version("bm3d") if available("cbm3d") else "not installed"
    except PackageNotFoundError:
        bm3d_version = "?"
    return [
        ("device", f"CPU: {cpu_model()} ({os.cpu_count()} logical cores), torch threads "
                   f"{torch.get_num_threads()}; no GPU"),
        ("software", f"Python {platform.python_version()}, torch {torch.__version__}, numpy "
                     f"{np.__version__}, scipy {scipy.__version__}, scikit-image "
                     f"{skimage.__version__}, bm3d {bm3d_version}"),
        ("seeds", "the task scripts' own: noise seed 0 (--seed), inpainting mask seed 100"),
        ("images", "all" if limit is None else f"first {limit} per set (--images {limit})"),
        ("command", f"`{command}`"),
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("wall time per method", ", ".join(f"{m} {s:.1f} s" for m, s in seconds.items())),
        ("wall time", f"{wall:.0f} s")]


def write_task(out_dir, task, rows, columns, meta, seconds):
    """``baselines_<task>.csv`` (one row per image) and ``.md`` (the comparison tables)."""
    out_dir = Path(out_dir)
    csv_path = atomic_write_text(out_dir / f"baselines_{task.name}.csv", csv_text(
        [*KEYS, *columns], [[r[k] for k in KEYS] + [csv_number(r.get(c)) for c in columns]
                            for r in rows]))
    by_key = {(r["group"], r["setting"], r["image"]): r for r in rows}
    display = DISPLAY.get(task.name, {})
    groups = []
    for group, settings in task.protocol:
        setting = setting_key(settings)
        images = [r["image"] for r in rows if (r["group"], r["setting"]) == (group, setting)]
        methods = [csv_method(METHODS[m][1], by_key, group, setting, lambda k, m=m: f"{m}_{k}")
                   for m in task.baselines]
        methods += [published_method(label, values, display)
                    for label, values in PER_IMAGE.get(task.name, {}).items()]
        groups.append(Group(f"{group.split('/')[-1]}{', ' + setting if setting else ''}", images,
                            methods, task.metrics,
                            MEANS.get(task.name, {}).get((group, setting), []),
                            {i: display.get(i, i) for i in images}))
    notes = [f"Protocol: images centre-cropped to a multiple of 32, degraded by {task.script}'s "
             "make_problem at the setting of each group, scored by utils.task.score (as the DIP "
             "runs)."]
    notes += [f"{METHODS[m][1]}: {METHODS[m][2]}." for m in task.baselines]
    missing = [METHODS[m][1] for m in task.baselines if not available(m)]
    if missing:
        notes.append(f"Not available (package not installed): {', '.join(missing)}.")
    notes += [f"{METHODS[m][1]} took {s / 60:.1f} min of CPU here, over the {SLOW_S // 60}-min "
              "budget; it is kept on all images so that its mean stays comparable with the "
              "published one (reruns skip it unless --force)."
              for m, s in seconds.items() if s > SLOW_S]
    header = [f"# {task.about.rstrip('.')}: classic baselines", ""] + key_value(meta) + [""]
    header += [f"- {n}" for n in notes] + [""]
    md_path = atomic_write_text(out_dir / f"baselines_{task.name}.md", render(header, groups))
    return csv_path, md_path


def main(argv=None):
    tasks = {n: t for n, t in all_tasks().items() if t.baselines}
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=list(tasks), action="append",
                    help="run this task only (repeatable)")
    ap.add_argument("--images", type=integer(1), default=None, help="first N images per set only")
    ap.add_argument("--force", action="store_true", help="recompute tables whose CSV exists")
    ap.add_argument("--out", default="results/paper", help="output folder (default results/paper)")
    ap.add_argument("--data-dir", default=None, help="image folder (default $DIP_DATA_DIR)")
    args = ap.parse_args(argv)
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: --out {args.out}: cannot be the output folder ({e.strerror or e})",
              file=sys.stderr)
        return 2
    try:
        for name in args.only or tasks:
            run_one(name, tasks[name], args, argv)
    except FileNotFoundError as e:   # no data folder, or a set missing from it
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def run_one(name, task, args, argv):
    """One task's table, unless its CSV exists (``--force``)."""
    path = Path(args.out) / f"baselines_{name}.csv"
    if path.exists() and not args.force:
        print(f"{name}: {path} exists, skipped (--force to recompute)")
        return
    print(f"{name}: running")
    t0 = time.time()
    rows, columns, seconds = run_task(task, args.data_dir, args.images)
    meta = run_meta(command_line("baselines.py", sys.argv[1:] if argv is None else argv),
                    seconds, args.images, time.time() - t0)
    print(f"{name}: wrote {write_task(args.out, task, rows, columns, meta, seconds)[0]}")


if __name__ == "__main__":
    sys.exit(main())
