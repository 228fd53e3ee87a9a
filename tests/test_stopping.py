import math

import numpy as np
import pytest
import torch
from skimage import filters
from skimage.measure import blur_effect

from conftest import chw
from utils.metrics import gray_for_measures as to_gray
from utils.stopping import (STOP_RULES, RatioStop, VarianceStop, blur_sharpness_ratio, blurriness,
                            make_stop_rule, sharpness)

REFERENCE = {  # image: (blurriness, sharpness, ratio), the authors' numpy code
    "astronaut": (0.354393, 0.173259, 2.045451),
    "blur2": (0.730078, 0.052996, 13.776067),
    "noisy": (0.185642, 0.179795, 1.032521),
    "camera": (0.214618, 0.157441, 1.363164),
}






# --------------------------------------------------------------------------- measures
@pytest.mark.parametrize("name", list(REFERENCE))
def test_reference_values(imgs, name):
    x = imgs[name]
    for f, ref in zip((blurriness, sharpness, blur_sharpness_ratio), REFERENCE[name]):
        got = f(x)
        assert got.shape == (1,) and got.dtype == torch.float32
        assert got.item() == pytest.approx(ref, rel=1e-4), f.__name__


def test_gray_for_measures():
    x = torch.rand(2, 3, 5, 6)
    ref = (0.2989 * x[:, 0] + 0.5870 * x[:, 1] + 0.1140 * x[:, 2]).clamp(0, 1)[:, None]
    torch.testing.assert_close(to_gray(x), ref)
    assert to_gray(x[0]).shape == (1, 1, 5, 6)
    torch.testing.assert_close(to_gray(x[:, :1] * 2), (x[:, :1] * 2).clamp(0, 1))
    with pytest.raises(ValueError):
        to_gray(torch.rand(2, 4, 5, 6))


def test_monotone_in_blur_and_agrees_with_skimage(imgs):
    a = imgs["astronaut"].permute(1, 2, 0).numpy().astype(np.float64)
    series = [a] + [filters.gaussian(a, sigma=s, channel_axis=-1) for s in (1, 2, 4)]
    x = torch.stack([chw(im) for im in series])
    b, s = blurriness(x).numpy(), sharpness(x).numpy()
    assert np.all(np.diff(b) > 0) and np.all(np.diff(s) < 0)
    assert np.all(np.diff(blur_sharpness_ratio(x).numpy()) > 0)
    ours = [blurriness(imgs[k]).item() for k in ("noisy", "astronaut", "blur2")] + list(b[2:])
    theirs = [blur_effect(imgs[k].permute(1, 2, 0).numpy(), channel_axis=-1)
              for k in ("noisy", "astronaut", "blur2")] + [blur_effect(im, channel_axis=-1) for im in series[2:]]
    np.testing.assert_array_equal(np.argsort(ours), np.argsort(theirs))


def test_batch_equals_single(imgs):
    x = torch.stack([imgs[k] for k in ("astronaut", "noisy", "blur2")] + [imgs["camera"][:, :512, :512].expand(3, -1, -1)])
    for f in (blurriness, sharpness, blur_sharpness_ratio):
        torch.testing.assert_close(f(x), torch.cat([f(im) for im in x]), rtol=1e-6, atol=0)
    torch.testing.assert_close(to_gray(x), torch.cat([to_gray(im) for im in x]))


def test_flat_and_small_images_are_nan():
    flat = torch.full((2, 3, 32, 32), 0.4)
    small = torch.rand(1, 3, 15, 40)
    for f in (blurriness, sharpness, blur_sharpness_ratio):
        assert torch.isnan(f(flat)).all() and f(flat).shape == (2,)
        assert torch.isnan(f(small)).all()
        assert torch.isfinite(f(torch.rand(1, 16, 16))).all()  # smallest size: fewer than 1001 MLV values


