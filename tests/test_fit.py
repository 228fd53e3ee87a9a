"""utils/fit.py: the loop denoises, stops, keeps an EMA, backtracks, survives NaN and Ctrl-C,
and batched fits equal sequential ones."""
import numpy as np
import pytest
import torch
from skimage import data

from models import build_net, make_input
from utils.fit import FitConfig, fit
from utils.metrics import psnr
from utils.physics import IdentityTerm, MaskedTerm, add_gaussian_noise, bernoulli_mask


def crop64(gray=False):
    a = data.camera()[180:244, 220:284] if gray else data.chelsea()[50:114, 100:164]
    a = a.astype(np.float32) / 255
    a = a[..., None] if gray else a
    return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()


def tiny_net(seed=0, out=3, channels=16, dtype=torch.float32):
    torch.manual_seed(seed)
    return build_net("decoder", 8, out, channels=channels).to(dtype)


def code(seed=0):
    return make_input("fourier", 8, 2, 2, var=1, generator=torch.Generator().manual_seed(seed))


def cfg(**kw):
    base = dict(iters=150, lr=0.01, quiet=True, stop="none", log_every=1)
    return FitConfig(**{**base, **kw})


def test_denoising_gains_2db_in_150_iterations():
    x = crop64()
    y = add_gaussian_noise(x, 25, seed=0)
    res = fit(tiny_net(channels=32), code(), IdentityTerm(y), cfg(lr=0.002), target=x)
    before = float(psnr(y, x)[0])
    after = float(psnr(res.output, x)[0])
    assert after >= before + 2, (before, after)
    h = res.history
    assert h["iteration"].tolist() == list(range(150))
    assert h["psnr_gt"][-1, 0] == pytest.approx(after, abs=0.5)
    assert np.all((h["fbc1"] >= 0) & (h["fbc1"] <= 1)) and np.isfinite(h["ratio"]).all()
    assert res.best_iteration[0] is not None and res.iterations == 150


def test_ratio_stop_ends_early_and_says_where():
    x = crop64()
    # ε far above any change of the ratio: a plateau from the start, so the rule fires as soon
    # as 2n evaluations exist, i.e. at the iteration of evaluation 2n (log_every 2, n 5 -> 18)
    res = fit(tiny_net(), code(), IdentityTerm(x),
              cfg(iters=200, stop="ratio", stop_window=5, stop_eps=1e6, log_every=2,
                  sync_every=10), target=x)
    assert res.stop_iteration == [18]
    # on a CPU the loop ends at the measure that stopped it (it ran on to the next host sync, 20,
    # and with the default sync_every of 100 up to 99 iterations of work nothing used)
    assert res.iterations == 19
    assert res.history["iteration"][-1] == 18


def test_ema_with_zero_weight_is_the_last_output():
    x = crop64()
    res = fit(tiny_net(), code(), IdentityTerm(x), cfg(iters=5, exp_weight=0.0))
    assert torch.equal(res.ema_output, res.last_output)
    res = fit(tiny_net(), code(), IdentityTerm(x), cfg(iters=5, exp_weight=0.99))
    assert not torch.equal(res.ema_output, res.last_output)


def test_the_warmed_up_average_forgets_the_first_outputs():
    """ema_warmup: weight min(w, (1+t)/(10+t)); the average of a fit then holds the unfitted
    first outputs at a far smaller weight, so it is nearer the late outputs (here: the clean
    image the net is fitted to) than DIP's average from the first output."""
    from utils.fit import ema_weight
    c = cfg(exp_weight=0.99, ema_warmup=True)
    assert ema_weight(c, 0) == pytest.approx(0.1) and ema_weight(c, 90) == pytest.approx(0.91)
    assert ema_weight(c, 5000) == 0.99 and ema_weight(cfg(exp_weight=0.99), 0) == 0.99
    x = crop64()
    plain = fit(tiny_net(), code(), IdentityTerm(x), cfg(iters=120))
    warm = fit(tiny_net(), code(), IdentityTerm(x), cfg(iters=120, ema_warmup=True))
    assert torch.equal(plain.last_output, warm.last_output)     # the fit itself is the same
    assert float(psnr(warm.ema_output, x)[0]) > float(psnr(plain.ema_output, x)[0]) + 1


