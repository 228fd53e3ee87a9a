"""Oracle-free choices (issue 15): held-out pixels, the validation stop, --lambda auto,
--sigma auto, the restarts' spread and uncertainty map, and the stopping benchmark at toy scale."""
import json
import math

import numpy as np
import pytest
import torch
from skimage import data

import denoising
from models.layers import LipschitzConv2d
from utils.cli import main
from utils.fit import Fit, FitConfig, FitResult, fit
from utils.metrics import estimate_sigma, psnr
from utils.physics import IdentityTerm, MaskedTerm, add_gaussian_noise
from utils.stopping import VALIDATION_OPTIONS, ValidationStop, make_stop_rule
from utils.members import LAMBDA_AUTO, choose_lambda
from utils.task import make_nets, uncertainty_map

from test_fit import code, crop64, tiny_net

TINY = ["--quick", "--quiet", "--crop", "64", "--channels", "8", "--log-every", "2"]


# ------------------------------------------------------------------ held-out pixels
def test_holdout_leaves_pixels_out_of_the_loss_and_scores_them_alone():
    y = torch.rand(1, 3, 40, 50)
    term = IdentityTerm(y).with_holdout(0.05, seed=1, region=(32, 40))
    hold = term.holdout[0, 0]
    assert hold.sum() == round(0.05 * 32 * 40) and hold[32:].sum() == 0 and hold[:, 40:].sum() == 0
    x = torch.rand(1, 3, 40, 50)
    other = x.clone()
    other[..., hold.bool()] += 0.3          # a change on held-out pixels only ...
    assert torch.equal(term.loss(x), term.loss(other))    # ... is not seen by the loss
    assert term.heldout_loss(other) > term.heldout_loss(x)
    pad = x.clone()
    pad[..., 35:, :] = 1 - pad[..., 35:, :]  # the padding leaves the loss too
    assert torch.equal(term.loss(x), term.loss(pad))
    assert IdentityTerm(y).holdout is None and torch.equal(
        IdentityTerm(y).with_holdout(0.05, seed=1, region=(32, 40)).holdout, term.holdout)


