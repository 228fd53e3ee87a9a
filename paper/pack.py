"""One archive of what a GPU session must bring back and commit (``reproduce.py --pack FILE``),
and its unpacking into the tree (``reproduce.py --unpack FILE``: the whole archive, its manifest
and the tree are checked before the first write, then every file is staged and moved: paper/unpack.py).

A lent machine returns at most 8 files of 16 MiB, so the archive (gzipped tar, paths relative to
the output folder) holds only what the tables, the figures and the resumption need:

- the tables and figures at the top of the output folder (``*.md``, ``*.csv``, ``*.png``);
- per image: ``summary.json`` (hyperparameters, device, torch and CUDA versions, seconds,
  metrics, stop and oracle iterations), with the image's path reduced to its file name (the
  path is the lent machine's);
- per image: ``log.csv``, whole for the figure runs (``fig_*``: their curves and the replayed
  ratio stop need every row), else downsampled to ``LOG_ROWS`` iterations on a geometric grid
  that keeps the first and last rows, each member's peak PSNR and the stop and oracle
  iterations;
- the few per-image PNGs the montage and the enhancement table show;
- ``PACK.json``: when, where (device, torch, CUDA) and by which command.

A run whose ``summary.json`` is committed is skipped by a later invocation (the scripts compare
the hyperparameters and the pixels), so committing the unpacked files is what makes a lease's
work permanent.
"""
from __future__ import annotations

import csv
import datetime
import io
import json
import platform
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from utils.atomic import atomic_write_bytes

LIMIT = 16 * 1024 ** 2      # bytes: the largest file a lent machine returns
LOG_ROWS = 400              # iterations kept in a downsampled log
HEAD = 100                  # every logged iteration up to this one is kept
SLACK = 64                  # rows beyond HEAD + LOG_ROWS a kept log may have (peaks, marks)
MANIFEST = "PACK.json"
_LOGS: dict = {}            # (path, mtime, size, whole) -> packed log bytes: repacks are cheap
TOP_SUFFIXES = (".md", ".csv", ".png")


class PackError(Exception):
    """The archive cannot be written or read (the message names the file and the problem)."""


def keep_iterations(iterations, marks=()) -> set:
    """The logged iterations a downsampled log keeps: all up to ``HEAD``, a geometric grid of
    ``LOG_ROWS`` beyond, the last, and the ``marks`` that were logged."""
    its = np.unique(np.asarray(iterations, dtype=np.int64))
    if len(its) <= LOG_ROWS + HEAD + SLACK:   # (a log downsampled once stays as it is)
        return set(its.tolist())
    keep = set(its[its <= HEAD].tolist()) | {int(its[0]), int(its[-1])}
    grid = np.geomspace(max(HEAD, 1), its[-1], LOG_ROWS)
    idx = np.clip(np.searchsorted(its, grid), 0, len(its) - 1)
    keep |= set(its[idx].tolist())
    return keep | ({int(m) for m in marks if m is not None} & set(its.tolist()))


def downsample_log(text: str, marks=()) -> str:
    """A log.csv's text with the rows of ``keep_iterations`` only (every member of a kept
    iteration; each member's peak-PSNR iteration kept)."""
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2:
        return text
    head, body = rows[0], rows[1:]
    it = [int(float(r[0])) for r in body]
    peaks = set()
    if "psnr_gt" in head:
        k = head.index("psnr_gt")
        mk = head.index("member") if "member" in head else None
        best = {}
        for r, i in zip(body, it):
            try:
                v = float(r[k])
            except ValueError:
                continue
            m = r[mk] if mk is not None else ""
            if np.isfinite(v) and v > best.get(m, (-np.inf, 0))[0]:
                best[m] = (v, i)
        peaks = {i for _, i in best.values()}
    keep = keep_iterations(it, marks=set(marks) | peaks)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(head)
    w.writerows(r for r, i in zip(body, it) if i in keep)
    return out.getvalue()


