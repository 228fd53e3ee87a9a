"""What a run leaves on disk for each image and for the folder: the outputs, the record that
says what question they answer, the rerun check, and the summary tables shared by every run.

* ``write_outputs``: every output of a fitted image, and its ``summary.json``: the metrics, the
  hyperparameters, the image's pixels and every other file read (``fingerprints``: a mask's
  name and sha256), and the files written (``outputs``).
* ``finished_row``: a rerun skips an image only when that record asks the same question
  (``--tile`` and ``--tile-overlap`` aside where both fits are one net) and every file it lists
  is still there, whole.
* ``write_summary``: ``summary.csv`` / ``summary.md`` over every run on the output folder,
  merged under a lock (``merged_rows``), so that two runs at once keep both their rows.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from utils.atomic import atomic_write_text
from utils.config import FROM_FILE, asked, flag, question_of, recorded, unused_options
from utils.device import cpu_words
from utils.imageio import LoadedImage, save_image, to_array, to_tensor
from utils.metrics import psnr
from utils.outdir import locked, read_record
from utils.plots import fbc_figure, montage, psnr_ratio_figure
from utils.tables import cell, csv_text, fmt, markdown, strict_json
from utils.task import (Task, course_metrics, member_metrics, oracle_free_metrics, runs_on, score,
                        uncertainty_map)


LOG_COLUMNS = ("loss", "psnr_obs", "psnr_gt", "psnr_ema", "fbc1", "fbc2", "fbc3", "fbc4", "fbc5",
               "ratio")


# the result line's keys, where a row has them (what --sigma auto and --lambda auto chose too)
SHOWN = ("psnr_in", "y_psnr_bicubic", "psnr", "y_psnr", "ssim", "sigma_estimate",
         "lambda_chosen", "stop_iteration", "seconds")


def image_line(summary: dict) -> str:
    """An image's line after its fit: its scores (none without the ground truth), where it
    stopped ("ran to the end": its stop rule never fired; or where Ctrl-C stopped it), its
    seconds."""
    def part(k):
        if k == "stop_iteration" and summary.get("status") == "interrupted":
            # (several members: each one's stop is in the record)
            return interruption(summary.get("iterations"), summary.get("tile_stops"))
        if k == "stop_iteration" and summary[k] is None:
            return f"ran to the end, {summary.get('iterations')} iterations"
        return f"{k} {fmt(summary[k], k)}"
    return ", ".join(part(k) for k in SHOWN if k in summary)


def interruption(iterations, tile_stops: str | None = None) -> str:
    """Where a fit was interrupted: ``interrupted after N iterations``, or a tiled fit's tile
    (from its ``tile_stops``)."""
    stops = (tile_stops or "").split(" / ")
    for j, s in enumerate(stops):
        if s.startswith("interrupted") or s == "not fitted":
            at = f" after {s.split()[-1]} iterations" if s != "not fitted" else ", before it"
            return f"interrupted in tile {j + 1} of {len(stops)}{at}"
    return f"interrupted after {iterations} iterations"


def write_montage(path, problem, output, metrics):
    """The first input (the degraded image) | the output | the ground truth when known, each
    with its PSNR to the ground truth (the output's is the scored ``metrics['psnr']``)."""
    name, degraded = next(iter(problem.inputs.items()))
    if problem.target is None:
        montage([degraded, output], [name, "output"], path)
        return
    gt = problem.target[..., :problem.region[0], :problem.region[1]]
    if degraded.shape[:2] == tuple(gt.shape[-2:]) and degraded.shape[2] == gt.shape[1]:
        name += f" ({float(psnr(to_tensor(degraded), gt)[0]):.2f} dB)"
    montage([degraded, output, to_array(gt)],
            [name, f"output ({metrics['psnr']:.2f} dB)", "ground truth"], path)


def write_log(path, history, column="member"):
    """One row per logged iteration and member (``column``: what a member is; a tiled fit's
    log has one per tile)."""
    held = ("heldout",) if np.isfinite(history.get("heldout", np.nan)).any() else ()
    columns = LOG_COLUMNS + held
    members = history["loss"].shape[1]
    rows = [[int(history["iteration"][i])] + [f"{history[c][i, m]:.6g}" for c in columns]
            + ([m] if members > 1 else [])
            for i in range(len(history["iteration"])) for m in range(members)]
    header = ["iteration", *columns] + ([column] if members > 1 else [])
    atomic_write_text(path, csv_text(header, rows))


def each_member(values) -> str:
    """A value per member, as the tables show them: ``410 / - / 380`` (``-``: never stopped)."""
    return " / ".join("-" if v is None else str(int(v)) for v in values)


def write_outputs(folder: Path, task: Task, img: LoadedImage, cfg: dict, problem, res, config,
                  reads=()):
    """Every output of one fitted image into ``folder``; returns its summary row.  Its
    summary.json records what the run answered: the hyperparameters, the image's pixels and
    every other file it read (``reads``: names and sha256), and the files it wrote."""
    like, protect = problem.like, [img.path] if img.path else []

    def save(name, arr, like=like):
        return save_image(folder / f"{name}.png", arr, like=like, protect=protect)

    crop = lambda t: to_array(t[..., :problem.region[0], :problem.region[1]])  # noqa: E731
    final = crop(res.final())          # one fit, the average of restarts, or the chosen λ
    ema = crop(res.final("ema_output"))
    shown = problem.present or (lambda a: a)   # what the user gets (Problem.present)
    for name, arr in problem.inputs.items():     # a mask is no picture: no alpha, 8 bits
        save(name, arr, like if name != "mask" else None)
    save("output", shown_final := shown(final))
    save("output_ema", shown(ema))
    extra = problem.finish(final, folder, save) if problem.finish else {}
    members = res.output.shape[0]
    tiles = res.selection.get("tiles")
    write_log(folder / "log.csv", res.history, "tile" if tiles else "member")
    first = res.chosen[0] if res.chosen else 0     # the chosen λ's first member
    stop_it = res.stop_iteration[first]
    metrics = {**problem.baseline, **score(problem, final), **score(problem, ema, "_ema"),
               **course_metrics(problem, res, config), **oracle_free_metrics(problem, res),
               **extra}
    if len(res.history["iteration"]) and cfg.get("plots", True):
        of = f" (tile 1 of {len(tiles)})" if tiles else ""
        lam = (tiles[0] if tiles else res.selection).get("lambda")   # --lambda auto's choice
        of += f", λ {lam}" if lam else ""
        fbc_figure(res.history, folder / "fbc.png", member=first,
                   title=f"{task.name} · {img.name}{of}: FBC to the observation")
        # the result's PSNR beside the logged outputs' (where the curve is the result's own)
        result = None if tiles or members > 1 or "psnr" not in metrics else (
            res.best_iteration[first] if cfg.get("oracle") else
            stop_it if stop_it is not None else res.iterations, metrics["psnr"])
        psnr_ratio_figure(res.history, folder / "psnr_ratio.png",
                          stop_iteration=tiles[0]["stop_iteration"] if tiles else stop_it,
                          member=first, title=f"{task.name} · {img.name}{of}", result=result)
    spread = uncertainty_map(res, problem.region)
    if spread is not None:     # the restarts' per-pixel standard deviation
        save_image(folder / "uncertainty.png", spread, protect=protect)
    if problem.inputs and cfg.get("plots", True):   # degraded | output | ground truth
        write_montage(folder / "montage.png", problem, shown_final, metrics)
    summary = dict(image=img.name, status="interrupted" if res.interrupted else "ok", **metrics,
                   stop_iteration=stop_it if members == 1 else each_member(res.stop_iteration),
                   best_iteration=res.best_iteration[first], iterations=res.iterations,
                   restores=res.restores[0] if members == 1 else each_member(res.restores),
                   seconds=round(res.seconds, 2), its_per_sec=round(res.its_per_sec, 3),
                   device=res.device)
    each = [member_metrics(problem, res, m, runs_on(config))
            for m in range(members)] if members > 1 else []
    record = dict(summary, task=task.name, format=FORMAT, warnings=res.warnings,
                  interrupted=res.interrupted, **({"members": each} if each else {}),
                  hyperparameters=recorded({**cfg, **unused_options(cfg, reads)}),
                  fit=asdict(config), torch=torch.__version__, cuda=torch.version.cuda,
                  size=list(problem.region), grid=list(problem.out_hw),
                  inputs=list(problem.inputs),
                  source=dict(path=str(img.path) if img.path else None,
                              pixels_sha256=img.pixels_sha256, reads=list(reads)),
                  outputs=sorted([f.name for f in folder.iterdir()] + ["summary.json"]))
    atomic_write_text(folder / "summary.json", strict_json(record))
    return summary


ROWS_FILE = ".summary-rows.json"   # every run's rows on one output folder (typed, strict JSON)


def rows_from_folders(out: Path) -> list[dict]:
    """The rows of the finished or interrupted images whose folders are in ``out``, each with
    the task that fitted it (``task``; None in a record written before it was kept)."""
    recs = (read_record(d) for d in sorted(out.iterdir())
            if d.is_dir() and not d.name.startswith("."))
    return [dict(row_of(rec), task=rec.get("task")) for rec in recs
            if rec is not None and "image" in rec]


def merged_rows(out: Path, rows: list[dict], task: str | None = None) -> list[dict]:
    """This run's rows merged into those of the earlier runs of ``task`` on the same folder
    (``ROWS_FILE``; rebuilt from the image folders where it is missing or unreadable): one row
    per image name, this run's replacing an earlier one; an earlier row of a fitted image is kept
    only while its folder's summary.json is there; another task's rows are left out (a folder
    shared by two tasks would otherwise average their measures).  Each row keeps its ``task``."""
    try:
        earlier = json.loads((out / ROWS_FILE).read_text())
        if not isinstance(earlier, list):
            raise ValueError("not a list")
    except (OSError, ValueError):
        earlier = rows_from_folders(out)
    mine = {r["image"] for r in rows}
    kept = [r for r in earlier if isinstance(r, dict) and r.get("image") not in mine
            and r.get("task") in (None, task)
            and (r.get("status") not in ("ok", "interrupted")
                 or (out / str(r.get("image")) / "summary.json").is_file())]
    return kept + [dict(r, task=task) for r in rows]


# columns of a row that the mean leaves empty: settings and counts of how an image was fitted
NOT_AVERAGED = ("iterations", "tiles", "tile_overlap")


def write_summary(out: Path, task: str, rows: list[dict], device: str, command: str):
    """summary.csv and summary.md: one row per image, then their mean, over every run on this
    output folder (``merged_rows``, under a lock: two runs at once keep both their rows);
    returns the mean row (None without one)."""
    with locked(out / ".summary.lock"):
        mine = {r["image"] for r in rows}
        rows = merged_rows(out, rows, task)
        atomic_write_text(out / ROWS_FILE, strict_json(rows))
        return _write_tables(out, task, [{k: v for k, v in r.items() if k != "task"}
                                         for r in rows], device, command,
                             [r["image"] for r in rows if r["image"] not in mine])


def _write_tables(out: Path, task: str, rows: list[dict], device: str, command: str,
                  earlier=()):
    keys = list(dict.fromkeys(k for r in rows for k in r))

    def numeric(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    # the mean of each numeric column over the finished images (an interrupted one holds a
    # partial fit; failed ones have no measures); its status cell says over which, and which
    # settings differ among them (the images of one folder may come from several runs)
    ok = [r for r in rows if r.get("status") == "ok"]
    num = [k for k in keys if all(numeric(r[k]) for r in ok if r.get(k) is not None)
           and any(numeric(r.get(k)) for r in ok)]
    mean = {k: float(np.nanmean([r[k] for r in ok if numeric(r.get(k))]))
            for k in num if k not in NOT_AVERAGED}
    differ = differing_settings(out, ok)
    mean.update(image="mean", status=f"{len(ok)} ok image{'' if len(ok) == 1 else 's'}" + (
        f", fitted with different {', '.join(differ)}" if differ else ""))
    table = rows + ([mean] if len(rows) > 1 and ok else [])
    atomic_write_text(out / "summary.csv",
                      csv_text(keys, [[r.get(k, "") for k in keys] for r in table]))
    where = f"cpu ({cpu_words()})" if device == "cpu" else device   # which CPU moves the numbers
    md = [f"# {task}: summary", "", f"device of the last run: {where} · torch "
          f"{torch.__version__} · last command: `{cell(command)}`", ""]
    if earlier:   # (an interrupted run, or other images: their rows are not its answers)
        named = ", ".join(map(str, earlier[:8])) + (", …" if len(earlier) > 8 else "")
        md += [f"Not of the last command: {len(earlier)} row{'s' * (len(earlier) > 1)} kept "
               f"from earlier runs on this folder ({named}).", ""]
    md += markdown(keys, [[fmt(r.get(k), k) for k in keys] for r in table])
    atomic_write_text(out / "summary.md", "\n".join(md) + "\n")
    return table[-1] if len(table) > len(rows) else None


def differing_settings(out: Path, rows) -> list[str]:
    """The hyperparameters (as asked: ``utils.config.asked``) whose values differ among the
    records of these rows' image folders, in the order recorded."""
    recs = [rec for r in rows if (rec := read_record(out / str(r["image"]))) is not None
            and isinstance(rec.get("hyperparameters"), dict)]
    reads = [(rec.get("source") or {}).get("reads") for rec in recs]
    seen = [asked(rec["hyperparameters"], rec.get("device"), r) for rec, r in zip(recs, reads)]

    def values(k):    # the Bernoulli options: of the images without a mask file (null beside)
        hs = [h for h, r in zip(seen, reads) if not r] if k in FROM_FILE else seen
        return {json.dumps(h.get(k), sort_keys=True) for h in hs}
    return [k for k in dict.fromkeys(k for h in seen for k in h) if len(values(k)) > 1]


def fingerprints(paths) -> list[dict]:
    """The other files a run reads (a mask): each one's name and sha256, so that a rerun with
    another file of the same name is another question."""
    from dataset.fetch import sha256_file
    return [{"file": Path(p).name, "sha256": sha256_file(p)} for p in paths]


# summary.json's, not rows
RECORD_ONLY = ("task", "format", "warnings", "interrupted", "members", "hyperparameters", "fit",
               "torch", "cuda", "size", "grid", "inputs", "source", "outputs")


def row_of(rec: dict) -> dict:
    """The summary row of a summary.json record."""
    return {k: v for k, v in rec.items() if k not in RECORD_ONLY}


# the layout of a record and its outputs; a task whose outputs changed meaning with a format
# fits again over a record of an older one: 2 (2026-12-07) made enhancement's output.png the
# enhanced image (the base before) and cut an SR image to a multiple of the factor first
FORMAT = 2
CHANGED_AT = {"enhancement": 2, "super_resolution": 2}


def finished_record(out: Path) -> dict | None:
    """The record of the finished fit (status ok) whose outputs ``out`` holds, of any question
    or task, or None."""
    rec = read_record(out)
    return rec if rec is not None and rec.get("status") == "ok" else None


def whole_file(path: Path) -> bool:
    """Whether an output is there and, a PNG, whole: its signature first and its IEND chunk
    last (a copy cut short, or a placeholder of a sync tool, is not a finished output)."""
    if path.suffix != ".png":
        return path.is_file()
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(path.stat().st_size - 12, 0))
            return head == b"\x89PNG\r\n\x1a\n" and f.read(12)[4:8] == b"IEND"
    except OSError:
        return False


def finished_row(rec: dict | None, out: Path, cfg: dict, img: LoadedImage, reads=()):
    """The summary row of this image already fitted to the end asking the same question, or
    None (``rec``: the :func:`finished_record` of its folder ``out``): same pixels, same
    hyperparameters (:func:`questions`: ``--tile`` and ``--tile-overlap`` aside where both
    fits are one net), the same other files read (``reads``), and every output it wrote still
    there, whole (:func:`whole_file`; an interrupted fit is not finished; another image that
    had the same name is fitted, and replaces it)."""
    if rec is None:
        return None
    source = rec.get("source") or {}
    if source.get("pixels_sha256") != img.pixels_sha256 \
            or source.get("reads", []) != list(reads) \
            or rec.get("format", 1) < CHANGED_AT.get(rec.get("task"), 1):
        return None
    outputs = rec.get("outputs")
    if not isinstance(outputs, list) or not all(whole_file(out / str(n)) for n in outputs):
        return None
    if not isinstance(rec.get("hyperparameters"), dict):
        return None
    then, now = questions(rec, cfg, reads)
    return row_of(rec) if then == now else None


TILING = ("tile", "tile_overlap")


def questions(rec: dict, cfg: dict, reads=()) -> tuple[dict, dict]:
    """(the question a finished record answers, the one ``cfg`` asks of a run that reads
    ``reads``), each as :func:`utils.config.asked`, without what is no question between them:
    ``--tile`` and ``--tile-overlap`` where both fits are one net (:func:`one_net_either_way`),
    the Bernoulli options (``FROM_FILE``) where one of the two reads a mask file."""
    source = rec.get("source") or {}
    then = asked(rec["hyperparameters"], rec.get("device"), source.get("reads"))
    now = question_of(cfg, reads)
    moot = (TILING if one_net_either_way(rec, now) else ()) + (
        tuple(FROM_FILE) if bool(source.get("reads")) != bool(reads) else ())  # "another mask"
    return tuple({k: v for k, v in q.items() if k not in moot} for q in (then, now))


def one_net_either_way(rec: dict, question: dict) -> bool:
    """Whether a finished record's fit and a fit asking ``question`` are each one net for the
    whole image: no tile set, or the image no larger than a tile (``grid``: the net's output
    size); the record's fit also where a hole of the mask or an observed pixel's footprint was
    too wide for its tiles (no ``tiles`` in a record with ``grid``).  ``--tile`` and
    ``--tile-overlap`` then change nothing."""
    grid = rec.get("grid")
    whole = lambda t: not t or (isinstance(grid, list) and t >= max(grid))  # noqa: E731
    h = rec.get("hyperparameters") or {}
    return "tiles" not in rec and (isinstance(grid, list) or whole(h.get("tile"))) \
        and whole(question.get("tile"))


def skip_note(rec: dict, out: Path, cfg: dict) -> str:
    """What the line of an image skipped (its finished record ``rec``, in ``out``) adds: that
    its fit had another ``--tile`` or ``--tile-overlap``, which change nothing where both fits
    are one net; that it was fitted with ``--no-plots``."""
    h = rec.get("hyperparameters") or {}
    said = [f"{flag(k)} {h.get(k)}" for k in TILING if k in h and h[k] != cfg.get(k)]
    t = h.get("tile")
    why = ("without tiles" if not (t or cfg.get("tile")) else
           "as its mask's hole or its observed pixels' footprint was too wide for the tiles"
           if t and t < max(rec.get("grid") or [0]) else "as the image is no larger than a tile")
    notes = [f"fitted with {', '.join(said)}: one net either way, {why}"] if said else []
    notes += ["fitted with --no-plots: no figures drawn"] * (
        cfg.get("plots", True) and not (out / "psnr_ratio.png").exists())
    return f" ({'; '.join(notes)})" if notes else ""


def replaced_result(rec: dict | None, out: Path, cfg: dict, img: LoadedImage, reads=(),
                    task=None) -> str | None:
    """A note where a fit of this image (by ``task``, a name) is about to replace the finished
    result ``rec`` in ``out`` (``finished_row`` found it asking another question): what differs
    (another task's result, another image of that name, the options' earlier and new values,
    another mask); None where nothing finished is there."""
    if rec is None:
        return None
    source = rec.get("source") or {}
    then, now = questions(rec, cfg, reads) if isinstance(rec.get("hyperparameters"), dict) \
        else ({}, question_of(cfg, reads))
    shown = lambda v: "none" if v is None else v  # noqa: E731  (null in the record)
    diff = [f"{flag(k)} {shown(then.get(k))} → {shown(now.get(k))}"
            for k in dict.fromkeys([*now, *then]) if now.get(k) != then.get(k)]
    if rec.get("task") not in (None, task or rec.get("task")):
        what = f"of {rec['task']}"
    elif source.get("pixels_sha256") != img.pixels_sha256:
        what = "another image of this name"
    elif diff:
        what = ", ".join(diff[:4]) + (", …" if len(diff) > 4 else "")
    elif source.get("reads", []) != list(reads):
        what = "another mask"
    else:
        what = "an older format, or outputs missing or cut short"
    return (f"its finished result in {out.name}/ ({what}) is replaced when this fit ends "
            "(stopped before its end, this fit is not saved and that result stays)")


def failed_row(name, status: str, message: str) -> dict:
    """The summary row of an image without outputs."""
    return {"image": name, "status": status, "error": message}