def test_holdout_draws_known_pixels_only():
    y = torch.rand(1, 1, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1
    term = MaskedTerm(y, mask).with_holdout(0.1, seed=0)
    hold = term.holdout[0, 0]
    assert hold[:, 16:].sum() == 0 and hold.sum() == round(0.1 * 32 * 16)
    assert torch.equal(term.fitted_mask(), mask * (1 - term.holdout))


def test_heldout_loss_minus_sigma2_estimates_the_mse():
    """For an output that never saw the held-out pixels' noise: E[loss] = MSE + σ²."""
    x = torch.rand(1, 3, 128, 128) * 0.6 + 0.2       # away from 0 and 1: no clipping
    y = add_gaussian_noise(x, 25, seed=0)
    term = IdentityTerm(y).with_holdout(0.05, seed=3)
    guess = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    est = float(term.heldout_loss(guess)[0]) - (25 / 255) ** 2
    true = float(((guess - x) ** 2).mean())
    assert abs(est - true) < 0.25 * true


# ------------------------------------------------------------------ the validation rule
def test_validation_stop_finds_the_minimum_of_the_smoothed_loss():
    rule = ValidationStop(window=3, patience=30)
    its = np.arange(0, 300, 10)
    loss = (its - 120.0) ** 2 / 1e4 + 1          # minimum at 120
    loss[5] = np.nan                             # a NaN makes no decision
    stopped_at = None
    for it, v in zip(its, loss):
        out = torch.full((1, 1, 4, 4), float(it))
        if bool(rule.update(int(it), out, heldout=torch.tensor([v]))[0]) and stopped_at is None:
            stopped_at = int(it)
    # the trailing mean of 3 evaluations is lowest when the window is centred on 120
    assert int(rule.stop_iteration[0]) == 130 and stopped_at == 160
    assert float(rule.output[0, 0, 0, 0]) == 130
    with pytest.raises(ValueError, match="held-out"):
        ValidationStop().update(0, out)


def test_the_centred_window_keeps_the_output_at_the_minimum_not_after_it():
    its = np.arange(0, 400, 10)
    loss = (its - 120.0) ** 2 / 1e4 + 1          # minimum at 120
    for window, lag in ((3, 10), (5, 20), (6, 20)):   # the trailing window's lag: ⌊(w−1)/2⌋
        got = {}
        for centred in (False, True):
            rule = ValidationStop(window=window, patience=60, centred=centred)
            for it, v in zip(its, loss):
                rule.update(int(it), torch.full((1, 1, 2, 2), float(it)),
                            heldout=torch.tensor([v]))
            got[centred] = int(rule.stop_iteration[0])
            assert float(rule.output[0, 0, 0, 0]) == got[centred]   # the output given then
        # (an even window's trailing mean ties at 140 and 150, the first kept)
        assert got[True] == 120 and got[False] == 120 + lag


def test_both_candidates_keep_the_one_with_the_lower_held_out_loss():
    its = np.arange(0, 500, 10)
    average = (its - 200.0) ** 2 / 1e4 + 1.0     # the moving average: later and lower minimum
    raw = (its - 60.0) ** 2 / 1e4 + 1.2          # the raw output: early, higher
    for raw_offset, expect_raw in ((0.0, False), (-0.5, True)):
        rule = ValidationStop(window=3, patience=200, both=True)
        for it, a, r in zip(its, average, raw + raw_offset):
            rule.update(int(it), torch.full((1, 1, 2, 2), -float(it)), heldout=torch.tensor([a]),
                        candidate=torch.full((1, 1, 2, 2), float(it)),
                        heldout_output=torch.tensor([r]))
        assert bool(rule.stopped[0]) and int(rule.kept[0]) == int(expect_raw)
        stop = int(rule.stop_iteration[0])
        assert stop == (70 if expect_raw else 210)     # (the trailing window lags by 10)
        # the raw output is kept as itself (negated here), the average as the candidate
        assert float(rule.output[0, 0, 0, 0]) == (-stop if expect_raw else stop)
    # without the raw output's loss the rule is the plain one
    plain, one = ValidationStop(window=3, patience=50), ValidationStop(3, 50, both=True)
    for it, a in zip(its, average):
        for rule in (plain, one):
            rule.update(int(it), torch.zeros(1, 1, 2, 2), heldout=torch.tensor([a]))
    assert int(plain.stop_iteration[0]) == int(one.stop_iteration[0])


def test_the_stall_guard_waits_through_a_flat_loss_and_stops_on_a_rise():
    # a stall (the loss within 0.04 % of its start for 400 iterations), then the fit learns (the
    # loss falls to a minimum at 700) and fits the noise (it rises again)
    its = np.arange(0, 1300, 10)
    loss = np.where(its < 400, 1.0 + 1e-6 * its, 0.5 + 0.5 * ((its - 700.0) / 300) ** 2)
    got = {}
    for rise in (0.0, 1e-3):
        rule = ValidationStop(window=3, patience=200, centred=True, min_rise=rise)
        for it, v in zip(its, loss):
            rule.update(int(it), torch.full((1, 1, 2, 2), float(it)), heldout=torch.tensor([v]))
        got[rise] = int(rule.stop_iteration[0])
    assert got[0.0] < 400            # without the guard the stall's minimum is where it stops
    assert got[1e-3] == 700          # with it, the minimum after the stall
    # a rise below the guard's margin at the patience's end: no stop yet, then the rise stops it
    rule = ValidationStop(window=1, patience=20, min_rise=0.1)
    vals = [1.0, 0.5, 0.52, 0.53, 0.54, 0.6]
    stopped = [bool(rule.update(10 * k, heldout=torch.tensor([v]))[0]) for k, v in enumerate(vals)]
    assert stopped == [False, False, False, False, False, True]
    assert int(rule.stop_iteration[0]) == 10
    with pytest.raises(ValueError, match="min_rise"):
        ValidationStop(min_rise=-1)
    assert VALIDATION_OPTIONS["min_rise"] > 0     # --stop validation's rule has the guard


def test_min_gain_keeps_the_first_output_of_a_flat_minimum_whatever_its_ripple():
    # the loss falls to a plateau 0.05 % deep (iterations 100–400) and then rises; where in the
    # plateau its lowest point falls is decided by a ripple (here two of them: two fits of the
    # same course under other rounding)
    its = np.arange(0, 700, 10)
    base = np.where(its < 100, 1.0 + 0.01 * (100 - its) / 100, 1.0)
    base = np.where(its > 400, 1.0 + 1e-4 * (its - 400), base)
    got = {}
    for gain in (0.0, 2e-3):
        for k, phase in enumerate((0.0, 2.0)):
            loss = base + np.where((its >= 100) & (its <= 400),
                                   5e-4 * (1 + np.sin(its / 50 + phase)) / 2, 0)
            rule = ValidationStop(window=1, patience=200, min_gain=gain)
            for it, v in zip(its, loss):
                rule.update(int(it), torch.full((1, 1, 2, 2), float(it)),
                            heldout=torch.tensor([v]))
            assert bool(rule.stopped[0])
            got[gain, k] = int(rule.stop_iteration[0])
            assert float(rule.output[0, 0, 0, 0]) == got[gain, k]   # the output given then
            # the patience counts from the true minimum: the stop comes at the same time
            assert int(rule.min_iteration[0]) >= got[gain, k]
    assert got[0.0, 0] != got[0.0, 1]                  # the ripple moves the plain minimum
    assert abs(got[0.0, 0] - got[0.0, 1]) >= 100
    assert got[2e-3, 0] == got[2e-3, 1] <= 100         # the first output within the margin
    with pytest.raises(ValueError, match="min_gain"):
        ValidationStop(min_gain=1)
    # --stop validation's rule keeps every new minimum; denoising's quick preset sets the margin
    from denoising import TASK
    assert "min_gain" not in VALIDATION_OPTIONS and TASK.quick["stop_min_gain"] > 0
    assert make_stop_rule("validation", 10, 0.01, 200, TASK.quick["stop_min_gain"]).min_gain > 0
    assert make_stop_rule("validation").min_gain == 0


def test_decide_at_end_stops_a_risen_loss_at_its_minimum_and_keeps_a_falling_ones_last():
    its = np.arange(0, 400, 10)
    risen = 1.0 + ((its - 250.0) / 100) ** 2 * 1e-2      # minimum at 250, +0.2 % at the end
    falling = 1.0 + (400.0 - its) * 1e-5                  # still falling at the end
    stall = np.full(its.shape, 1.0) + 1e-7 * (its % 20)    # flat within the guard's margin
    for loss, expect in ((risen, 250), (falling, None), (stall, None)):
        for end in (False, True):
            rule = ValidationStop(window=1, patience=200, min_rise=1e-3, decide_at_end=end)
            for it, v in zip(its, loss):
                assert not bool(rule.update(int(it), torch.full((1, 1, 2, 2), float(it)),
                                            heldout=torch.tensor([v]))[0])
            stopped = bool(rule.finish()[0])
            assert stopped == (end and expect is not None)
            if stopped:
                assert int(rule.stop_iteration[0]) == expect
                assert float(rule.output[0, 0, 0, 0]) == expect
    # the stopping benchmark's replay decides at the end as the fit does
    from benchmarks.stopping import replay
    rule = ValidationStop(window=1, patience=200, min_rise=1e-3, decide_at_end=True)
    assert replay(rule, its, horizon=400, heldout=risen) == (25, 400)
    plain = ValidationStop(window=1, patience=200, min_rise=1e-3)
    assert replay(plain, its, horizon=400, heldout=risen) == (len(its) - 1, 400)


def assert_output_is_the_rules_choice(run, res, x, stop):
    """The fit's output has the PSNR logged at ``stop`` for the candidate the rule kept (the raw
    output or the moving average)."""
    row = int(np.searchsorted(res.history["iteration"], stop))
    raw = bool(run.stop_rule.kept[0])
    logged = res.history["psnr_gt" if raw else "psnr_ema"][row, 0]
    assert float(psnr(res.output, x)[0]) == pytest.approx(logged, abs=1e-4), raw


def test_fit_with_the_validation_stop_keeps_the_rules_choice_at_its_stop():
    x = crop64()
    y = add_gaussian_noise(x, 25, seed=0)
    # the fit ends at the first host sync after the decision (stop + patience at the earliest:
    # later where the stall guard waits for the loss to rise): a horizon well past it, and syncs
    # every 10 iterations (where the stop falls depends on the CPU's rounding)
    cfg = FitConfig(iters=800, lr=0.01, quiet=True, stop="validation", stop_window=3,
                    stop_patience=20, log_every=2, use_ema=True, exp_weight=0.9, sync_every=10)
    run = Fit(tiny_net(channels=16), code(), IdentityTerm(y), cfg, target=x)
    res = run.run()
    stop = res.stop_iteration[0]
    assert stop is not None and res.holdout is not None
    assert stop + cfg.stop_patience <= res.iterations < cfg.iters
    held = res.history["heldout"][:, 0]
    assert np.isfinite(held).all()
    # the result is the rule's choice at the stop, whose PSNR was logged there: the moving average
    # or (--stop validation weighs both) the raw output, whichever held-out loss was lower there
    # (which one depends on the CPU's rounding: an EPYC kept the average, a Xeon the raw output)
    assert_output_is_the_rules_choice(run, res, x, stop)
    assert float(psnr(res.output, x)[0]) > float(psnr(y, x)[0]) + 2
    assert torch.equal(res.ema_output, res.output)   # the choice at the stop, not at the decision


def test_stop_decide_at_end_returns_a_risen_fits_minimum_instead_of_its_last_output():
    # a patience longer than the fit: without the option the fit returns its last output; with it,
    # a held-out loss risen by the end gives the output kept at its minimum (the preset's choice).
    # 600 iterations: at 400 the loss of this tiny fit had risen with one rounding and not yet with
    # another (EPYC, 2 threads: minimum at 396; 1 thread: 276); at 600 it has risen by 4-8 % in both
    x = crop64()
    y = add_gaussian_noise(x, 25, seed=0)
    res = {}
    for end in (False, True):
        cfg = FitConfig(iters=600, lr=0.01, quiet=True, stop="validation", stop_window=3,
                        stop_patience=10000, log_every=2, use_ema=True, exp_weight=0.9,
                        sync_every=10, stop_decide_at_end=end)
        run = Fit(tiny_net(channels=16), code(), IdentityTerm(y), cfg, target=x)
        assert run.stop_rule.decide_at_end is end
        res[end] = run.run()
        assert res[end].iterations == cfg.iters
    assert res[False].stop_iteration[0] is None
    assert torch.equal(res[False].output, res[False].ema_output)
    held = res[True].history["heldout"][:, 0]
    assert held[-1] > held.min() * (1 + VALIDATION_OPTIONS["min_rise"])   # the loss has risen
    stop = res[True].stop_iteration[0]
    assert stop is not None and stop < cfg.iters - 50
    assert not torch.equal(res[True].output, res[False].output)
    # the output is the rule's choice at that iteration, whose PSNR was logged there
    assert_output_is_the_rules_choice(run, res[True], x, stop)
    from denoising import TASK
    assert TASK.quick["stop_decide_at_end"] and not FitConfig().stop_decide_at_end
    assert make_stop_rule("validation", decide_at_end=True).decide_at_end


def test_a_stopped_members_moving_average_is_frozen(monkeypatch):
    from utils.fit import Fit      # the loop runs on to its next host sync, as on a GPU
    monkeypatch.setattr(Fit, "all_stopped", lambda self, i: False)
    x = crop64().expand(2, -1, -1, -1)
    y = add_gaussian_noise(x, 25, seed=0)
    cfg = FitConfig(iters=60, lr=0.01, quiet=True, stop="ratio", stop_window=2, stop_eps=1e9,
                    log_every=1, use_ema=True, sync_every=60)
    res = fit([tiny_net(0), tiny_net(1)], torch.cat([code(0), code(1)]), IdentityTerm(y), cfg)
    assert res.stop_iteration == [3, 3] and res.iterations == 60
    # frozen at the stop: the average kept is the one of iteration 3, not of iteration 59
    assert torch.equal(res.ema_output, res.output)


# ------------------------------------------------------------------ --lambda auto
def test_lambda_auto_members_each_keep_their_own_bound():
    cfg, _ = denoising_cfg(ln_lambda="auto", channels=8)
    nets, codes = make_nets(cfg, 3, (64, 64))
    assert len(nets) == len(LAMBDA_AUTO) and torch.equal(codes[0], codes[-1])
    bounds = [next(m for m in n.modules() if isinstance(m, LipschitzConv2d)).bound.item()
              for n in nets]
    assert bounds == pytest.approx([1.2, 1.4, 1.8, 2.4, math.inf])
    # batched with vmap, each member is its own net (the λ buffer is stacked, not shared)
    from utils.members import Members
    batched = Members(nets, "cpu")(codes)
    for m, net in enumerate(nets):
        assert torch.allclose(batched[m], net(codes[m:m + 1])[0], atol=1e-5)
    assert not torch.allclose(batched[0], batched[-1])


def denoising_cfg(**given):
    from utils.config import check_config, resolve_config
    cfg, _ = resolve_config(denoising.TASK, {"quiet": True, **given}, "quick")
    return cfg, check_config(denoising.TASK, cfg)


def test_choose_lambda_takes_the_lowest_heldout_loss_at_each_stop():
    its = np.arange(0, 100, 10)
    held = np.stack([np.linspace(3, 1, 10), np.linspace(2, 2, 10), np.linspace(5, 0.5, 10)], 1)
    res = FitResult(output=torch.zeros(3, 1, 4, 4), last_output=None, ema_output=None,
                    stop_iteration=[None, 40, 20], best_iteration=[None] * 3, best_output=None,
                    history={"heldout": held, "iteration": its}, iterations=100, seconds=1,
                    its_per_sec=1, device="cpu")
    choose_lambda(res, [1.2, 1.8, None], window=2)
    # member 2 stopped at 20 (loss ~4.5 there), member 0 ran to the end (~1.1): λ 1.2 wins
    assert res.chosen == [0] and res.selection["lambda"] == "1.2"
    assert res.selection["heldout"]["none"] > res.selection["heldout"]["1.2"]
    # a window longer than the fit: the later half of the logged values, not the untrained
    # net's first ones (over all 10, the flat 1.6 of λ 1.8 would beat λ 1.2's mean 2.0)
    res.history["heldout"] = np.stack([np.linspace(3, 1, 10), np.full(10, 1.6)], 1)
    res.stop_iteration = [None, None]
    choose_lambda(res, [1.2, 1.8], window=10)
    assert res.selection["lambda"] == "1.2"
    assert res.selection["heldout"]["1.2"] == pytest.approx(np.linspace(3, 1, 10)[5:].mean())
    # an exact tie is a bound that never acted: the least control of the tied is named
    res.history["heldout"] = np.stack([np.full(10, 2.0), np.full(10, 1.0), np.full(10, 1.0)], 1)
    res.output, res.stop_iteration = torch.zeros(3, 1, 4, 4), [None] * 3
    choose_lambda(res, [1.8, 2.4, None], window=2)
    assert res.selection["lambda"] == "none" and res.chosen == [2]
    choose_lambda(res, [1.8, 2.4, 3.0], window=2)
    assert res.selection["lambda"] == "3"


def test_lambda_and_sigma_auto_on_the_command_line(tmp_path, capsys):
    rng = np.random.RandomState(0)
    clean = data.camera()[200:264, 200:264].astype(np.float64)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    from PIL import Image
    Image.fromarray(noisy).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    code_ = main(denoising.TASK, ["--image", str(tmp_path / "photo.png"), "--out", str(out),
                                  "--observed", "--sigma", "auto", "--lambda", "auto",
                                  "--stop", "validation", "--iters", "20", *TINY])
    assert code_ == 0
    rec = json.loads((out / "photo" / "summary.json").read_text())
    assert 15 < rec["sigma_estimate"] < 25
    assert rec["lambda_chosen"] in {"1.2", "1.4", "1.8", "2.4", "none"}
    assert rec["heldout_loss"] > 0
    # each member names its λ and the held-out loss that chose: the chosen λ's is the least
    lam = {m["lambda"]: m["heldout_at_stop"] for m in rec["members"]}
    assert list(lam) == ["1.2", "1.4", "1.8", "2.4", "none"]
    assert lam[rec["lambda_chosen"]] == min(lam.values())
    assert "heldout" in (out / "photo" / "log.csv").read_text().splitlines()[0]
    capsys.readouterr()
    assert main(denoising.TASK, ["--sigma", "auto", "--out", str(tmp_path / "o2"), *TINY]) == 2
    assert "--observed" in capsys.readouterr().err
    import deblurring
    assert main(deblurring.TASK, ["--sigma", "auto", "--out", str(tmp_path / "o4"), *TINY]) == 2
    assert "not offered by deblurring.py" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(denoising.TASK, ["--lambda", "big", "--out", str(tmp_path / "o3"), *TINY])
    assert e.value.code == 2 and "a number or auto" in capsys.readouterr().err


def test_estimate_sigma_on_synthetic_noise():
    """Within 10 % where the noise is not clipped (a clipped σ-50 noise is weaker: it reads
    lower, as it is)."""
    clean = data.camera().astype(np.float32) / 255 * 0.5 + 0.25
    for s in (15, 25, 50):
        noisy = add_gaussian_noise(clean[..., None], s, seed=0)
        assert estimate_sigma(noisy) * 255 == pytest.approx(s, rel=0.1)
    rgb = add_gaussian_noise(data.astronaut().astype(np.float32) / 255 * 0.5 + 0.25, 25, seed=1)
    assert estimate_sigma(rgb) * 255 == pytest.approx(25, rel=0.1)


# ------------------------------------------------------------------ restarts
def test_restarts_write_their_spread_and_an_uncertainty_map(tmp_path):
    from PIL import Image
    Image.fromarray(data.astronaut()[150:214, 180:244]).save(tmp_path / "face.png")
    out = tmp_path / "out"
    assert main(denoising.TASK, ["--image", str(tmp_path / "face.png"), "--out", str(out),
                                 "--restarts", "2", "--iters", "12", *TINY]) == 0
    rec = json.loads((out / "face" / "summary.json").read_text())
    each = [float(v) for v in rec["psnr_members"].split(" / ")]
    assert len(each) == 2 and rec["psnr_spread"] == pytest.approx(max(each) - min(each), abs=0.011)
    assert rec["uncertainty_mean"] > 0
    with Image.open(out / "face" / "uncertainty.png") as im:
        assert im.size == (64, 64)


def test_uncertainty_map_is_the_members_deviation():
    outs = torch.zeros(2, 3, 8, 8)
    outs[1] = 0.1
    res = FitResult(output=outs, last_output=None, ema_output=None, stop_iteration=[None] * 2,
                    best_iteration=[None] * 2, best_output=None, history={}, iterations=1,
                    seconds=1, its_per_sec=1, device="cpu")
    m = uncertainty_map(res, (8, 6))
    assert m.shape == (8, 6, 1) and np.allclose(m, 0.1 / math.sqrt(2) / 0.1)
    assert uncertainty_map(FitResult(**{**res.__dict__, "output": outs[:1]}), (8, 8)) is None


# ------------------------------------------------------------------ the benchmark
def toy_scale(bench, monkeypatch, iters, sigma, **settings):
    """A cached benchmark (stopping, decay) at toy scale: one gray and one colour 64² crop, one σ,
    an 8-channel net, a window of 2 logs and a patience of 6."""
    for name, value in dict(ITERS=iters, WINDOW=2, PATIENCE=6, GRAY=("camera",),
                            COLOUR=("astronaut",), SIGMAS=(sigma,)).items():
        monkeypatch.setattr(bench, name, value)
    monkeypatch.setattr(bench, "SETTINGS", {**bench.SETTINGS, "iters": iters, "channels": 8,
                                            "log_every": 2, "crop": 64, **settings})


def test_stopping_benchmark_at_toy_scale(tmp_path, monkeypatch):
    import benchmarks.stopping as b
    toy_scale(b, monkeypatch, 40, 25.0, stop_window=2, stop_patience=6)
    recs = b.main(["--cache", str(tmp_path / "c"), "--out", str(tmp_path / "s.md"),
                   "--parts", "rules", "lambda"])
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == "rule,mean_gap_db,max_gap_db,mean_iterations"
    assert [r.split(",")[0] for r in rows[1:]] == [
        "ratio", "variance", "validation", "validation_centred", "validation_both",
        "validation_centred_both", "last", "lambda auto"]
    for r in (r for r in recs if r["part"] == "rules"):
        assert all(r[k]["gap"] >= -1e-9 for k in b.RULES)    # nothing beats the oracle
        assert r["last"]["iteration"] == r["_its"][-1]
        assert len(r["_held_raw"]) == len(r["_held"]) == len(r["_its"])
        for k in b.RULES:    # the PSNR of what the rule kept: the raw output's or the average's
            row = b.row_of(np.array(r["_its"]), r[k]["iteration"])
            assert r[k]["psnr"] == (r["_p_it"] if r[k]["raw"] else r["_p_ema"])[row]
        assert not r["validation"]["raw"] and not r["validation_centred"]["raw"]
        # the window sweep's replay is the rule the fit ran: at the rule's window, its gap (the
        # sweep itself replays --stop validation's rule, the same with the stall guard)
        assert b.window_gaps(r, b.WINDOW, b.VALIDATION["validation_centred_both"]) == \
            pytest.approx(r["validation_centred_both"]["gap"])
    text = (tmp_path / "s.md").read_text()
    assert "## Targets" in text and "lambda auto" in text
    assert "## The validation rule's window" in text and "meet both targets" in text
    # the min_gain sweep: each (min_gain, decide at the end) pair, the rule's own marked once;
    # nothing it keeps beats the oracle
    rules = [r for r in recs if r["part"] == "rules"]
    for g in b.GAIN_SWEEP:
        for end in (False, True):
            opts = {**VALIDATION_OPTIONS, "min_gain": g, "decide_at_end": end}
            assert all(b.window_gaps(r, b.WINDOW, opts) >= -1e-9 for r in rules)
    section = text.split("## The validation rule's min_gain and decision at the end")[1]
    assert section.count("(--stop validation's default)") == 1
    assert section.count("(denoising's quick preset)") == 1
    assert section.count("\n| 0") == 2 * len(b.GAIN_SWEEP)
    # a second call resumes from the cache: nothing is fitted again
    monkeypatch.setattr(b, "run_rules", lambda *a, **k: pytest.fail("refitted"))
    b.main(["--cache", str(tmp_path / "c"), "--out", str(tmp_path / "s.md"),
            "--parts", "rules"])


@pytest.mark.cuda
def test_validation_stop_and_heldout_loss_on_cuda():
    """The data term moves to the GPU with the fit; the held-out loss after it must follow."""
    from tasks import restore
    x = data.camera()[200:264, 200:264]
    r = restore(x, observed=False, device="cuda", iters=30, channels=8, log_every=2,
                stop="validation", stop_window=2, stop_patience=4, restarts=1)
    assert r.metrics["heldout_loss"] > 0 and r.metrics["psnr"] > 0


def test_decay_benchmark_at_toy_scale(tmp_path, monkeypatch):
    import benchmarks.decay as d
    toy_scale(d, monkeypatch, 30, 50.0)
    out = tmp_path / "decay.md"
    # one shard stops after 3 fits: the report says that no case is complete yet
    d.main(["--cache", str(tmp_path / "c"), "--out", str(out), "--max-fits", "3"])
    assert "No case is complete yet" in out.read_text()
    recs = d.main(["--cache", str(tmp_path / "c"), "--out", str(out)])
    assert len(recs) == 2 * len(d.REMEDIES)
    for r in recs.values():
        assert len(r["_its"]) == len(r["_p_it"]) == len(r["_held"]) == len(r["_held_raw"]) == 15
    text = out.read_text()
    assert "**2 of 2 cases**" in text and "## Stop rules on the best remedy" in text
    rows = out.with_suffix(".csv").read_text().splitlines()
    assert [r.split(",")[:2] for r in rows[1:]] == [["50", r] for r in d.REMEDIES]
    for r in rows[1:]:       # the peak is at least the end: decay ≥ 0
        peak, end, decay = (float(v) for v in r.split(",")[2:5])
        assert peak >= end and decay == pytest.approx(peak - end, abs=1e-3)
    # the remedies differ in what they fit: the spectral objective's course is not the MSE's
    a, b = recs["camera", 50.0, "none"], recs["camera", 50.0, "spectral"]
    assert a["_p_it"] != b["_p_it"]
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr(d, "run_fit", lambda *a, **k: pytest.fail("refitted"))
    d.main(["--cache", str(tmp_path / "c"), "--out", str(out)])


def test_decay_report_per_sigma(tmp_path, monkeypatch):
    """Two σ: a row per remedy for each σ, then over all; 'holds' counts the cases whose decay
    is at most HOLDS dB; the stop rules are replayed per σ on the best remedy."""
    import benchmarks.decay as d
    monkeypatch.setattr(d, "GRAY", ("camera",))
    monkeypatch.setattr(d, "COLOUR", ("astronaut",))
    its = list(range(0, d.ITERS + 1, 100))
    rng = np.random.default_rng(0)
    recs = {}
    for n, s, remedy in d.cases():
        # a course that rises to 30 dB at iteration 500 and falls by `drop` to the end
        drop = {"none": 6.0, "lambda_1.0": 0.6}.get(remedy, 3.0) * (2 if s == 50 else 1)
        p = [30 - abs(i - 500) / 500 * (5 if i < 500 else drop * 500 / 1500) for i in its]
        held = [1e-3 + (30 - v) * 1e-4 for v in p]     # the held-out loss follows the MSE
        recs[(n, s, remedy)] = dict(_its=its, _p_it=p, _p_ema=p, _held=held, _held_raw=held,
                                    _ratio=list(rng.uniform(0.5, 1.5, len(its))),
                                    variance=None, seconds=1.0, image=n, sigma=s,
                                    remedy=remedy)
    out = tmp_path / "decay.md"
    d.report(recs, ["--report-only"], out)
    rows = [r.split(",") for r in out.with_suffix(".csv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == ["50"] * 9 + ["25"] * 9 + ["all"] * 9
    got = {(r[0], r[1]): r for r in rows}
    assert float(got["50", "none"][4]) == pytest.approx(12.0)
    assert float(got["25", "none"][4]) == pytest.approx(6.0)
    assert float(got["all", "none"][4]) == pytest.approx(9.0)
    assert got["all", "lambda_1.0"][6:8] == ["2", "4"]      # holds on σ 25 (0.6), not σ 50 (1.2)
    assert got["25", "lambda_1.0"][6:8] == ["2", "2"] and got["50", "none"][6] == "0"
    text = out.read_text()
    assert "**4 of 4 cases**" in text and "best remedy at the horizon: lambda_1.0" in text
    assert "| 25 | validation_centred_both |" in text and "| all | ratio |" in text
    per_case = [line for line in text.splitlines() if line.startswith("| camera σ 25 |")]
    assert len(per_case) == 1 and per_case[0].split(" | ")[2:4] == ["6.00", "0.60"]