# --------------------------------------------------------------------------- RatioStop
def _expected_ratio_stop(r, n, eps):
    """First evaluation index t with |mean(r[t-2n+1 : t-n+1]) - mean(r[t-n+1 : t+1])| < eps."""
    for t in range(2 * n - 1, len(r)):
        d = abs(r[t - 2 * n + 1:t - n + 1].mean() - r[t - n + 1:t + 1].mean())
        assert abs(d - eps) > 1e-6  # keep the test away from a rounding tie
        if d < eps:
            return t
    return None


def test_ratio_stop_plateau_after_ramp():
    n, eps, every = 10, 0.0123, 5
    t = np.arange(400, dtype=np.float64)
    seqs = np.stack([np.maximum(3 - 0.01 * t, 1.0), np.maximum(4 - 0.01 * t, 1.5)])  # plateaus at 200, 250
    expected = [_expected_ratio_stop(s, n, eps) for s in seqs]
    assert expected[0] < expected[1] < 400
    stop = RatioStop(window=n, eps=eps)
    for i in range(400):
        it = every * i  # called every 5 iterations: the window counts calls
        out = torch.full((2, 1, 4, 4), float(it))
        flags = stop.update(it, out, ratio=torch.tensor(seqs[:, i], dtype=torch.float32))
        assert flags.tolist() == [i >= e for e in expected]
    assert stop.stop_iteration.tolist() == [every * e for e in expected]
    assert stop.output[:, 0, 0, 0].tolist() == [every * e for e in expected]
    assert stop.should_stop()


def test_ratio_stop_never_on_steep_ramp():
    n, eps = 10, 0.01
    stop = RatioStop(window=n, eps=eps)
    for i in range(500):  # successive window means differ by n * slope = 1.1 eps
        stop.update(i, ratio=torch.tensor([5 - 1.1 * eps / n * i, 1 + 1.1 * eps / n * i]))
    assert not stop.stopped.any() and stop.stop_iteration.tolist() == [-1, -1]
    assert not stop.should_stop() and stop.output is None


def test_ratio_stop_nan_is_no_decision():
    n = 5
    stop = RatioStop(window=n, eps=0.01)
    flags = []
    for i in range(20):  # constant ratios would stop at i = 9 but for the NaN at i = 3
        v = [math.nan if i == 3 else 2.0, math.nan]
        flags.append(stop.update(i, ratio=torch.tensor(v)).tolist())
    assert [f[0] for f in flags].index(True) == 13  # first window r[4..13] without the NaN
    assert not any(f[1] for f in flags)
    assert stop.stop_iteration.tolist() == [13, -1]


def test_ratio_stop_image_value(imgs):
    x = torch.stack([imgs["astronaut"][:, :64, :64], imgs["noisy"][:, :64, :64]])
    stop = RatioStop(window=1, eps=1e-3)
    stop.update(0, x)
    torch.testing.assert_close(stop.ratio, blur_sharpness_ratio(x))
    assert stop.update(1, x).all()  # identical windows
    assert torch.equal(stop.output, x) and stop.stop_iteration.tolist() == [1, 1]
    single = RatioStop(window=1)
    assert single.update(0, x[1]).shape == (1,) and single.output.shape == (1, 3, 64, 64)


# --------------------------------------------------------------------------- VarianceStop
def _frames(T, b, seed=0):
    """x_t = 0.5 + a_m(t) z_t: noise amplitude falls, then rises (minimum at t = 60 and 90)."""
    rng = np.random.RandomState(seed)
    amp = np.stack([0.001 + 0.001 * np.abs(np.arange(T) - c) for c in (60, 90)[:b]], 1)
    return (0.5 + amp[:, :, None, None, None] * rng.normal(size=(T, b, 1, 8, 8))).astype(np.float32)


