"""Restoring an image in overlapping tiles, each fitted by its own net, blended into one output.

A DIP fit of a whole image asks one net to hold all of it; at the CPU quick preset's width (64
channels) and 600 iterations, a 256×256 image came out 2–4 dB below CBM3D where its 128×128
crops were within 1–2 dB (results/tiles.md).  Fitting the image as tiles of the preset's crop
size, each with its own net and its own stop, costs about the same per pixel and iteration and
restores the quality measured on crops.  The tiles overlap by ``tile_overlap`` pixels and are
blended with weights that fall linearly towards each tile's edges, so no seam is left where one
net's output meets the next.  Only data terms that act pixel by pixel can be cut so (denoising,
deblocking, inpainting, enhancement: ``DataTerm.pixelwise``); a blur or a downsampling couples
each pixel of the observation to pixels of the next tile.

Ulyanov, Vedaldi, Lempitsky, "Deep Image Prior", CVPR 2018 fit whole images; the tiling is this
project's CPU path (README "On a CPU").
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

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


def tile_problem(problem, box):
    """The part of ``problem`` inside ``box``: the observation (and mask) cut to it, the ground
    truth too, the true image's part of it as the region (the padding lies bottom and right)."""
    y, x, th, tw = box
    term = problem.data_term
    cut = lambda t: t if t is None or t.shape[-2:] != term.observation.shape[-2:] \
        else t[..., y:y + th, x:x + tw].contiguous()    # noqa: E731 (a mask may broadcast)
    sub = term.with_buffers(observation=cut(term.observation), mask=cut(term.mask),
                            holdout=None)
    h, w = problem.region
    return dataclasses.replace(
        problem, data_term=sub, out_hw=(th, tw), region=(min(th, h - y), min(tw, w - x)),
        target=None if problem.target is None else cut(problem.target),
        inputs={}, baseline={}, evaluate=None, finish=None, present=None, observed=None,
        notes=[])


def _history(results) -> dict:
    """The tiles' logs side by side, one column per tile (its result's first chosen member),
    NaN where a tile had stopped."""
    its = np.unique(np.concatenate([r.history["iteration"] for r in results])).astype(np.int64)
    rows = [np.searchsorted(its, r.history["iteration"]) for r in results]
    out = {"iteration": its}
    for key in (k for k in results[0].history if k != "iteration"):
        out[key] = np.full((len(its), len(results)), np.nan)
        for j, r in enumerate(results):
            out[key][rows[j], j] = r.history[key][:, r.chosen[0] if r.chosen else 0]
    return out


def tile_line(k: int, boxes, seconds_done: float) -> str:
    """The line printed before tile ``k`` (from 0) of ``boxes``: where it lies and, after the
    first, the time the tiles left will take at the mean of those done."""
    y, x, th, tw = boxes[k]
    line = f"tile {k + 1} of {len(boxes)}: rows {y}-{y + th}, columns {x}-{x + tw}"
    if k:
        each = seconds_done / k
        line += (f"; {duration(each)} per tile so far, about "
                 f"{duration(each * (len(boxes) - k))} for the {len(boxes) - k} left")
    return line


def fit_tiled(problem, cfg: dict, fit_one, on_rate=None, say=None):
    """Fit ``problem`` tile by tile with ``fit_one(tile problem, on_rate) -> (FitResult, config)``
    and blend the tiles' results into one ``FitResult`` of one member (outputs on the whole grid;
    ``stop_iteration``: the iteration by which every tile had stopped, None if one ran to the end;
    ``selection['tiles']``: each tile's box, stop and restores; ``history``: one column per tile).
    Interrupted (Ctrl-C), the tiles not fitted keep the observation and the result is marked so.
    ``say``: called with :func:`tile_line` before each tile (None: silent).
    """
    if not getattr(problem.data_term, "pixelwise", False):
        raise ValueError(f"--tile needs a data term that acts pixel by pixel; "
                         f"{type(problem.data_term).__name__} does not (use --tile 0)")
    tile, overlap = int(cfg["tile"]), int(cfg.get("tile_overlap") or 0)
    boxes = tile_boxes(problem.out_hw, tile, overlap)
    obs = problem.data_term.observation
    names = ("output", "last_output", "ema_output")
    acc = {k: torch.zeros(1, obs.shape[1], *problem.out_hw) for k in names}
    weight = torch.zeros(1, 1, *problem.out_hw)
    results, config = [], None
    # the estimate line: the first tile's rate stands for every tile's
    rate = None if on_rate is None else (lambda s, n: on_rate(s * len(boxes), n))
    for k, box in enumerate(boxes):
        y, x, th, tw = box
        if say is not None:
            say(tile_line(k, boxes, sum(r.seconds for r in results)))
        res, config = fit_one(tile_problem(problem, box), rate if k == 0 else None)
        results.append(res)
        w = (ramp(th, overlap)[:, None] * ramp(tw, overlap)[None, :])[None, None]
        for name in names:
            acc[name][..., y:y + th, x:x + tw] += w * res.final(name).detach().float().cpu()
        weight[..., y:y + th, x:x + tw] += w
        if res.interrupted:
            break
    missing = weight == 0       # tiles an interruption left unfitted: the observation
    weight = weight.clamp_min(1e-12)
    out = {k: torch.where(missing, obs.cpu().float(), v / weight)
           for k, v in acc.items()}
    stops = [r.stop_iteration[r.chosen[0] if r.chosen else 0] for r in results]
    done = len(results) == len(boxes) and all(s is not None for s in stops)
    info = [dict(box=list(b), stop_iteration=s, iterations=r.iterations,
                 restores=int(sum(r.restores)), seconds=round(r.seconds, 2))
            for b, s, r in zip(boxes, stops, results)]
    seconds = sum(r.seconds for r in results)
    warnings = [f"tile {k + 1}: {w}" for k, r in enumerate(results) for w in r.warnings]
    combined = FitResult(
        output=out["output"], last_output=out["last_output"], ema_output=out["ema_output"],
        stop_iteration=[max(stops) if done else None], best_iteration=[None],
        best_output=None, history=_history(results),
        iterations=max(r.iterations for r in results), seconds=seconds,
        # a pass over the whole image (every tile one iteration) per second
        its_per_sec=float(np.mean([r.iterations for r in results])) / seconds if seconds else 0.0,
        device=results[0].device, interrupted=any(r.interrupted for r in results),
        warnings=warnings, restores=[sum(i["restores"] for i in info)],
        selection={"tiles": info})
    return combined, config