class SpikeTerm(IdentityTerm):
    """Reports a 10 dB PSNR drop (or a NaN loss) at chosen measure calls."""

    def __init__(self, y, spike_at=(), nan_from=None):
        super().__init__(y)
        self.calls, self.spike_at, self.nan_from = 0, set(spike_at), nan_from

    def psnr_of(self, ax):  # the monitor the loop calls at each measure
        p = super().psnr_of(ax)
        self.calls += 1
        return p - 10 if self.calls - 1 in self.spike_at else p

    def loss(self, x):
        loss = super().loss(x)
        if self.nan_from is not None and self.calls >= self.nan_from:
            return loss * float("nan")
        return loss


def _weights(net):
    return [p.detach().clone() for p in net.parameters()]


def test_backtracking_restores_the_checkpoint():
    x = crop64()
    ref = tiny_net()
    fit(ref, code(), IdentityTerm(x), cfg(iters=4))
    net = tiny_net()
    fit(net, code(), SpikeTerm(x, spike_at={5}), cfg(iters=6))
    for a, b in zip(_weights(ref), _weights(net)):
        assert torch.equal(a, b)  # iteration 5's drop put back the weights of iteration 4
    net2 = tiny_net()
    fit(net2, code(), SpikeTerm(x, spike_at={5}), cfg(iters=6, backtrack=False))
    assert not all(torch.equal(a, b) for a, b in zip(_weights(ref), _weights(net2)))


def test_backtracking_between_the_measures_makes_the_fit_independent_of_the_log():
    """backtrack_every=1: a drop at an iteration that is not logged is caught (DIP's code checks
    at every iteration), so the weights do not depend on log_every; the default, checks at the
    measures only, misses it."""
    x = crop64()
    ref = tiny_net()
    fit(ref, code(), IdentityTerm(x), cfg(iters=4))
    for log_every in (1, 4):
        net = tiny_net()
        res = fit(net, code(), SpikeTerm(x, spike_at={5}),
                  cfg(iters=6, log_every=log_every, backtrack_every=1))
        assert res.restores == [1]
        assert res.history["iteration"].tolist() == list(range(0, 6, log_every))
        for a, b in zip(_weights(ref), _weights(net)):
            assert torch.equal(a, b)
    net = tiny_net()
    res = fit(net, code(), SpikeTerm(x, spike_at={5}), cfg(iters=6, log_every=4))
    assert res.restores == [0]          # checked at iterations 0 and 4 only, not at 5
    assert not all(torch.equal(a, b) for a, b in zip(_weights(ref), _weights(net)))


def test_the_halved_step_size_recovers_with_backtrack_recover():
    """A restore halves the step size; with backtrack_recover=n it doubles back over n checks
    without a drop (never above 1); without, the halving stays."""
    from utils.fit import Fit
    x = crop64()
    scales = {}
    for n in (0, 2, 4):
        f = Fit(tiny_net(), code(), SpikeTerm(x, spike_at={3}), cfg(iters=7, backtrack_recover=n))
        assert f.run().restores == [1]
        scales[n] = float(f.adam.scale[0])
    # the restore at iteration 3, then 3 good checks (4, 5, 6)
    assert scales[0] == 0.5 and scales[2] == 1.0
    assert scales[4] == pytest.approx(0.5 * 2 ** (3 / 4))


def test_nan_loss_twice_stops_with_the_last_good_output():
    x = crop64()
    term = SpikeTerm(x, nan_from=3)
    res = fit(tiny_net(), code(), term, cfg(iters=50, sync_every=5))
    assert any("NaN" in w for w in res.warnings)
    assert res.iterations == 5
    assert torch.isfinite(res.output).all()
    ref = fit(tiny_net(), code(), IdentityTerm(x), cfg(iters=3))
    assert torch.equal(res.output, ref.last_output)  # the output of the last good iteration


def test_ctrl_c_returns_what_was_done():
    x = crop64()

    def interrupt(i, out):
        if i >= 9:
            raise KeyboardInterrupt

    res = fit(tiny_net(), code(), IdentityTerm(x), cfg(iters=100, sync_every=10),
              callbacks=[interrupt])
    assert res.interrupted and res.iterations == 10
    assert len(res.history["iteration"]) == 10 and res.output.shape == x.shape


