"""Tiled restoration (utils/tiles.py): the tiles cover the image, their blend is a partition of
unity, a tile's problem is the image's cut to it, and a tiled fit restores (README "On a CPU")."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

import launcher
from tasks import prepare_problem, restore
from utils.fit import FitResult
from utils.task import tile_stops
from utils.tiles import (TileStore, check_seams, fit_tiled, hole_note, problem_key, ramp,
                         seam_overlap, tile_boxes, tile_problem, tile_starts, tiled,
                         widest_hole)

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(channels=8, iters=30, log_every=5)
SR_TINY = dict(channels_down=8, channels_up=8, iters=30, log_every=5)   # SR's net: the hourglass


@pytest.mark.parametrize("n,tile,overlap", [(256, 128, 32), (224, 128, 32), (300, 64, 16),
                                            (128, 128, 32), (96, 128, 32), (130, 64, 32)])
def test_the_tiles_of_an_axis_are_whole_cover_it_and_overlap_at_least_as_asked(n, tile, overlap):
    starts = tile_starts(n, tile, overlap)
    size = min(tile, n)
    assert starts[0] == 0 and starts[-1] + size == n            # from the start to the end
    assert all(0 <= s and s + size <= n for s in starts)         # every tile whole, inside
    gaps = np.diff(starts)
    assert (gaps > 0).all() and (size - gaps >= overlap).all()   # moving on, overlapping
    assert len(starts) == (1 if n <= tile else int(np.ceil((n - tile) / (tile - overlap))) + 1)


def test_the_blend_weights_are_a_partition_of_unity_and_positive():
    hw, tile, overlap = (160, 224), 64, 16
    weight = torch.zeros(hw)
    for y, x, th, tw in tile_boxes(hw, tile, overlap):
        assert (th, tw) == (64, 64)
        weight[y:y + th, x:x + tw] += ramp(th, overlap)[:, None] * ramp(tw, overlap)[None]
    assert float(weight.min()) > 0                   # every pixel covered
    r = ramp(64, 16)
    assert float(r.min()) > 0 and float(r.max()) == 1.0 and torch.equal(r, r.flip(0))
    assert (r[17:47] == 1).all() and (np.diff(r[:17].numpy()) > 0).all()


def _problem(image, task="denoising", **kw):
    problem, cfg, _, _ = prepare_problem(image, task, observed=False, preset="quick", **kw)
    return problem, cfg


def test_a_tile_problem_is_the_image_problem_cut_to_it():
    img = data.astronaut()[:150, :200]          # padded to 160×224: the padding bottom, right
    problem, _ = _problem(img, "inpainting", **TINY)
    assert problem.out_hw == (160, 224) and problem.region == (150, 200)
    sub = tile_problem(problem, (96, 160, 64, 64))
    assert sub.out_hw == (64, 64) and sub.region == (54, 40)     # the image's part of the tile
    term, cut = problem.data_term, sub.data_term
    assert torch.equal(cut.observation, term.observation[..., 96:160, 160:224])
    assert torch.equal(cut.mask, term.mask[..., 96:160, 160:224])
    assert torch.equal(sub.target, problem.target[..., 96:160, 160:224])
    assert type(cut) is type(term) and cut.holdout is None and not sub.inputs


def _result(out, interrupted=False, stop=None):
    """A FitResult whose every output is ``out`` (1, C, h, w)."""
    return FitResult(output=out, last_output=out, ema_output=out, stop_iteration=[stop],
                     best_iteration=[None], best_output=None,
                     history={"iteration": np.arange(0, 10, 5), "loss": np.ones((2, 1))},
                     iterations=10, seconds=1.0, its_per_sec=10.0, device="cpu",
                     interrupted=interrupted, restores=[1])


def test_tiles_fitted_exactly_blend_back_into_the_image_and_an_interruption_keeps_the_rest():
    problem, cfg = _problem(data.astronaut()[:150, :200], tile=64, tile_overlap=16, **TINY)
    assert tiled(problem, cfg)
    truth = torch.rand(1, 3, *problem.out_hw)   # each tile "restored" to this image's cut
    boxes, seen = tile_boxes(problem.region, 64, 16), []

    def exact(sub, rate):
        seen.append(sub.out_hw)
        y, x, _, _ = boxes[len(seen) - 1]
        return _result(truth[..., y:y + 64, x:x + 64], stop=10 * len(seen)), None
    lines = []
    res, _ = fit_tiled(problem, cfg, exact, say=lines.append)
    n = len(boxes)
    # tiles over the 150×200 image, not its padding to 160×224 (15 tiles there, 3 of them
    # wholly inside their neighbours' part of the image)
    assert len(seen) == n == 12 and set(seen) == {(64, 64)}
    # before each tile a line: where it lies, and the time left at the rate so far (1 s a tile)
    assert len(lines) == n and lines[0] == "tile 1 of 12: rows 0-64, columns 0-64"
    assert lines[-1] == ("tile 12 of 12: rows 86-150, columns 136-200; 1 s per tile so far, "
                         "about 1 s for the 1 left")
    # the blend is exact on the image (the padding, cropped off, keeps the observation)
    assert torch.allclose(res.output[..., :150, :200], truth[..., :150, :200], atol=1e-6)
    assert res.stop_iteration == [10 * n] and res.restores == [n] and not res.interrupted
    assert res.history["loss"].shape == (2, n)                   # one log column per tile
    assert [t["stop_iteration"] for t in res.selection["tiles"]] == [10 * (k + 1)
                                                                     for k in range(n)]
    calls = []

    def stopped(sub, rate):
        calls.append(1)
        return _result(torch.zeros(1, 3, 64, 64), interrupted=len(calls) == 2), None
    res, _ = fit_tiled(problem, cfg, stopped)
    assert len(calls) == 2 and res.interrupted and res.stop_iteration == [None]
    obs = problem.data_term.observation
    assert torch.equal(res.output[..., 100:, 150:], obs[..., 100:, 150:])  # left as observed
    assert float(res.output[..., :30, :30].abs().max()) == 0     # the first tile's output
    # the summary names every tile: the one stopped midway and those never begun
    assert tile_stops(res.selection) == " / ".join(
        ["-", "interrupted after 10"] + ["not fitted"] * 10)
    calls.clear()

    def raising(sub, rate):     # Ctrl-C before the third tile's fit began
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return _result(torch.zeros(1, 3, 64, 64)), None
    res, _ = fit_tiled(problem, cfg, raising)
    assert len(calls) == 3 and res.interrupted and len(res.selection["tiles"]) == 2
    assert tile_stops(res.selection) == " / ".join(["-", "-"] + ["not fitted"] * 10)
    assert float(res.output[..., :30, :100].abs().max()) == 0    # the two tiles done stand
    assert torch.equal(res.output[..., 100:, 150:], obs[..., 100:, 150:])

    def at_once(sub, rate):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):      # before any tile: nothing to keep
        fit_tiled(problem, cfg, at_once)


def test_finished_tiles_are_kept_and_a_rerun_fits_only_the_others(tmp_path):
    problem, cfg = _problem(data.astronaut()[:150, :200], tile=64, tile_overlap=16, **TINY)
    truth = torch.rand(1, 3, *problem.out_hw)
    boxes, calls = tile_boxes(problem.region, 64, 16), []

    def fit_one(stop_at=None):
        def one(sub, rate):
            k = next(k for k, b in enumerate(boxes)
                     if torch.equal(sub.data_term.observation,
                                    tile_problem(problem, b).data_term.observation))
            calls.append((k, rate is not None))
            if rate is not None:        # 1 s an iteration for this tile
                rate(1.0, 10)
            y, x, _, _ = boxes[k]
            return _result(truth[..., y:y + 64, x:x + 64], interrupted=k == stop_at,
                           stop=None if k == 2 else 5 + k), "config"   # tile 3 ran to the end
        return one
    key = problem_key(problem, {"seed": 0})
    store = TileStore(tmp_path / ".astronaut.tiles", key)
    rates = []

    def on_rate(rate, iters, share=1.0, tiles=0):
        rates.append((rate, share, tiles))
    res, _ = fit_tiled(problem, cfg, fit_one(stop_at=3), on_rate=on_rate, store=store)
    assert res.interrupted and [k for k, _ in calls] == [0, 1, 2, 3]
    assert sorted(p.name for p in store.folder.glob("tile_*.pt")) == [
        "tile_0000.pt", "tile_0001.pt", "tile_0002.pt"]          # the interrupted tile is not
    calls.clear()
    lines = []
    res, config = fit_tiled(problem, cfg, fit_one(), on_rate=on_rate, say=lines.append,
                            store=TileStore(store.folder, key))
    # the rerun fits tiles 4 to 12 only; the first of them prices the 9 left, 0.75 of the image
    assert [k for k, _ in calls] == list(range(3, 12)) and calls[0][1] and not calls[1][1]
    assert rates == [(1.0, 1.0, 12), (1.0, 0.75, 9)]    # per tile, and the tiles left
    assert lines[0] == ("3 of the 12 tiles were fitted by an earlier run asking the same "
                        "question: kept (.astronaut.tiles)") and lines[1].startswith("tile 4 of")
    image = (..., slice(0, 150), slice(0, 200))     # the padding keeps the observation
    assert torch.allclose(res.output[image], truth[image], atol=1e-6) and not res.interrupted
    assert res.stop_iteration == [None] and res.restores == [12] and config == "config"
    assert [t["kept"] for t in res.selection["tiles"]] == [True] * 3 + [False] * 9
    assert [t["stop_iteration"] for t in res.selection["tiles"]] == [
        None if k == 2 else 5 + k for k in range(12)]
    assert res.history["loss"].shape == (2, 12)
    assert "3 of the 12 tiles were fitted by an earlier run" in res.warnings[-1]
    # every tile kept: nothing fitted (and no configuration to hand on)
    calls.clear()
    res, config = fit_tiled(problem, cfg, fit_one(), store=TileStore(store.folder, key))
    assert calls == [] and config is None
    assert torch.allclose(res.output[image], truth[image], atol=1e-6)
    # a damaged file is fitted again; another question's tiles are not used, and go
    (store.folder / "tile_0004.pt").write_bytes(b"not a tile")
    res, _ = fit_tiled(problem, cfg, fit_one(), store=TileStore(store.folder, key))
    assert [k for k, _ in calls] == [4]
    calls.clear()
    other = TileStore(store.folder, problem_key(problem, {"seed": 1}))
    fit_tiled(problem, cfg, fit_one(stop_at=1), store=other)
    assert [k for k, _ in calls] == [0, 1] and len(list(store.folder.glob("tile_*.pt"))) == 1
    noisier, _ = _problem(data.astronaut()[:150, :200], tile=64, sigma=30, **TINY)
    assert problem_key(noisier, {"seed": 0}) != key          # another observation
    other.remove()
    assert not store.folder.exists()


def test_a_tiled_denoising_fit_restores_and_says_how_each_tile_ended(capsys):
    img = data.camera()[100:228, 80:200]         # 128×120: 2 × 2 tiles of 64
    r = restore(img, "denoising", observed=False, tile=64, tile_overlap=0, quiet=False,
                **dict(TINY, iters=150))
    err = capsys.readouterr().err
    assert "tile 1 of 4: rows 0-64, columns 0-64\n" in err
    assert "tile 4 of 4: rows 64-128, columns 56-120; " in err and "for the 1 left" in err
    assert r.array.shape == (128, 120, 1)
    assert r.metrics["psnr"] > r.metrics["psnr_in"] + 2.0
    assert r.metrics["tiles"] == 4 and len(r.metrics["tile_stops"].split(" / ")) == 4
    assert r.metrics["tile_overlap"] == 0
    whole = restore(img, "denoising", observed=False, tile=0, **dict(TINY, iters=2))
    assert "tiles" not in whole.metrics
    # the summary has the overlap fitted with: a blur's widened one, not the one asked
    with pytest.warns(UserWarning, match="^tile_overlap=8 widened to 19: an observed pixel"):
        blurred = restore(img, "deblurring", observed=False, tile=64, tile_overlap=8,
                          blur_sigma=3, **dict(TINY, iters=2))
    assert blurred.metrics["tiles"] == 9 and blurred.metrics["tile_overlap"] == 19   # 3 × 3


def test_restore_keeps_finished_tiles_in_its_tiles_folder_and_resumes_from_them(tmp_path,
                                                                                 monkeypatch):
    """The Python caller's path: Ctrl-C between tiles 2 and 3 of ``restore(..., tiles_folder=)``,
    the same call again: it fits tiles 3 and 4 only and returns what a call never stopped
    returns (each tile seeded alone); the folder is gone once the image is restored."""
    import utils.task
    img, folder = data.camera()[100:228, 80:208], tmp_path / "kept"
    kw = dict(observed=False, tile=64, tile_overlap=0, quiet=False, **dict(TINY, iters=40))
    said = []

    def say(line):                    # the line before each tile; Ctrl-C before the third
        said.append(line)
        if line.startswith("tile 3 of 4"):
            raise KeyboardInterrupt
    monkeypatch.setattr(utils.task, "say", say)
    with pytest.raises(KeyboardInterrupt):
        restore(img, "denoising", tiles_folder=folder, **kw)
    assert sorted(p.name for p in folder.glob("tile_*.pt")) == ["tile_0000.pt", "tile_0001.pt"]
    said.clear()
    monkeypatch.setattr(utils.task, "say", said.append)
    again = restore(img, "denoising", tiles_folder=folder, **kw)
    assert said[0].startswith("2 of the 4 tiles were fitted by an earlier run")
    assert [s[:11] for s in said[1:]] == ["tile 3 of 4", "tile 4 of 4"]
    assert not folder.exists()
    never = restore(img, "denoising", **kw)
    assert np.array_equal(again.array, never.array)
    assert again.metrics["psnr"] == never.metrics["psnr"]
    # another question (another seed) does not take the tiles kept for this one
    monkeypatch.setattr(utils.task, "say", say)
    with pytest.raises(KeyboardInterrupt):
        restore(img, "denoising", tiles_folder=folder, **kw)
    said.clear()
    monkeypatch.setattr(utils.task, "say", said.append)
    restore(img, "denoising", tiles_folder=folder, seed=1, **kw)
    assert [s[:11] for s in said] == [f"tile {k} of 4" for k in (1, 2, 3, 4)]
    # a folder holding anything but kept tiles is refused before any fit, and left as it was
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "tile_0000.pt").write_bytes(b"no mark: the caller's")
    said.clear()
    with pytest.raises(ValueError, match=r"tiles_folder .*kept: holds notes\.txt, tile_0000\.pt, "
                                         r"which are not kept tiles; give a new or empty "
                                         r"folder"):
        restore(img, "denoising", tiles_folder=folder, **kw)
    assert said == [] and sorted(p.name for p in folder.iterdir()) == ["notes.txt", "tile_0000.pt"]
    with pytest.raises(ValueError, match="notes.txt: is a file, not a folder"):
        restore(img, "denoising", tiles_folder=folder / "notes.txt", **kw)
    TileStore(folder, "k").remove()     # no mark: not a store's folder, nothing goes
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "tile_0000.pt"]


def test_a_tile_store_keeps_members_and_removes_only_its_own_files(tmp_path):
    """A kept tile holds every member and the λ chosen; a store deletes only the files beside
    its mark, never a caller's ``tile_0.pt`` or ``key``; a file browser's litter is no reason
    to refuse a folder."""
    k2 = _result(torch.rand(2, 3, 64, 64), stop=7)
    k2.stop_iteration, k2.restores, k2.selection = [7, None], [1, 2], {"lambda": "1.8"}
    k2.history = {"iteration": np.array([0, 5]), "loss": np.ones((2, 2))}
    folder = tmp_path / "t"
    store = TileStore(folder, "ab" * 32)
    store.save(3, (0, 64, 64, 64), k2)
    got = TileStore(folder, "ab" * 32).load(3, (0, 64, 64, 64))
    assert torch.equal(got.output, k2.output) and got.stop_iteration == [7, None]
    assert got.restores == [1, 2] and got.selection == {"lambda": "1.8"}
    assert got.best_iteration == [None, None] and got.history["loss"].shape == (2, 2)
    assert TileStore(folder, "cd" * 32).load(3, (0, 64, 64, 64)) is None   # another question
    (folder / ".DS_Store").write_bytes(b"x")
    TileStore.check_folder(folder)                                    # litter: not refused
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("tile_0.pt", "tile_0001.pt", "key"):
        (mine / name).write_bytes(b"the caller's")
    with pytest.raises(ValueError, match="holds key, tile_0.pt, tile_0001.pt, which are not"):
        TileStore.check_folder(mine)
    TileStore(mine, "ab" * 32).remove()
    assert len(list(mine.iterdir())) == 3
    store.remove()                                           # its own files; the litter stays
    assert [p.name for p in folder.iterdir()] == [".DS_Store"]


def test_restarts_and_an_automatic_lambda_survive_the_tiles(tmp_path):
    """A tiled fit keeps one member per restart (member m: the blend of the tiles' members m),
    so the restarts' spread is the whole image's; with ``--lambda auto`` each tile's λ is said
    (before: the members were averaged inside each tile, and ``lambda_chosen`` was missing)."""
    img = data.camera()[100:228, 80:208]
    r = restore(img, "denoising", observed=False, tile=64, tile_overlap=0, restarts=2,
                ln_lambda="auto", **dict(TINY, iters=20))
    assert r.fit.output.shape[0] == 2 and len(r.fit.stop_iteration) == 2
    assert not torch.equal(r.fit.output[0], r.fit.output[1])        # two restarts, not copies
    chosen = r.metrics["lambda_chosen"].split(" / ")
    assert len(chosen) == 4 and set(chosen) <= {"1.2", "1.4", "1.8", "2.4", "none"}
    assert r.metrics["uncertainty_mean"] > 0 and r.metrics["psnr_spread"] > 0
    assert len(r.metrics["psnr_members"].split(" / ")) == 2
    Image.fromarray(img).save(tmp_path / "cam.png")
    cli = launcher.run([ROOT / "denoising.py", "--quiet", "--image", tmp_path / "cam.png",
                        "--out", tmp_path / "out", "--channels", "8", "--iters", "10",
                        "--log-every", "5", "--tile", "64", "--tile-overlap", "0",
                        "--restarts", "2"])
    assert cli.returncode == 0, cli.stderr
    rec = json.loads((tmp_path / "out" / "cam" / "summary.json").read_text())
    assert "uncertainty.png" in rec["outputs"] and len(rec["members"]) == 2
    assert all(m["psnr_peak"] is None for m in rec["members"])      # no member log in tiles


def test_a_hole_wider_than_a_quarter_tile_is_filled_by_one_net_and_said_so(tmp_path):
    img = data.astronaut()[:192, :192]
    problem, cfg = _problem(img, "inpainting", tile=64, **TINY)     # the 50 % Bernoulli mask
    assert 0 < widest_hole(problem) < 3 and hole_note(problem, cfg) is None
    known = np.full((192, 192), 255, np.uint8)
    known[40:64, 100:124] = 0                   # a 24-pixel hole: 12 from the nearest known
    Image.fromarray(known).save(tmp_path / "small_hole.png")
    known[60:160, 40:140] = 0                   # and a 100-pixel one: 50 from it
    Image.fromarray(known).save(tmp_path / "wide_hole.png")
    small, cfg = _problem(img, "inpainting", mask=str(tmp_path / "small_hole.png"), tile=64,
                          **TINY)
    assert widest_hole(small) == 12 and hole_note(small, cfg) is None
    said = ("reaches 50 pixels from every known pixel, more than a quarter of the 64×64 tiles: "
            "one net")
    with pytest.warns(UserWarning, match=said):                  # told before the fit
        r = restore(img, "inpainting", observed=False, mask=tmp_path / "wide_hole.png", tile=64,
                    **dict(TINY, iters=2))
    assert "tiles" not in r.metrics and r.array.shape == (192, 192, 3)    # one net
    assert any(said in w for w in r.fit.warnings)                # and recorded


@pytest.mark.parametrize("task,kw", [("super_resolution", dict(factor=2)),
                                     ("super_resolution", dict(factor=4)),
                                     ("super_resolution", dict(factor=8)),
                                     ("deblurring", {})])
def test_a_coupling_term_is_cut_on_its_grid_and_leaves_out_what_reads_past_the_tile(task, kw):
    problem, _ = _problem(data.astronaut()[:192, :256], task, **kw,
                          **(SR_TINY if task == "super_resolution" else TINY))
    term, f = problem.data_term, kw.get("factor", 1)
    assert term.scale == f and not term.pixelwise and term.local
    x = torch.rand(1, 3, *problem.out_hw, generator=torch.Generator().manual_seed(1))
    full = term(x)
    for box in tile_boxes(problem.out_hw, 64, 16):   # corners, edges and the middle
        y, x0, th, tw = box
        sub = tile_problem(problem, box)
        cut = sub.data_term
        lr = (..., slice(y // f, (y + th) // f), slice(x0 // f, (x0 + tw) // f))
        assert torch.equal(cut.observation, term.observation[lr])
        assert torch.equal(sub.target, problem.target[..., y:y + th, x0:x0 + tw])
        # where the tile counts an observed pixel, its own operator gives the whole image's
        # value; every pixel it leaves out would have read past the tile (a padding instead)
        diff = (cut(x[..., y:y + th, x0:x0 + tw]) - full[lr]).abs().amax(1, keepdim=True)
        inside = cut.mask > 0
        assert float(diff[inside].max()) < 1e-5
        assert bool(inside.any()) and bool((~inside).any())   # every tile has an inner edge here
        assert float(diff[~inside].min()) > 1e-5
        # only the tile's inner edges lose pixels: the image's borders are modelled alike
        rows, cols = inside[0, 0].any(1), inside[0, 0].any(0)
        assert bool(rows[0]) == (y == 0) and bool(rows[-1]) == (y + th == problem.out_hw[0])
        assert bool(cols[0]) == (x0 == 0) and bool(cols[-1]) == (x0 + tw == problem.out_hw[1])
    if f == 4:      # DIP's 16×16 Lanczos footprint reaches 6 pixels before and 9 after: the
        middle = tile_problem(problem, (64, 96, 64, 64)).data_term.mask   # 2 LR pixels a side
        assert middle.shape[-2:] == (16, 16) and int(middle.sum()) == 12 * 12
        assert bool((middle[..., 2:14, 2:14] == 1).all())


def test_a_tiled_super_resolution_fit_restores_the_observation_on_every_tile():
    img = data.astronaut()[130:194, 140:268]            # 64×128, ×4: 16×32 LR, 3 tiles of 64
    r = restore(img, "super_resolution", observed=False, tile=64, tile_overlap=32, factor=4,
                channels_down=8, channels_up=8, iters=300, log_every=10)
    assert r.metrics["tiles"] == 3 and r.array.shape == (64, 128, 3)
    # the blended output, downsampled, gives the low-resolution image back (no seam breaks it)
    from utils.physics import downsample
    from utils.metrics import psnr
    out = torch.from_numpy(r.array).permute(2, 0, 1)[None]
    lr = torch.from_numpy(np.asarray(r.observed, np.float32)).permute(2, 0, 1)[None]
    assert float(psnr(downsample(out, 4), lr)[0]) > 27     # measured 29.0 (one net: 26.4)
    assert r.metrics["y_psnr"] > r.metrics["y_psnr_bicubic"] - 1   # −0.63 (one net: −1.92)


def test_an_interrupted_tiled_super_resolution_fills_the_tiles_left_by_bicubic_upscaling():
    import torch.nn.functional as F
    problem, cfg = _problem(data.astronaut()[:128, :192], "super_resolution", factor=4,
                            tile=64, tile_overlap=32, **SR_TINY)

    def first_only(sub, rate):      # the first tile's fit is interrupted: it stands, no other
        return _result(torch.zeros(1, 3, 64, 64), interrupted=True), None
    res, _ = fit_tiled(problem, cfg, first_only)
    assert res.interrupted and res.output.shape[-2:] == problem.out_hw == (128, 192)
    assert float(res.output[..., :32, :32].abs().max()) == 0
    up = F.interpolate(problem.data_term.observation, size=(128, 192), mode="bicubic")
    assert torch.allclose(res.output[..., 64:, 64:], up.clamp(0, 1)[..., 64:, 64:])


def test_a_term_that_is_not_local_is_not_tiled_and_bad_tiles_are_refused():
    import dataclasses
    from utils.physics import DataTerm
    problem, cfg = _problem(data.camera()[:160, :160], tile=64, **TINY)
    anywhere = dataclasses.replace(problem, data_term=DataTerm(problem.data_term.observation))
    with pytest.raises(ValueError, match="read the image near them; DataTerm does not"):
        fit_tiled(anywhere, cfg, None)
    with pytest.raises(ValueError, match="tile_overlap must be a multiple of factor .4."):
        restore(data.camera()[:160, :160], "super_resolution", observed=False, tile=64,
                tile_overlap=10, **SR_TINY)
    # tiles that overlap by less than one observed pixel reads leave the seams to no net
    for task, kw, width in [("super_resolution", dict(factor=8, tile_overlap=24), 32),
                            ("deblurring", dict(blur_sigma=6, tile_overlap=32), 37)]:
        problem, cfg = _problem(data.astronaut()[:256, :256], task, tile=128, **kw)
        with pytest.raises(ValueError, match=f"--tile-overlap {kw['tile_overlap']} is too "
                           f"narrow for .*reads {width} rows.*give --tile-overlap {width} or "
                           "more"):
            fit_tiled(problem, cfg, None)
        # a fit (fit_problem) widens it to that width instead, and says so before the fit
        assert problem.notes[-1].startswith(f"--tile-overlap {kw['tile_overlap']} widened to "
                                            f"{width}: an observed pixel of ")
        assert seam_overlap(problem, cfg)[0] == width
        check_seams(problem, tile_boxes(problem.out_hw, 128, width), width)   # wide enough
        problem, cfg = _problem(data.astronaut()[:256, :256], task, tile=128,
                                **dict(kw, tile_overlap=40))
        assert seam_overlap(problem, cfg) == (40, None) and not problem.notes
    # a footprint wider than half a tile: one net for the whole image, said before the fit
    problem, cfg = _problem(data.astronaut()[:256, :256], "deblurring", tile=128, blur_sigma=12)
    overlap, note = seam_overlap(problem, cfg)
    assert overlap is None and note == problem.notes[-1] and note.endswith(
        "reads 73 rows and columns of the image, more than half of the 128×128 tiles: one net "
        "for the whole image instead (--tile)")
    with pytest.raises(ValueError, match="tile must be 0 .no tiles. or a multiple of 32"):
        restore(data.camera()[:160, :160], "denoising", tile=100, **TINY)
    with pytest.raises(ValueError, match="tile_overlap must be at most half of tile"):
        restore(data.camera()[:160, :160], "denoising", tile=64, tile_overlap=40, **TINY)


def test_the_command_line_writes_a_tiled_fit_with_a_log_per_tile(tmp_path):
    Image.fromarray(data.astronaut()[:150, :200]).save(tmp_path / "wide.png")
    r = launcher.run([ROOT / "denoising.py", "--quiet", "--image", tmp_path / "wide.png",
                      "--out", tmp_path / "out", "--channels", "8", "--iters", "10",
                      "--log-every", "5", "--tile", "64", "--tile-overlap", "16"])
    assert r.returncode == 0, r.stderr
    assert "tile 1 of" not in r.stderr                           # --quiet: no tile lines
    folder = tmp_path / "out" / "wide"
    with Image.open(folder / "output.png") as im:
        assert im.size == (200, 150)
    header, *rows = (folder / "log.csv").read_text().splitlines()
    logged = {r.split(",")[0] for r in rows}
    # 3 × 4 tiles over the 150×200 image (none wholly in its padding to 160×224)
    assert header.split(",")[-1] == "tile" and len(rows) == 12 * len(logged) >= 24  # per tile
    assert {r.split(",")[-1] for r in rows} == {str(k) for k in range(12)}
    rec = json.loads((folder / "summary.json").read_text())
    assert rec["tiles"] == 12 and rec["hyperparameters"]["tile"] == 64
    assert (folder / "fbc.png").exists() and (folder / "psnr_ratio.png").exists()


def test_a_tiled_run_stopped_by_ctrl_c_resumes_from_its_finished_tiles(tmp_path):
    """The user's path: Ctrl-C during the third tile, the same command again; the outputs are
    those of a run never stopped (each tile seeded alone), the kept tiles then removed."""
    Image.fromarray(data.camera()[:128, :128]).save(tmp_path / "cam.png")
    e = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")   # the same rounding

    def command(out):
        return [sys.executable, str(ROOT / "denoising.py"), "--image", str(tmp_path / "cam.png"),
                "--out", str(tmp_path / out), "--channels", "8", "--iters", "100",
                "--log-every", "50", "--tile", "64", "--tile-overlap", "0"]
    # SIGINT as a terminal's Ctrl-C sends it (a shell without job control has it ignored)
    run = subprocess.Popen(command("out"), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           text=True, cwd=ROOT, env=e,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in run.stderr:           # Ctrl-C once the third tile has begun
        if "tile 3 of 4" in line:
            run.send_signal(signal.SIGINT)
            break
    run.stderr.read()
    assert run.wait(timeout=600) == 130
    kept = tmp_path / "out" / ".cam.tiles"
    assert len(list(kept.glob("tile_*.pt"))) == 2
    rec = json.loads((tmp_path / "out" / "cam" / "summary.json").read_text())
    assert rec["status"] == "interrupted"
    again = subprocess.run(command("out"), capture_output=True, text=True, cwd=ROOT, env=e,
                           timeout=600)
    assert again.returncode == 0, again.stderr
    assert "2 of the 4 tiles were fitted by an earlier run asking the same question" in \
        again.stderr
    assert "tile 1 of 4" not in again.stderr and "tile 3 of 4" in again.stderr
    assert not kept.exists()
    rec = json.loads((tmp_path / "out" / "cam" / "summary.json").read_text())
    assert rec["status"] == "ok" and rec["tiles"] == 4
    kept.mkdir()          # another question's tiles beside a finished image: its progress
    (kept / TileStore.MARK).write_text("0" * 64)
    (kept / "tile_0000.pt").write_bytes(b"another question's")
    skipped = subprocess.run(command("out"), capture_output=True, text=True, cwd=ROOT, env=e,
                             timeout=600)
    assert "cam: already finished, skipped" in skipped.stdout
    assert sorted(p.name for p in kept.iterdir()) == [TileStore.MARK, "tile_0000.pt"]
    whole = subprocess.run(command("never_stopped") + ["--quiet"], capture_output=True,
                           text=True, cwd=ROOT, env=e, timeout=600)
    assert whole.returncode == 0, whole.stderr
    for name in ("output.png", "output_ema.png"):
        with Image.open(tmp_path / "out" / "cam" / name) as a, \
                Image.open(tmp_path / "never_stopped" / "cam" / name) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b)), name


def test_a_skip_removes_the_tiles_kept_for_its_own_question_only(tmp_path):
    """An image found finished: tiles kept for that very question are litter and go; those of
    another question (an interrupted refit with another seed) are its progress and stay."""
    from tasks import get_task
    from utils.cli import forget_own_tiles, tiles_folder
    from utils.imageio import load_image
    from utils.tiles import store_for
    Image.fromarray(data.camera()[:96, :96]).save(tmp_path / "cam.png")
    img, task = load_image(tmp_path / "cam.png"), get_task("denoising")
    folder = tiles_folder(tmp_path, "cam")
    for seed, stays in ((1, True), (0, False)):
        _, cfg, _, _ = prepare_problem(tmp_path / "cam.png", task, observed=False, tile=64,
                                       seed=seed, **TINY)
        store = store_for(folder, task.problem(img, cfg), cfg, img.pixels_sha256)
        store.save(0, (0, 0, 64, 64), _result(torch.zeros(1, 1, 64, 64)))
        _, cfg, _, _ = prepare_problem(tmp_path / "cam.png", task, observed=False, tile=64,
                                       seed=0, **TINY)
        forget_own_tiles(task, img, cfg, tmp_path, [])     # the seed-0 result is finished
        assert folder.is_dir() == stays and (not stays or store.load(0, (0, 0, 64, 64)))
