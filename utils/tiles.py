"""Restoring an image in overlapping tiles, each fitted by its own net, blended into one output.

A DIP fit of a whole image asks one net to hold all of it; at the CPU quick preset's width (64
channels) and 600 iterations, a 256×256 image came out 2–4 dB below CBM3D where its 128×128
crops were within 1–2 dB (results/tiles.md).  Fitting the image as tiles of the preset's crop
size, each with its own net and its own stop, costs about the same per pixel and iteration and
restores the quality measured on crops.  The tiles overlap by ``tile_overlap`` pixels and are
blended with weights that fall linearly towards each tile's edges, so no seam is left where one
net's output meets the next.  A data term that acts pixel by pixel (denoising, deblocking,
inpainting, enhancement: ``DataTerm.pixelwise``) is cut with the tile.  One whose observed pixel
reads a neighbourhood of the image (``DataTerm.local``: super-resolution's downsampling, a
blur) is cut on the observation's grid (``DataTerm.scale``: the LR grid of SR), and the observed
pixels whose neighbourhood reaches past the tile's inner edges leave its loss
(:func:`footprint_inside`): the tile's net cannot see the pixels outside that they read, and the
tile next to it fits them.

A tiled fit of a large image takes many minutes on a CPU, so each finished tile is kept on disk
(``TileStore``: ``.NAME.tiles/`` beside the image's output folder); a run stopped by Ctrl-C, a
kill or a crash, started again with the same question, fits only the tiles it had not finished
(every tile's net, input and noise are seeded from ``seed`` alone).  Ulyanov, Vedaldi,
Lempitsky, "Deep Image Prior", CVPR 2018 fit whole images; the tiling is this project's CPU
path (README "On a CPU")."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from utils.atomic import atomic_write
from utils.config import question_of
from utils.estimate import duration
from utils.fit import FitResult


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles of one axis of length ``n`` start: every ``tile − overlap`` pixels, the
    last one flush with the end (so every tile is whole and the axis is covered)."""
    if n <= tile:
        return [0]
    step = tile - overlap
    return list(range(0, n - tile, step)) + [n - tile]