def test_batched_fits_equal_sequential_fits_float64():
    x = crop64().double()
    nets = [tiny_net(s, dtype=torch.float64) for s in range(2)]
    codes = torch.cat([code(s) for s in range(2)]).double()
    c = cfg(iters=10, lr=0.001)
    batched = fit(nets, codes, IdentityTerm(x.expand(2, -1, -1, -1)), c)
    seq = torch.cat([fit(tiny_net(s, dtype=torch.float64), codes[s:s + 1], IdentityTerm(x),
                         c).last_output for s in range(2)])
    assert (batched.last_output - seq).abs().max() < 1e-6


def test_batched_members_are_independent_in_fp32():
    x = crop64()
    other = torch.rand_like(x)
    codes = torch.cat([code(0), code(1)])
    c = cfg(iters=10, lr=0.001)
    a = fit([tiny_net(0), tiny_net(1)], codes, IdentityTerm(torch.cat([x, x])), c)
    b = fit([tiny_net(0), tiny_net(1)], codes, IdentityTerm(torch.cat([x, other])), c)
    assert torch.equal(a.last_output[0], b.last_output[0])
    assert not torch.equal(a.last_output[1], b.last_output[1])


def test_batched_stop_freezes_the_stopped_member(monkeypatch):
    from utils.fit import Fit      # the loop runs on to its next host sync, as on a GPU
    monkeypatch.setattr(Fit, "all_stopped", lambda self, i: False)
    x = crop64()
    nets = [tiny_net(0), tiny_net(1)]
    codes = torch.cat([code(0), code(1)])
    res = fit(nets, codes, IdentityTerm(torch.cat([x, x])),
              cfg(iters=40, stop="ratio", stop_window=3, stop_eps=1e6, sync_every=40))
    assert res.stop_iteration == [5, 5] and res.iterations == 40
    # 34 more Adam steps ran, yet each member's weights are those that gave its stop output
    with torch.no_grad():
        for m in range(2):
            assert torch.allclose(nets[m](codes[m:m + 1])[0], res.output[m], atol=1e-6)


def test_the_spectral_objective_denoises_and_is_the_fit_s_loss():
    x = crop64()
    y = add_gaussian_noise(x, 25, seed=0)
    res = fit(tiny_net(channels=32), code(), IdentityTerm(y), cfg(lr=0.002, loss="spectral"),
              target=x)
    assert float(psnr(res.output, x)[0]) >= float(psnr(y, x)[0]) + 2
    # the logged loss is the spectral objective of the output, not its MSE
    last = res.last_output
    spectral = IdentityTerm(y).with_objective("spectral").loss(last)
    assert res.history["loss"][-1, 0] == pytest.approx(float(spectral[0]), rel=0.05)
    assert abs(res.history["loss"][-1, 0] - float(IdentityTerm(y).loss(last)[0])) > 0.01
    with pytest.raises(ValueError, match="unknown loss"):
        fit(tiny_net(), code(), IdentityTerm(y), cfg(iters=1, loss="l1"))


def test_inpainting_beats_mean_fill_by_3db():
    x = crop64(gray=True)
    known = torch.from_numpy(bernoulli_mask(64, 64, 0.5, 100)).float()[None]
    y = x * known
    fill = torch.where(known > 0, x, x[known > 0].mean())
    res = fit(tiny_net(out=1, channels=32), code(), MaskedTerm(y, known), cfg(iters=200),
              target=x)
    gain = float(psnr(res.output, x)[0] - psnr(fill, x)[0])
    assert gain >= 3, gain


def test_lbfgs_option_runs():
    x = crop64()
    res = fit(tiny_net(), code(), IdentityTerm(x), cfg(iters=105, optimizer="lbfgs", lr=0.1,
                                                        sync_every=50))
    assert res.iterations == 105 and torch.isfinite(res.output).all()