def test_variance_stop_argmin_output_and_iteration():
    W, P, every, T = 5, 30, 2, 200
    xs = _frames(T, 2)
    # independent simulation in float64
    best, best_it, stop_at = [np.inf] * 2, [-1] * 2, [None] * 2
    for t in range(W - 1, T):
        win = xs[t - W + 1:t + 1].astype(np.float64)
        var = ((win - win.mean(0)) ** 2).reshape(W, 2, -1).mean((0, 2))
        for m in range(2):
            if stop_at[m] is None:
                if var[m] < best[m]:
                    best[m], best_it[m] = var[m], every * t
                if every * t - best_it[m] >= P:
                    stop_at[m] = t
    assert None not in stop_at
    stop = VarianceStop(window=W, patience=P)
    for t in range(T):
        flags = stop.update(every * t, torch.from_numpy(xs[t]))
        assert flags.tolist() == [stop_at[m] is not None and t >= stop_at[m] for m in range(2)]
    assert stop.stop_iteration.tolist() == best_it
    for m in range(2):
        assert torch.equal(stop.output[m], torch.from_numpy(xs[best_it[m] // every, m]))
    assert stop.should_stop()


def test_variance_stop_no_drift():
    W, T = 10, 10000
    rng = np.random.RandomState(1)
    xs = (0.5 + 1e-3 * rng.normal(size=(T, 1, 1, 8, 8))).astype(np.float32)
    stop = VarianceStop(window=W, patience=10 ** 9)
    for t in range(T):
        stop.update(t, torch.from_numpy(xs[t]))
        if t in (W - 1, 2503, 7777, T - 2, T - 1):
            win = xs[t - W + 1:t + 1].astype(np.float64)
            ref = ((win - win.mean(0)) ** 2).mean()
            assert stop.variance.item() == pytest.approx(ref, rel=1e-6), t


def test_variance_stop_nan_is_no_decision():
    W = 4
    stop = VarianceStop(window=W, patience=2)
    c = torch.full((1, 1, 8, 8), 0.5)
    t = 0
    for _ in range(W):
        stop.update(t, c)
        t += 1
    for _ in range(3 * W):  # diverged outputs: no decision, however long
        assert not stop.update(t, c * math.nan).any()
        t += 1
    assert stop.min_variance.item() == 0 and stop.min_iteration.item() == W - 1
    fired = None
    for k in range(2 * W):
        if stop.update(t, c).item():
            fired = k
            break
        t += 1
    assert fired is not None and fired < 2 * W
    assert stop.stop_iteration.item() == W - 1 and torch.equal(stop.output, c)


def test_one_interface_for_every_rule(imgs):
    """update(iteration, output, ratio=None, heldout=None) -> stopped, for every rule of
    STOP_RULES."""
    x = torch.stack([imgs["astronaut"][:, :64, :64], imgs["noisy"][:, :64, :64]])
    for name in STOP_RULES:
        rule = make_stop_rule(name, window=2, eps=1e9, patience=1)
        if rule is None:
            assert name == "none"
            continue
        for i in range(6):
            # a rising held-out loss: the validation rule's stall guard waits on a flat one
            flags = rule.update(i, x, ratio=blur_sharpness_ratio(x),
                                heldout=torch.full((2,), 1.0 + i))
        assert flags.shape == (2,) and flags.all(), name
        assert rule.output.shape == x.shape and (rule.stop_iteration >= 0).all()
    with pytest.raises(ValueError, match="ratio"):
        make_stop_rule("nonsense")
    with pytest.raises(ValueError):
        RatioStop().update(0)


# --------------------------------------------------------------------------- CUDA
cuda = pytest.mark.cuda


@cuda
def test_cuda_agrees(imgs):
    x = torch.stack([imgs["astronaut"], imgs["noisy"], imgs["blur2"]])
    for f in (blurriness, sharpness, blur_sharpness_ratio):
        torch.testing.assert_close(f(x.cuda()).cpu(), f(x), rtol=1e-5, atol=0)


@cuda
def test_cuda_no_host_sync(imgs):
    x = torch.stack([imgs["astronaut"][:, :128, :128], imgs["noisy"][:, :128, :128]]).cuda()
    rs, vs = RatioStop(window=2, eps=1e-3), VarianceStop(window=3, patience=2)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(8):
            y = x * (1 - 0.01 * i)
            rs.update(i, y)
            rs.update(i, y, ratio=blur_sharpness_ratio(y))
            vs.update(i, y)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert rs.stopped.device.type == vs.stopped.device.type == "cuda"