def tile_boxes(hw, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """The tiles ``(top, left, height, width)`` of an (h, w) grid, row by row; an axis no longer
    than ``tile`` is one tile of its own length."""
    h, w = hw
    return [(y, x, min(tile, h), min(tile, w))
            for y in tile_starts(h, tile, overlap) for x in tile_starts(w, tile, overlap)]


def ramp(n: int, overlap: int) -> torch.Tensor:
    """The blending weight along one axis of a tile: 1 inside, falling linearly over the
    ``overlap`` pixels at each end (never to 0, so a pixel only one tile covers keeps it)."""
    i = torch.arange(n, dtype=torch.float32)
    return torch.minimum(torch.ones(n), torch.minimum(i + 1, n - i) / (overlap + 1))


def tiled(problem, cfg: dict) -> bool:
    """Whether ``problem`` is fitted in tiles: ``tile`` set and its grid larger than a tile."""
    t = int(cfg.get("tile") or 0)
    return bool(t) and max(problem.out_hw) > t


def widest_hole(problem) -> float:
    """How far (pixels) the unknown pixel of the image's region farthest from every known one
    lies from them: 0 without a mask (or with nothing unknown), inf with nothing known."""
    from scipy.ndimage import distance_transform_edt
    term = problem.data_term
    m = term.mask
    if m is None or m.shape[-2:] != term.observation.shape[-2:]:
        return 0.0
    h, w = problem.region
    known = (m.reshape(-1, *m.shape[-2:]) > 0.5).all(0)[:h, :w].cpu().numpy()
    if known.all():
        return 0.0
    return float(distance_transform_edt(~known).max()) if known.any() else math.inf


def hole_note(problem, cfg: dict) -> str | None:
    """Why ``problem`` is not tiled although ``tile`` is set: a hole of its mask reaching more
    than a quarter of a tile from every known pixel (a tile inside it would see little or
    nothing to fit; one net fills it from the whole image, as DIP does); None: tile it."""
    t, d = int(cfg["tile"]), widest_hole(problem)
    if d <= t / 4:
        return None
    return (f"a hole of the mask reaches {d:.0f} pixels from every known pixel, more than a "
            f"quarter of the {t}×{t} tiles: one net for the whole image instead (--tile)")


def footprint_inside(term, out_hw, box) -> torch.Tensor:
    """(1, 1, h, w) on the observation grid of ``box`` (an output-grid box, scaled by
    ``term.scale``): 1 where the observed pixel reads output pixels inside the box only.

    Found by probing the term's own operator (its kernel and its padding at the image's
    borders): A applied to an image that is 0 inside the box and between 1 and 2 at random
    outside is exactly 0 where the footprint stays inside; where it reaches past an edge, the
    outside pixels it reads make it far larger than the 1e-6 threshold (the smallest seen:
    2.7e-4, over SR ×2, ×4, ×8 and blurs of σ 0.5, 1.6, 20, every tile of 256² images)."""
    y, x, th, tw = box
    f = term.scale
    probe = 1 + torch.rand(1, 1, *out_hw, generator=torch.Generator().manual_seed(0))
    probe[..., y:y + th, x:x + tw] = 0
    with torch.no_grad():
        a = term(probe.to(term.observation.device))
    return (a[..., y // f:(y + th) // f, x // f:(x + tw) // f].abs() < 1e-6).float()


def footprint_width(term, out_hw) -> int:
    """How many rows of the image the observed pixel nearest the middle reads (its gradient's
    nonzero rows): DIP's Lanczos downsampler 4f, a blur 2·ceil(3σ) + 1."""
    h, w = out_hw
    x = torch.zeros(1, 1, h, w, device=term.observation.device, requires_grad=True)
    a = term(x)
    a[0, 0, a.shape[-2] // 2, a.shape[-1] // 2].backward()
    return int((x.grad[0, 0] != 0).any(1).sum())


def seam_width(term, out_hw) -> tuple[int, int]:
    """(what one observed pixel reads, :func:`footprint_width`; the overlap that needs: that
    width rounded up to the observation's grid)."""
    width = footprint_width(term, out_hw)
    return width, -(-width // term.scale) * term.scale


def seam_overlap(problem, cfg: dict) -> tuple[int | None, str | None]:
    """The overlap ``problem``'s tiles are fitted with: ``tile_overlap``, widened to what one
    observed pixel reads (:func:`footprint_width`, on the observation's grid) where narrower, so
    that every observed pixel along a seam is fitted by some tile, and a note saying so; (None,
    note) where that is more than half a tile: one net fits the whole image."""
    tile, overlap = int(cfg["tile"]), int(cfg.get("tile_overlap") or 0)
    term = problem.data_term
    if term.pixelwise or not term.local:
        return overlap, None
    width, need = seam_width(term, problem.out_hw)
    if overlap >= need:
        return overlap, None
    what = f"an observed pixel of {type(term).__name__} reads {width} rows and columns of the image"
    if need > tile // 2:
        return None, (f"{what}, more than half of the {tile}×{tile} tiles: one net for the whole "
                      "image instead (--tile)")
    return need, (f"--tile-overlap {overlap} widened to {need}: {what}, and the tiles must "
                  "overlap by as much for every one along their seams to be fitted")


def tile_plan(problem, cfg: dict) -> tuple[int | None, str | None]:
    """How ``problem``, larger than a tile, is fitted with ``tile`` set: (the overlap of its
    tiles, or None for one net; the note for the user, or None), from :func:`hole_note` and
    :func:`seam_overlap`.  Kept on the problem (``Problem.tiling``), so that the note shown
    before the fit (``Task.problem``) and the fit (``fit_problem``) find it once."""
    key = (int(cfg["tile"]), int(cfg.get("tile_overlap") or 0))
    if problem.tiling is None or problem.tiling[0] != key:
        note = hole_note(problem, cfg)
        problem.tiling = (key, (None, note) if note else seam_overlap(problem, cfg))
    return problem.tiling[1]


def check_seams(problem, boxes, overlap: int) -> list[torch.Tensor]:
    """Each tile's :func:`footprint_inside` (for :func:`tile_problem`), or a ValueError unless
    every observed pixel is counted by some tile: the tiles must overlap by at least what one
    observed pixel reads, or the pixels along the seams would be fitted by no net."""
    term = problem.data_term
    counted = torch.zeros(term.observation.shape[-2:], dtype=torch.bool,
                          device=term.observation.device)
    f = term.scale
    insides = [footprint_inside(term, problem.out_hw, box) for box in boxes]
    for (y, x, th, tw), inside in zip(boxes, insides):
        counted[y // f:(y + th) // f, x // f:(x + tw) // f] |= inside[0, 0] > 0
    if counted.all():
        return insides
    width, need = seam_width(term, problem.out_hw)
    raise ValueError(
        f"--tile-overlap {overlap} is too narrow for {type(term).__name__}: an observed pixel "
        f"reads {width} rows and columns of the image, so {int((~counted).sum())} observed "
        f"pixels along the tiles' seams would be fitted by no tile; give --tile-overlap {need} "
        f"or more (at most half of --tile), or --tile 0")


def tile_problem(problem, box, inside=None):
    """The part of ``problem`` inside ``box``: the observation (and mask) cut to it (on the
    observation's grid: ``box`` scaled by ``DataTerm.scale``), the observed pixels that read
    past the tile's inner edges left out of the loss (:func:`footprint_inside`) unless the term
    acts pixel by pixel (``inside``: that footprint when already known), the ground truth cut
    too, the true image's part of it as the region (the padding lies bottom and right)."""
    y, x, th, tw = box
    term = problem.data_term
    f = term.scale
    if (y | x | th | tw) % f:
        raise ValueError(f"a tile of {term.scale}× super-resolution must lie on the low-"
                         f"resolution grid: {box} is not in multiples of {f}")
    cut = lambda t: t if t is None or t.shape[-2:] != term.observation.shape[-2:] \
        else t[..., y // f:(y + th) // f, x // f:(x + tw) // f].contiguous()    # noqa: E731
    mask = cut(term.mask)       # (a mask of another shape broadcasts: kept whole)
    if not term.pixelwise:
        if inside is None:
            inside = footprint_inside(term, problem.out_hw, box)
        mask = inside if mask is None else mask * inside
    sub = term.with_buffers(observation=cut(term.observation), mask=mask, holdout=None)
    h, w = problem.region
    return dataclasses.replace(
        problem, data_term=sub, out_hw=(th, tw), region=(min(th, h - y), min(tw, w - x)),
        target=None if problem.target is None else
        problem.target[..., y:y + th, x:x + tw].contiguous(),
        inputs={}, baseline={}, evaluate=None, finish=None, present=None, observed=None,
        notes=[], tiling=None)


def _history(results) -> dict:
    """The tiles' logs side by side, one column per tile (its first member's, each result being
    :func:`tile_members`'), NaN where a tile had stopped."""
    its = np.unique(np.concatenate([r.history["iteration"] for r in results])).astype(np.int64)
    rows = [np.searchsorted(its, r.history["iteration"]) for r in results]
    out = {"iteration": its}
    for key in (k for k in results[0].history if k != "iteration"):
        out[key] = np.full((len(its), len(results)), np.nan)
        for j, r in enumerate(results):
            out[key][rows[j], j] = r.history[key][:, 0]
    return out


def tile_line(k: int, boxes, seconds_done: float, done: int | None = None,
              left: int | None = None, region=None) -> str:
    """The line printed before tile ``k`` (from 0) of ``boxes``: where it lies in the image
    (``region``, its (h, w): the padding past it left out) and, once ``done`` tiles (default
    ``k``) took ``seconds_done``, the time the ``left`` ones (default: from ``k`` on) will take
    at their mean."""
    done = k if done is None else done
    left = len(boxes) - k if left is None else left
    y, x, th, tw = boxes[k]
    h, w = region or (y + th, x + tw)
    line = (f"tile {k + 1} of {len(boxes)}: rows {y}-{min(y + th, h)}, "
            f"columns {x}-{min(x + tw, w)}")
    if done:
        each = seconds_done / done
        line += (f"; {duration(each)} per tile so far, about "
                 f"{duration(each * left)} for the {left} left")
    return line


def problem_key(problem, question: dict) -> str:
    """A digest of what a tiled fit answers: ``question`` (hyperparameters, the source's pixels,
    the other files read) and the observation and mask the tiles are cut from."""
    h = hashlib.sha256(json.dumps(question, sort_keys=True, default=str).encode())
    term = problem.data_term
    for t in (term.observation, term.mask):
        if t is not None:
            t = t.detach().float().cpu().contiguous()
            h.update(str(tuple(t.shape)).encode() + t.numpy().tobytes())
    return h.hexdigest()


def store_for(folder, problem, cfg: dict, pixels: str, reads=()) -> TileStore:
    """Where the finished tiles of a tiled fit are kept: ``folder``, under the digest of the
    question it answers (hyperparameters with the device kind, ``pixels``: the source's pixel
    digest, ``reads``: the other files read, torch, the observation): the same call made again
    after an interrupt fits only the tiles left."""
    question = dict(hyperparameters=question_of(cfg, reads), pixels=pixels, reads=list(reads),
                    torch=torch.__version__, format=TileStore.FORMAT)
    return TileStore(folder, problem_key(problem, question))


def tile_members(res: FitResult) -> FitResult:
    """``res`` as a tile contributes it: its chosen members (all of them but with ``--lambda
    auto``, the chosen λ's restarts), each with its outputs, stop, restores and log, and the λ it
    chose (``selection['lambda']``); member m of the image is the blend of every tile's member
    m, so the restarts' spread (``uncertainty.png``) is the whole image's."""
    c = res.chosen or list(range(res.output.shape[0]))
    return FitResult(
        output=res.output[c], last_output=res.last_output[c], ema_output=res.ema_output[c],
        stop_iteration=[res.stop_iteration[m] for m in c], best_iteration=[None] * len(c),
        best_output=None,
        history={k: v if k == "iteration" else v[:, c] for k, v in res.history.items()},
        iterations=res.iterations, seconds=res.seconds, its_per_sec=res.its_per_sec,
        device=res.device, interrupted=res.interrupted, warnings=list(res.warnings),
        restores=[int(res.restores[m]) for m in c],
        selection={"lambda": res.selection["lambda"]} if "lambda" in res.selection else {})


class TileStore:
    """The finished tiles of one tiled fit, one file each (``tile_0003.pt``, written atomically) in
    ``folder``, under ``key`` (:func:`problem_key`): a file of another key, another box or an
    unreadable one is not used (the tile is fitted again), and the first tile saved under a new
    key removes the other key's files.  ``remove()`` once the image's outputs are written."""

    FORMAT = 2      # of the files: part of the key, so that another layout is not read
    FIELDS = ("output", "last_output", "ema_output", "stop_iteration", "iterations", "seconds",
              "its_per_sec", "device", "warnings", "restores", "selection")  # of tile_members
    MARK = ".dip-tiles-key"     # the key of the tiles beside it: what makes them this store's
    OWN = re.compile(r"\.?tile_\d{4,}\.pt(\..+\.tmp)?")  # tiles, atomic_write's leftovers
    LITTER = re.compile(r"\.DS_Store|Thumbs\.db|desktop\.ini|\.nfs.*")   # a file browser's

    def __init__(self, folder, key: str):
        self.folder, self.key = Path(folder), key

    def _path(self, k: int) -> Path:
        return self.folder / f"tile_{k:04d}.pt"

    def load(self, k: int, box) -> FitResult | None:
        """Tile ``k``'s result kept by an earlier run asking the same question, or None."""
        try:
            d = torch.load(self._path(k), map_location="cpu", weights_only=True)
            if d["key"] != self.key or d["box"] != list(box):
                return None
            return FitResult(**{f: d[f] for f in self.FIELDS},
                             best_iteration=[None] * len(d["stop_iteration"]), best_output=None,
                             history={k: v.numpy() for k, v in d["history"].items()})
        except Exception:   # noqa: BLE001 (missing, truncated, another format: fit it again)
            return None

    def save(self, k: int, box, res: FitResult) -> None:
        """Keep tile ``k``'s finished result (``tile_members``); a full disk or a read-only
        folder only costs the resumption."""
        try:
            self._forget_others()
            d = {f: getattr(res, f) for f in self.FIELDS}
            d.update(key=self.key, box=list(box),
                     history={k: torch.from_numpy(np.ascontiguousarray(v))
                              for k, v in res.history.items()})
            atomic_write(self._path(k), lambda p: torch.save(d, p))
        except (OSError, RuntimeError):     # torch.save reports a full disk as RuntimeError
            pass

    def holds_own(self) -> bool:
        """Whether the folder's tiles are this store's (its mark holds this key)."""
        with contextlib.suppress(OSError, UnicodeDecodeError):
            return (self.folder / self.MARK).read_text() == self.key
        return False

    def _forget_others(self) -> None:
        if not self.holds_own():
            self.remove()
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / self.MARK).write_text(self.key)

    def remove(self) -> None:
        """Delete this store's files (the mark, its tiles, a crashed write's leftovers), then the
        folder if that emptied it: a folder a caller named keeps whatever else it holds."""
        for p in self.own_files(self.folder):
            p.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.folder.rmdir()

    @classmethod
    def own_files(cls, folder) -> list[Path]:
        """A store's files in ``folder``: none unless its mark holds a key (a digest), so that a
        caller's own ``tile_0.pt`` is never taken for a kept tile."""
        mark = Path(folder) / cls.MARK
        try:
            if not re.fullmatch(r"[0-9a-f]{64}", mark.read_text()):
                return []
        except (OSError, UnicodeDecodeError):
            return []
        return [mark] + [p for p in mark.parent.iterdir()
                         if p.is_file() and cls.OWN.fullmatch(p.name)]

    @classmethod
    def check_folder(cls, folder) -> None:
        """A ValueError naming ``folder`` when it is a file or holds anything but a store's files
        (and a file browser's litter): a store there could overwrite them.  One call at a time
        per folder: two questions in one folder remove each other's tiles."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"tiles_folder {folder}: is a file, not a folder")
        if not folder.is_dir():
            return
        other = sorted(p.name for p in set(folder.iterdir()) - set(cls.own_files(folder))
                       if not cls.LITTER.fullmatch(p.name))
        if other:
            raise ValueError(f"tiles_folder {folder}: holds {', '.join(other[:3])}"
                             f"{' …' if len(other) > 3 else ''}, which are not kept tiles; "
                             "give a new or empty folder")


def _fit_tile(k, boxes, kept, results, cut, fit_one, rate, say, store, region):
    """Fit tile ``k`` (``fit_tiled``'s arguments; ``results``: the tiles placed so far;
    ``cut(k)``: its problem; ``region``: the image's (h, w)) and keep it in ``store``: (its
    ``tile_members`` result, the fit's config, whether the run stops here);
    (None, config, True) on a Ctrl-C before it had a result (raised again if no tile is done)."""
    res = config = None
    try:
        if say is not None:
            say(tile_line(k, boxes, sum(r.seconds for r in results), len(results),
                          sum(r is None for r in kept[k:]), region))
        first = all(r is not None for r in kept[:k])   # it prices the tiles left
        raw, config = fit_one(cut(k), rate if first else None)
        res = tile_members(raw)
        if store is not None and not res.interrupted:
            store.save(k, boxes[k], res)
    except KeyboardInterrupt:   # not inside the fit (which returns what it did)
        if res is None and not results:
            raise               # nothing done to keep
        return res, config, True
    return res, config, res.interrupted


def fit_tiled(problem, cfg: dict, fit_one, on_rate=None, say=None, store=None):
    """Fit ``problem`` tile by tile with ``fit_one(tile problem, on_rate) -> (FitResult, config)``
    and blend the tiles' results into one ``FitResult`` (outputs on the whole grid; one member
    per restart, member m the blend of the tiles' members m; ``stop_iteration``: per member, the
    iteration by which every tile had stopped, None if one ran to the end; ``selection['tiles']``:
    each tile's box, stop (its first member's), restores (its members') and λ chosen,
    ``selection['tile_overlap']``: the overlap fitted with; ``history``: one column per tile).
    Interrupted (Ctrl-C), the tiles not fitted keep the observation (SR: its bicubic upscaling)
    and the result is marked so.
    ``say``: called with :func:`tile_line` before each tile (None: silent).  ``store``: a
    :class:`TileStore`; the tiles it holds are taken as fitted (a line says how many), each tile
    fitted is saved to it.
    """
    if not problem.data_term.local:
        raise ValueError(f"--tile needs a data term whose observed pixels read the image near "
                         f"them; {type(problem.data_term).__name__} does not (use --tile 0)")
    tile, overlap = int(cfg["tile"]), int(cfg.get("tile_overlap") or 0)
    # a term read pixel by pixel: tiles over the image, not its padding (cropped off; an axis no
    # longer than a tile keeps it: a net's side is a multiple of 32); else the padding too
    boxes = tile_boxes([r if r > tile and problem.data_term.pixelwise else o
                        for r, o in zip(problem.region, problem.out_hw)], tile, overlap)
    # the observed pixels each tile counts: found once (a check, then the tiles' masks)
    insides = [None] * len(boxes) if problem.data_term.pixelwise else \
        check_seams(problem, boxes, overlap)
    obs = problem.data_term.observation
    names = ("output", "last_output", "ema_output")
    acc = {}            # each output's weighted sum, (members, C, H, W), from the first tile
    weight = torch.zeros(1, 1, *problem.out_hw)
    results, placed, config = [], [], None   # placed: the index of each result's tile
    kept = [None if store is None else store.load(k, b) for k, b in enumerate(boxes)]
    n_kept = sum(r is not None for r in kept)
    were = f"{n_kept} of the {len(boxes)} tiles {'was' if n_kept == 1 else 'were'} fitted by"
    if n_kept and say is not None:
        say(f"{were} an earlier run asking the same question: kept ({store.folder.name})")
    # the estimate line: the first tile fitted stands for every tile left
    left = len(boxes) - n_kept
    rate = None if on_rate is None else (lambda s, n: on_rate(s, n, left / len(boxes), left))
    stopped = False
    for k, box in enumerate(boxes):
        y, x, th, tw = box
        res = kept[k]
        if res is None:
            if stopped:     # interrupted: the tiles left keep the observation (or were kept)
                continue
            res, config_k, stopped = _fit_tile(
                k, boxes, kept, results, lambda j: tile_problem(problem, boxes[j], insides[j]),
                fit_one, rate, say, store, problem.region)
            config = config_k or config
            if res is None:     # Ctrl-C before this tile had a result: the tiles done stand
                continue
        results.append(res)
        placed.append(k)
        w = (ramp(th, overlap)[:, None] * ramp(tw, overlap)[None, :])[None, None]
        for name in names:
            t = getattr(res, name).detach().float().cpu()
            if name not in acc:
                acc[name] = torch.zeros(len(t), obs.shape[1], *problem.out_hw)
            if len(t) != len(acc[name]):    # the store's key holds restarts and λ: never so
                raise ValueError(f"tile {k + 1} has {len(t)} members, tile 1 {len(acc[name])}")
            acc[name][..., y:y + th, x:x + tw] += w * t
        weight[..., y:y + th, x:x + tw] += w
    missing = weight == 0       # tiles an interruption left unfitted: the observation
    weight = weight.clamp_min(1e-12)
    fill = obs.cpu().float()
    if fill.shape[-2:] != problem.out_hw:       # SR's LR image: bicubic on the output's grid
        fill = F.interpolate(fill, size=problem.out_hw, mode="bicubic").clamp(0, 1)
    out = {k: torch.where(missing, fill, v / weight) for k, v in acc.items()}
    members = len(out["output"])

    def stopped_by(m):   # the iteration by which every tile's member m had stopped, or None
        stops = [r.stop_iteration[m] for r in results]
        done = len(results) == len(boxes) and all(s is not None for s in stops)
        return max(stops) if done else None
    info = [dict(tile=k, box=list(boxes[k]), stop_iteration=r.stop_iteration[0],
                 iterations=r.iterations, restores=int(sum(r.restores)), seconds=round(r.seconds,
                 2), kept=kept[k] is not None, interrupted=r.interrupted, **r.selection)
            for k, r in zip(placed, results)]
    seconds = sum(r.seconds for r in results)
    warnings = [f"tile {k + 1}: {w}" for k, r in zip(placed, results) for w in r.warnings]
    if n_kept:
        warnings.append(f"{were} an earlier run (kept; their seconds are that run's)")
    combined = FitResult(
        output=out["output"], last_output=out["last_output"], ema_output=out["ema_output"],
        stop_iteration=[stopped_by(m) for m in range(members)], best_iteration=[None] * members,
        best_output=None, history=_history(results),
        iterations=max(r.iterations for r in results), seconds=seconds,
        # a pass over the whole image (every tile one iteration) per second
        its_per_sec=float(np.mean([r.iterations for r in results])) / seconds if seconds else 0.0,
        # the device of this run's tiles (a kept tile's is its run's)
        device=next((r.device for k, r in zip(placed, results) if kept[k] is None),
                    results[0].device), interrupted=stopped,
        warnings=warnings, restores=[sum(r.restores[m] for r in results) for m in range(members)],
        selection={"tiles": info, "tile_overlap": overlap, "tile_count": len(boxes)})
    return combined, config