def test_member_adam_is_adam():
    """MemberAdam on a flat (M, N) buffer follows torch.optim.Adam row by row; a member's
    restored state (weights, moments, step count) resumes exactly, and its scale halves only
    its own steps."""
    from utils.members import MemberAdam
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(2, 50, generator=g, dtype=torch.float64)
    target = torch.randn(2, 50, generator=g, dtype=torch.float64)
    flat = w0.clone().requires_grad_(True)
    ref = w0.clone().requires_grad_(True)
    ours, theirs = MemberAdam(flat, 0.01), torch.optim.Adam([ref], lr=0.01)
    for _ in range(20):
        for p, opt in ((flat, ours), (ref, theirs)):
            opt.zero_grad()
            ((p - target) ** 4).sum().backward()
            opt.step()
    assert torch.allclose(flat, ref, rtol=1e-12, atol=1e-12)
    ckpt = ours.state()
    before = flat.detach().clone()
    for _ in range(3):  # three more steps, then member 1 goes back: exactly to where it was
        ours.zero_grad()
        ((flat - target) ** 4).sum().backward()
        ours.step()
    ours.load(ckpt, torch.tensor([False, True]))
    assert torch.equal(flat[1], before[1]) and not torch.equal(flat[0], before[0])
    assert ours.steps.tolist() == [23, 20]
    ours.scale = torch.tensor([1.0, 0.5], dtype=torch.float64)
    start = flat.detach().clone()
    ours.zero_grad()
    ((flat - target) ** 4).sum().backward()
    grad = flat.grad.clone()
    ours.step()
    other = MemberAdam(start.clone().requires_grad_(True), 0.01)
    other.m, other.v, other.steps = [t.clone() for t in (ours.m, ours.v, ours.steps)]
    # same moments after the step: member 1's move is half of what a full step would be
    step1 = (flat - start)[1]
    full = -0.01 * (ours.m[1] / (1 - 0.9 ** 21)) / ((ours.v[1] / (1 - 0.999 ** 21)).sqrt() + 1e-8)
    assert torch.allclose(step1, 0.5 * full, rtol=1e-9) and grad.abs().sum() > 0


def test_member_adam_warmup_scales_the_first_steps_linearly():
    """warmup n: member step t moves t/n of plain Adam's step (for t < n), then the same (the
    step count is per member and restored with its checkpoint, so is the warm-up's point)."""
    from utils.members import MemberAdam
    g = torch.Generator().manual_seed(1)
    w0, target = (torch.randn(2, 30, generator=g, dtype=torch.float64) for _ in range(2))
    plain_w, warm_w = (w0.clone().requires_grad_(True) for _ in range(2))
    plain, warm = MemberAdam(plain_w, 0.01), MemberAdam(warm_w, 0.01, warmup=4)
    for t in range(1, 7):
        moves = []
        for w, opt in ((plain_w, plain), (warm_w, warm)):
            start = w.detach().clone()
            opt.zero_grad()
            ((w - target) ** 2).sum().backward()
            opt.step()
            moves.append(w.detach() - start)
            w.data.copy_(start)          # both from the same point: compare one step only
        assert torch.allclose(moves[1], min(1, t / 4) * moves[0], rtol=1e-9, atol=0)
    # member 1 goes back to a checkpoint at step 1: its next step is step 2 of the warm-up, half
    # of Adam's with the same moments; member 0, past the warm-up, moves a full step
    ckpt = [t.clone() for t in warm.state()]
    ckpt[3] = torch.tensor([6.0, 1.0], dtype=torch.float64)
    warm.load(ckpt, torch.tensor([False, True]))
    ref = MemberAdam(warm_w.detach().clone().requires_grad_(True), 0.01)
    ref.m, ref.v, ref.steps = [t.clone() for t in (warm.m, warm.v, warm.steps)]
    moves = []
    for w, opt in ((warm_w, warm), (ref.flat, ref)):
        start = w.detach().clone()
        opt.zero_grad()
        ((w - target) ** 2).sum().backward()
        opt.step()
        moves.append(w.detach() - start)
    assert torch.allclose(moves[0][0], moves[1][0], rtol=1e-9, atol=0)
    assert torch.allclose(moves[0][1], 0.5 * moves[1][1], rtol=1e-9, atol=0)


def test_a_collapsed_fit_recovers():
    """#13's grayscale inpainting case: at the quick preset's lr 0.005 the decoder's sigmoid
    saturates to black within 10 iterations (camera, seed 0).  Without backtracking the fit
    stays there; with it the checkpoint comes back with its Adam state at half the step size."""
    from tasks import restore
    camera = data.camera()
    kw = dict(task="inpainting", observed=False, preset="quick", iters=60, lr=0.005, seed=0,
              crop=128)
    dead = restore(camera, backtrack=False, **kw)
    assert dead.metrics["psnr"] < dead.metrics["psnr_in"]            # below the mean fill
    live = restore(camera, **kw)
    assert live.fit.restores[0] >= 1
    obs = live.history["psnr_obs"][:, 0]
    assert obs[-1] >= np.nanmax(obs) - 5                              # not below its best
    assert live.metrics["psnr"] > live.metrics["psnr_in"] + 3