def _marks(rec: dict) -> list:
    """Stop and oracle iterations of a record (scalars, or one per member written as text:
    ``410 / - / 380``, before 2026-12-07 ``[410, None, 380]``)."""
    out = []
    for k in ("stop_iteration", "best_iteration"):
        v = rec.get(k)
        if isinstance(v, str):
            out += [int(x) for x in v.strip("[]").replace("/", ",").split(",")
                    if x.strip().isdigit()]
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(int(v))
    return out


def scrubbed(rec: dict) -> dict:
    """A summary.json record without the lent machine's paths."""
    rec = dict(rec)
    src = dict(rec.get("source") or {})
    if src.get("path"):
        src["path"] = PurePosixPath(str(src["path"]).replace("\\", "/")).name
    rec["source"] = src
    return rec


def pack_members(out: Path, pictures=(), whole_figure_logs=True) -> dict[str, bytes]:
    """Archive path -> bytes of everything to commit under ``out``; ``pictures`` are the
    per-image PNGs the montage and tables show (paths under ``out``)."""
    members, records = {}, {}
    for f in sorted(out.iterdir()):
        if f.is_file() and f.suffix in TOP_SUFFIXES:
            members[f.name] = f.read_bytes()
    for s in sorted((out / "runs").glob("*/*/summary.json")):
        rel = s.parent.relative_to(out).as_posix()
        try:
            rec = json.loads(s.read_text())
        except ValueError as e:
            raise PackError(f"{s}: not valid JSON ({e})") from None
        records[rel] = scrubbed(rec)
        log = s.parent / "log.csv"
        if log.exists():
            whole = whole_figure_logs and s.parent.parent.name.startswith("fig_")
            st = log.stat()
            key = (str(log), st.st_mtime_ns, st.st_size, whole, json.dumps(_marks(rec)))
            if key not in _LOGS:
                text = log.read_text()
                _LOGS[key] = (text if whole else downsample_log(text, _marks(rec))).encode()
            members[f"{rel}/log.csv"] = _LOGS[key]
    for p in pictures:
        p = Path(p)
        if p.exists():
            members[p.relative_to(out).as_posix()] = p.read_bytes()
    for rel, rec in records.items():
        # the record lists the image's files that travel: a rerun in the unpacked tree then
        # finds every output it lists (utils.outputs.finished_row) and skips the image
        if isinstance(rec.get("outputs"), list):
            rec["outputs"] = sorted({k[len(rel) + 1:] for k in members if k.startswith(rel + "/")}
                                    | {"summary.json"})
        members[f"{rel}/summary.json"] = (json.dumps(rec, indent=1) + "\n").encode()
    return members


def _archive(members: dict, manifest: dict) -> bytes:
    members = {**members, MANIFEST: (json.dumps(manifest, indent=1) + "\n").encode()}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_pack(path, out: Path, command: str, pictures=()) -> tuple[Path, int, int]:
    """Write the archive atomically; returns (path, members, bytes).  Over ``LIMIT`` it leaves
    out the per-image PNGs, then downsamples the figure logs too (the manifest's ``dropped``
    says so); still over is a PackError (nothing written)."""
    manifest = dict(created=datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), torch=torch.__version__, cuda=torch.version.cuda,
        python=platform.python_version(), command=command, dropped=[])
    steps = ((pictures, True, []), ((), True, ["per-image PNGs"]),
             ((), False, ["per-image PNGs", "whole figure logs"]))
    for pics, whole, dropped in steps:
        members = pack_members(out, pics, whole)
        manifest.update(dropped=dropped, images=sum(k.endswith("summary.json") for k in members),
                        devices=sorted({json.loads(b).get("device", "?") for k, b in
                                        members.items() if k.endswith("summary.json")}))
        data = _archive(members, manifest)
        if len(data) <= LIMIT:
            if dropped:
                print(f"warning: {path}: over {LIMIT / 2**20:.0f} MiB with everything; left "
                      f"out: {', '.join(dropped)}")
            return atomic_write_bytes(Path(path), data), len(members) + 1, len(data)
    raise PackError(f"{path}: the archive would take {len(data) / 2**20:.1f} MiB, over the "
                    f"{LIMIT / 2**20:.0f} MiB a lent machine returns; pack fewer parts (--only)")