def test_the_logged_psnr_to_the_observation_is_the_loss_s_on_a_padded_image():
    """A dark 24×24 crop is padded to the net's 64×64, and the validation rule takes the padding
    out of the loss: the log's psnr_obs read 1.8 dB beside a loss worth 28.5 (it counted the
    padding, which also hid the image's collapse from the backtracking: an all-black output)."""
    from tasks import restore
    r = restore(data.astronaut()[200:224, 200:224], task="denoising", observed=False, iters=40,
                channels=16)
    assert r.config["stop"] == "validation"
    h = r.history
    assert np.allclose(h["psnr_obs"][1:, 0], -10 * np.log10(h["loss"][1:, 0]), atol=0.5)


def test_a_checkpoint_keeps_a_margin_from_the_collapse():
    """A state 2 points short of the collapse line (half of A f(z) at 0 or 1) is neither
    restored nor kept as the checkpoint: judged again after a restore, a rounding could put it
    past the line, and the fit would restore the same state for ever (a bf16 fit of hubble
    did, 60 times).  10 points short, it is kept; past the line, it is restored."""
    from utils.fit import Fit
    x = crop64()
    f = Fit(tiny_net(), code(), IdentityTerm(x), cfg(iters=1))
    n = x[0].numel()

    def judge(frac):
        out = x.clone().reshape(1, -1)
        out[0, :int(frac * n)] = 0.0                # this fraction saturated at 0
        out = out.reshape(x.shape)
        before = [t.clone() for t in f.ckpt]
        f.adam.flat.data.add_(1.0)                  # a state unlike the checkpoint's
        p_obs = torch.tensor([20.0])
        f.backtrack(torch.tensor([0.01]), p_obs, out, out)
        kept = not torch.equal(f.ckpt[0], before[0])
        return bool(f.restore[0]), kept

    assert judge(0.40) == (False, True)
    assert judge(0.48) == (False, False)
    assert judge(0.55) == (True, False)


@pytest.mark.parametrize("task", ["inpainting", "deblocking"])
def test_grayscale_quick_presets_do_not_collapse(task):
    """The quick presets of the two tasks #13 found collapsing on a grayscale crop (camera):
    after 80 iterations the fit is well on its way (a collapsed one stays near 9 dB)."""
    from tasks import restore
    r = restore(data.camera(), task=task, observed=False, preset="quick", iters=80, crop=128)
    assert r.history["psnr_gt"][-1, 0] > 18
    assert np.isfinite(r.array).all() and 0.02 < r.array.mean() < 0.98


def test_run_on_fits_past_the_stop_and_keeps_the_stops_output():
    """--run-on: the rule's choice is the result; the fit, the log and the oracle go on to
    iters (what a stopped fit cannot say: the peak after the stop, the PSNR at the end)."""
    x = crop64()
    y = add_gaussian_noise(x, 25, seed=0)
    kw = dict(iters=60, stop="ratio", stop_window=2, stop_eps=1e9, lr=0.005, sync_every=5)
    stopped = fit(tiny_net(), code(), IdentityTerm(y), cfg(**kw), target=x)
    going = fit(tiny_net(), code(), IdentityTerm(y), cfg(**kw, run_on=True), target=x)
    assert stopped.stop_iteration == going.stop_iteration == [3]
    assert stopped.iterations < 60 and going.iterations == 60
    assert len(going.history["iteration"]) == 60
    assert torch.equal(going.output, stopped.output)          # the stop's output, bit for bit
    assert torch.equal(going.ema_output, stopped.ema_output)  # the average frozen at the stop
    assert not torch.equal(going.last_output, going.output)   # the fit went on
    assert going.best_iteration[0] > 3                         # the oracle saw past the stop
    assert float(psnr(going.last_output, x)[0]) > float(psnr(going.output, x)[0])


def test_a_fit_past_the_deadline_stops_at_its_next_sync_and_is_marked_interrupted():
    """reproduce --budget-s guards a lease's end: a fit whose time estimate was short stops."""
    import time

    from utils.device import fit_deadline
    x = crop64()
    with fit_deadline(time.monotonic() - 1):
        res = fit(tiny_net(), code(), IdentityTerm(x), cfg(iters=50, sync_every=10))
    assert res.interrupted and res.iterations == 10
    assert any("time limit" in w for w in res.warnings)
    res = fit(tiny_net(), code(), IdentityTerm(x), cfg(iters=20, sync_every=10))   # restored
    assert not res.interrupted and res.iterations == 20


def _fake_compile(monkeypatch, scale):
    """torch.compile in utils.members replaced by a wrapper that multiplies the net's output by
    ``scale`` (1: a compile that is right; else one that is wrong, as Inductor's vectorised CPU
    code was for the decoder on an AVX2-only machine); returns the list of calls it served."""
    import utils.members
    calls = []

    def compile_(f):
        def compiled(z):
            calls.append(1)
            return f(z) * scale
        return compiled
    monkeypatch.setattr(utils.members.torch, "compile", compile_)
    return calls


def test_a_compiled_net_that_disagrees_with_eager_is_not_used(monkeypatch):
    """The first call checks the compiled net's output and gradient against eager's: a wrong
    one (here 1 % off) is dropped with a warning and a note in the fit's warnings, and the fit
    is the eager fit to the last bit (the check draws from its own generator)."""
    calls = _fake_compile(monkeypatch, 1.01)
    y = add_gaussian_noise(crop64(), 25, seed=0)
    eager = fit(tiny_net(), code(), IdentityTerm(y), cfg(iters=20))
    with pytest.warns(UserWarning, match=r"^--compile not used: torch.compile's output or "
                                         r"gradient differs from eager's by 0.01\d* \(relative"):
        checked = fit(tiny_net(), code(), IdentityTerm(y), cfg(iters=20, compile=True))
    assert len(calls) == 1                                   # the check's call, no other
    assert any(w.startswith("--compile not used") for w in checked.warnings)
    assert torch.equal(checked.output, eager.output)
    assert not any("compile" in w for w in eager.warnings)


def test_a_dropped_compile_is_recorded_as_eager(monkeypatch, tmp_path):
    """summary.json's ``fit.compile`` says what ran: false where the check dropped it, as
    ``fit.amp`` records the mode used (a command with --compile records it as asked, in
    ``hyperparameters``)."""
    import json
    from PIL import Image
    from tasks import get_task
    from utils.cli import main
    _fake_compile(monkeypatch, 1.01)
    Image.fromarray(data.chelsea()[50:114, 100:164]).save(tmp_path / "x.png")
    with pytest.warns(UserWarning, match="^--compile not used"):
        assert main(get_task("denoising"), ["--quiet", "--image", str(tmp_path / "x.png"),
                                            "--out", str(tmp_path / "o"), "--compile",
                                            "--channels", "4", "--iters", "3"]) == 0
    rec = json.loads((tmp_path / "o" / "x" / "summary.json").read_text())
    assert rec["fit"]["compile"] is False and rec["hyperparameters"]["compile"] is True
    assert any(w.startswith("--compile not used") for w in rec["warnings"])


def test_the_compile_check_leaves_the_random_stream_and_refuses_a_nan_gradient(monkeypatch):
    """The check draws from its own generator (the global stream is where it was), and a
    compiled net whose output is right but whose gradient is NaN is not used."""
    import utils.members

    class NanGrad(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return x.clone()

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            return g * float("nan")
    monkeypatch.setattr(utils.members.torch, "compile", lambda f: (lambda z: NanGrad.apply(f(z))))
    members = utils.members.Members(tiny_net(), "cpu", compile=True)
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    with pytest.warns(UserWarning, match=r"differs from eager's by nan "):
        members(code())
    assert torch.equal(torch.random.get_rng_state(), state)
    assert members.note.startswith("--compile not used")
    assert "not finite" not in members.note                     # eager's step was fine


def test_a_compiled_net_that_agrees_with_eager_is_used(monkeypatch):
    calls = _fake_compile(monkeypatch, 1.0)
    y = add_gaussian_noise(crop64(), 25, seed=0)
    eager = fit(tiny_net(), code(), IdentityTerm(y), cfg(iters=20))
    compiled = fit(tiny_net(), code(), IdentityTerm(y), cfg(iters=20, compile=True))
    assert len(calls) > 20                                   # every step ran the compiled net
    assert not any("compile" in w for w in compiled.warnings)
    assert torch.equal(compiled.output, eager.output)
