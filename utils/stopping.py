"""No-reference blur/sharpness measures and early-stopping rules for Deep Image Prior fits.

The blur/sharpness ratio and ``RatioStop`` follow Shi et al., "On Measuring and Controlling the
Spectral Bias of the Deep Image Prior" (IJCV 2022), Sec. 4.3 (Eq. 8); ``VarianceStop`` is ES-WMV
(Wang et al., "Early Stopping for Deep Image Prior", TMLR 2023) and ``ValidationStop`` the
held-out-pixel rule of Self-Validation DIP (Li et al., BMVC 2021), both beyond the paper
(measured against it by ``python -m benchmarks.stopping``: results/stopping.md).

Everything is batched over B images / fit members, runs on any device and never syncs with the
host in the per-iteration path (no ``.item()``, no control flow on tensor values), so the fit
loop can call it every iteration; only ``should_stop()`` syncs.

Every rule has one interface: ``update(iteration, output, ratio=None, heldout=None,
candidate=None, heldout_output=None) -> stopped`` (B,) bool, with ``output`` the fit's outputs
(B, C, H, W), ``ratio`` their blur/sharpness ratios when the caller has them already,
``heldout`` the loss on held-out pixels (the validation rule's signal) of ``candidate``, what a
stop keeps when it is not the output itself (the moving average of outputs), and
``heldout_output`` that of ``output`` (the validation rule may keep either); after a member
stops, ``stop_iteration`` and ``output`` hold the iteration and output the rule chose for it.
"""
import collections
import math

import torch
import torch.nn.functional as F

from utils.metrics import gray_for_measures

__all__ = ["blurriness", "sharpness", "blur_sharpness_ratio", "RatioStop", "VarianceStop",
           "ValidationStop", "STOP_RULES", "make_stop_rule"]

_MIN_SIZE = 16  # below this the 9-tap crops leave (almost) nothing to measure


def _nan(g):
    return torch.full((g.shape[0],), math.nan, device=g.device, dtype=g.dtype)


def _abs_diff(t, axis):
    """|t_i - t_{i-1}| along axis 1 or 2 of (B, m, n), cropped to [1 : m-1, 1 : n-1].

    The crop drops the first difference (the one against the zero fill), so plain slices do.
    """
    if axis == 1:
        return (t[:, 1:-1, 1:-1] - t[:, :-2, 1:-1]).abs()
    return (t[:, 1:-1, 1:-1] - t[:, 1:-1, :-2]).abs()


@torch.no_grad()
def blurriness(img):
    """Perceptual blur of Crete-Roffet et al. (SPIE 2007), 9-tap version, per image in [0, 1].

    On the gray image, for each axis: B = 1x9 box blur along that axis; crop image and B to
    [5 : n-4] on both axes; D_F = |x_i - x_{i-1}|, D_B likewise on B (first difference against 0),
    both cropped to [1 : n-1]; D_V = max(0, D_F - D_B); b = (sum D_F - sum D_V) / sum D_F.
    Result = max of the two axes: 0 = sharp, 1 = fully blurred. NaN for a flat image or one
    smaller than 16x16.
    """
    g = gray_for_measures(img)
    h, w = g.shape[-2:]
    if h < _MIN_SIZE or w < _MIN_SIZE:
        return _nan(g)
    g = g[:, 0]
    c = g[:, 5:h - 4, 5:w - 4]
    out = None
    for axis in (1, 2):
        # 9-tap box blur evaluated on the crop only: the crop keeps every window inside the image,
        # so the zero padding never matters (and shifted sums beat avg_pool2d's (9, 1) kernel on CPU).
        cb = sum(g[:, 5 + k:h - 4 + k, 5:w - 4] if axis == 1 else g[:, 5:h - 4, 5 + k:w - 4 + k]
                 for k in range(-4, 5)) / 9
        d_f, d_b = _abs_diff(c, axis), _abs_diff(cb, axis)
        s_f = d_f.sum((1, 2), dtype=torch.float64)
        s_v = (d_f - d_b).clamp_(min=0).sum((1, 2), dtype=torch.float64)
        b = (s_f - s_v) / s_f  # 0/0 = NaN for a flat image
        out = b if out is None else torch.maximum(out, b)  # maximum propagates NaN
    return out.to(g.dtype)


@torch.no_grad()
def sharpness(img):
    """Maximum-local-variation sharpness (Bahrami & Kot, IEEE SPL 2014), as coded by Shi et al.

    On the gray image x (H x W): c = x[2:H-1, 2:W-1]; MLV(p) = max over the 8 neighbours q of
    (c_q - c_p), neighbours outside c read as 0; v = MLV values sorted descending; drop v_0,
    weight v_j by exp(-0.01 j); drop v_1 too and keep the next 999 (j = 2..1000):
    sharpness = sqrt(mean_j (exp(-0.01 j) v_j)^2). NaN for a flat image or one below 16x16.
    """
    g = gray_for_measures(img)
    h, w = g.shape[-2:]
    if h < _MIN_SIZE or w < _MIN_SIZE:
        return _nan(g)
    c = g[:, 0, 2:h - 1, 2:w - 1]
    m, n = c.shape[-2:]
    p = F.pad(c, (1, 1, 1, 1))
    nb = None
    for dy in range(3):
        for dx in range(3):
            if dy != 1 or dx != 1:
                s = p[:, dy:dy + m, dx:dx + n]
                nb = s if nb is None else torch.maximum(nb, s)
    mlv = (nb - c).flatten(1)  # max(q - p) = max(q) - p exactly: rounding is monotone
    k = min(1001, mlv.shape[1])
    # Positive decreasing weights keep a descending list descending, so one top-k suffices.
    v = mlv.topk(k, dim=1).values[:, 2:]
    wts = torch.exp(-0.01 * torch.arange(2, k, device=g.device, dtype=g.dtype))
    s = ((v * wts) ** 2).mean(1).sqrt()
    return torch.where(s > 0, s, math.nan)  # flat image: undefined, and keeps the ratio off inf


def blur_sharpness_ratio(img):
    """Blur / sharpness ratio of Shi et al. (2022), Sec. 4.3: grows as the image gets blurrier."""
    return blurriness(img) / sharpness(img)


def _iteration(it, device):
    return it.to(device) if torch.is_tensor(it) else it


def _acc(device):
    return torch.float32 if device.type == "mps" else torch.float64  # mps has no float64


class _Rule:
    """What every rule shares: ``stopped`` (B,) bool, None before the first update."""
    stopped = None

    def should_stop(self):
        """True when every member has stopped (syncs with the device; call at chunk boundaries)."""
        return self.stopped is not None and bool(self.stopped.all())

    def finish(self):
        """The fit has ended (its last iteration, or an interruption): ``stopped`` after any
        decision the end allows (``_PatientMinimum.decide_at_end``; the others: none)."""
        return self.stopped


class _PatientMinimum(_Rule):
    """The minimum of a per-member signal, its iteration and the output given with it; a member
    stops, for good, once its minimum has not improved for ``patience`` iterations (iterations
    as passed in) and its latest value is above the minimum × (1 + ``min_rise``) (0: any value;
    ValidationStop's stall guard).  A NaN/inf value makes no decision (VarianceStop,
    ValidationStop)."""

    min_rise = 0.0
    min_gain = 0.0
    decide_at_end = False

    def _start(self, b, dev):
        self.stopped = torch.zeros(b, dtype=torch.bool, device=dev)
        self.stop_iteration = torch.full((b,), -1, dtype=torch.long, device=dev)
        self.min_iteration = self.stop_iteration.clone()
        self.kept_iteration = self.stop_iteration.clone()
        self.minimum = torch.full((b,), math.inf, device=dev, dtype=_acc(dev))
        self.kept_value = self.minimum.clone()
        self.latest = self.minimum.clone()

    def _track(self, value, iteration, out=None, at=None):
        """One value (B,) with the output given with it (or None); returns ``stopped``.  at: the
        iteration the value and output belong to when it is not ``iteration`` (a centred
        window's); the patience counts from there to ``iteration``.  The output kept (and the
        stop iteration) moves to a new minimum only where it is below the kept one's value by
        more than the fraction ``min_gain`` (0: every new minimum)."""
        ok = torch.isfinite(value) & ~self.stopped
        self.latest = torch.where(ok, value, self.latest)
        better = ok & (value < self.minimum)
        moved = ok & (value < self.kept_value * (1 - self.min_gain))
        it = _iteration(iteration, value.device)
        at = it if at is None else _iteration(at, value.device)
        self.minimum = torch.where(better, value, self.minimum)
        self.min_iteration = torch.where(better, at, self.min_iteration)
        self.moved = moved      # (ValidationStop: which candidate's output was kept)
        self.kept_value = torch.where(moved, value, self.kept_value)
        self.kept_iteration = torch.where(moved, at, self.kept_iteration)
        if out is not None:
            self.output = torch.where(moved.view(-1, *([1] * (out.dim() - 1))), out,
                                      self.output)
        new = ok & (self.min_iteration >= 0) & (it - self.min_iteration >= self.patience)
        if self.min_rise:
            new = new & (value > self.minimum * (1 + self.min_rise))
        self.stop_iteration = torch.where(new, self.kept_iteration, self.stop_iteration)
        self.stopped = self.stopped | new
        return self.stopped

    def finish(self):
        """With ``decide_at_end``: a member still running whose latest value is above its
        minimum × (1 + ``min_rise``) stops at its kept iteration (no later value can move the
        minimum, so the one so far is the rule's answer; the patience only waited for later
        values); one whose value has not risen (still falling, or a stall) keeps its last
        output.  Returns ``stopped``."""
        if self.decide_at_end and self.stopped is not None:
            new = (~self.stopped & (self.kept_iteration >= 0)
                   & (self.latest > self.minimum * (1 + self.min_rise)))
            self.stop_iteration = torch.where(new, self.kept_iteration, self.stop_iteration)
            self.stopped = self.stopped | new
        return self.stopped


class RatioStop(_Rule):
    """Early stopping on the blur/sharpness ratio plateau (Shi et al. 2022, Sec. 4.3, Eq. 8).

    With the last 2n ratios r_{t-2n+1..t} (n = ``window``, counted in calls to ``update``, so a
    loop that evaluates every k iterations is fine): A = r_{t-2n+1..t-n}, B = r_{t-n+1..t}; a
    member stops, for good, at the first t with |mean(A) - mean(B)| < eps. NaN anywhere in the
    windows means no decision for that update.

    Note: the authors' loop compares r[i-2n:i-n] with r[i-n+1:i], which skips r_{i-n} and the
    current r_i (an off-by-one); we use the clean, adjacent windows above.

    Attributes: ``stopped`` (B,) bool; ``stop_iteration`` (B,) long, -1 while running; ``output``
    the output passed at the stop iteration for stopped members, the latest for the others (None
    if no output was ever given); ``ratio`` the latest ratios.
    """

    def __init__(self, window=100, eps=0.01):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window, self.eps = int(window), float(eps)
        self.count = 0
        self.buf = self.stopped = self.stop_iteration = self.output = self.ratio = None

    def update(self, iteration, output=None, ratio=None, heldout=None, candidate=None,
               heldout_output=None):
        """Record one evaluation; returns ``stopped`` (B,) bool, on device.

        output: the outputs (B, C, H, W) or (C, H, W); ratio: their ratios (B,) (or a scalar for
        B = 1), computed from ``output`` when not given.  Either may be omitted, not both.
        candidate: what to keep at the stop instead of ``output`` (the moving average).
        """
        if output is not None:
            output = output.unsqueeze(0) if output.dim() == 3 else output
        if ratio is None:
            if output is None:
                raise ValueError("RatioStop.update needs the outputs or their ratios")
            ratio = blur_sharpness_ratio(output)
        value = torch.as_tensor(ratio).detach().reshape(-1)
        n2 = 2 * self.window
        if self.buf is None:
            self.buf = torch.full((n2, value.numel()), math.nan, device=value.device, dtype=_acc(value.device))
            self.stopped = torch.zeros(value.numel(), dtype=torch.bool, device=value.device)
            self.stop_iteration = torch.full_like(self.stopped, -1, dtype=torch.long)
        self.buf[self.count % n2] = value
        self.count += 1
        self.ratio = value
        new = torch.zeros_like(self.stopped)
        if self.count >= n2:
            # Roll so the oldest entry comes first: rows [:n] are A, rows [n:] are B.
            r = torch.roll(self.buf, -(self.count % n2), dims=0)
            diff = (r[:self.window].mean(0) - r[self.window:].mean(0)).abs()
            new = (diff < self.eps) & ~self.stopped  # NaN compares False: no decision
        keep_this = output if candidate is None else candidate
        if keep_this is not None:
            out = keep_this.detach()
            out = out.unsqueeze(0) if out.dim() == 3 else out
            keep = self.stopped.to(out.device).view(-1, *([1] * (out.dim() - 1)))
            self.output = out.clone() if self.output is None else torch.where(keep, self.output, out)
        self.stop_iteration = torch.where(new, _iteration(iteration, new.device), self.stop_iteration)
        self.stopped = self.stopped | new
        return self.stopped


class VarianceStop(_PatientMinimum):
    """ES-WMV early stopping (Wang et al., TMLR 2023): stop at the minimum of the windowed variance.

    VAR_t = 1/(W P) sum_{s=t-W+1..t} ||x_s - xbar_t||^2, xbar_t the per-pixel mean of the last W
    outputs (W = ``window``, P pixels x channels), per member. The minimum of VAR, its iteration
    and the output at that iteration (the newest of its window) are tracked; a member stops, for
    good, once its minimum has not improved for ``patience`` iterations (iterations as passed in).
    A NaN/inf variance makes no decision.

    VAR comes from float64 running sums S1 = sum x_s, S2 = sum x_s^2 per pixel (float32 would
    cancel catastrophically once VAR << mean^2), recomputed from the ring buffer every W updates so
    rounding cannot drift (and a NaN output leaves the sums within 2W updates).

    Attributes: ``stopped``, ``stop_iteration`` (iteration of the minimum for stopped members,
    -1 otherwise), ``output`` (the arg-min output; the latest output until a VAR exists),
    ``variance`` (latest VAR, (B,)), ``min_variance``, ``min_iteration``.
    """

    def __init__(self, window=100, patience=1000):
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.window, self.patience = int(window), patience
        self.count = 0
        self.buf = None
        self.stopped = self.stop_iteration = self.output = self.variance = None

    def _resum(self):
        self.s1.zero_()
        self.s2.zero_()
        for x in self.buf:  # frame by frame: no float64 copy of the whole window
            x = x.double()
            self.s1 += x
            self.s2 += x * x

    def update(self, iteration, output, ratio=None, heldout=None, candidate=None,
               heldout_output=None):
        """Record one output batch (B, C, H, W) or (C, H, W); returns ``stopped`` (B,) bool.
        (``ratio`` and ``heldout`` are not used: the rule looks at the outputs themselves.)
        candidate: what to keep at the minimum instead of ``output`` (the moving average)."""
        x = output.detach()
        x = x.unsqueeze(0) if x.dim() == 3 else x
        c = x if candidate is None else candidate.detach()
        c = c.unsqueeze(0) if c.dim() == 3 else c
        wn, b, dev = self.window, x.shape[0], x.device
        acc = _acc(dev)
        if self.buf is None:
            self.buf = torch.zeros((wn,) + tuple(x.shape), device=dev, dtype=x.dtype)
            self.s1 = torch.zeros(x.shape, device=dev, dtype=acc)
            self.s2 = torch.zeros_like(self.s1)
            self._start(b, dev)
            self.variance = torch.full((b,), math.nan, device=dev, dtype=acc)
            self.output = c.clone()
        slot = self.count % wn
        old = self.buf[slot].to(acc, copy=True)
        self.buf[slot] = x
        self.count += 1
        if self.count % wn == 0:
            self._resum()
        else:
            new = self.buf[slot].to(acc)  # the stored (possibly rounded) value, as in the resum
            self.s1 += new - old
            self.s2 += new * new - old * old
        bshape = (-1,) + (1,) * (x.dim() - 1)
        if self.count < wn:
            self.output = torch.where(self.stopped.view(bshape), self.output, c)
            return self.stopped
        var = (self.s2 - self.s1 * self.s1 / wn).flatten(1).sum(1).clamp_min(0) / (wn * self.s1[0].numel())
        self.variance = var
        return self._track(var, iteration, c)

    @property
    def min_variance(self):
        return self.minimum


class ValidationStop(_PatientMinimum):
    """Self-Validation early stopping (Li et al., BMVC 2021): stop at the minimum of the smoothed
    loss on held-out pixels.

    The fit leaves a random few per cent of the observed pixels out of its loss
    (``utils.physics.DataTerm.with_holdout``) and hands their loss l_t to ``update``.  With
    Gaussian noise of variance σ² those pixels' noise is independent of what the net was fitted
    to, so E[l_t] = MSE(f_t, clean on those pixels) + σ²: the minimum of l_t estimates the
    oracle's peak without the ground truth.  Smoothing: the mean of the last ``window``
    evaluations, L_t; the rule tracks the minimum of L_t and the output given with it, and a
    member stops, for good, once that minimum has not improved for ``patience`` iterations.
    A NaN/inf loss makes no decision.

    As Li et al. describe it (``centred=False, both=False``) the trailing mean lags: its minimum
    comes (window − 1)/2 evaluations after the loss's own, and the output kept is the one given
    then; with the moving average of outputs as the candidate, that average lags the fit by
    about 1/(1 − 0.99) iterations more.  Where the fit peaks early (σ 50: within 40–170
    iterations) the two lags cost up to 1.4 dB (benchmarks/stopping.py).  Two remedies:

    - ``centred``: L_t is attributed to the middle of its window, evaluation t − h with
      h = ⌊(window − 1)/2⌋, and the output kept with it is the one given then (the last h + 1
      outputs are kept on the device); the patience counts from that iteration.
    - ``both``: the raw output and the candidate (the moving average) are both candidates, each
      with its own held-out loss (``heldout_output``, ``heldout``) and smoothed series; the
      tracked value is the lower of the two and the output kept the one it belongs to
      (``kept``: 1 where the raw output was kept, 0 the candidate).  The held-out loss measures
      both on the same pixels the fit never saw, so the choice needs no ground truth.
    - ``min_rise`` (a stall guard): a member stops only where L_t is also above its minimum ×
      (1 + min_rise).  A net that has not started to fit (a flat stretch early in a tightly
      bounded fit) gives a flat held-out loss whose minimum does not improve either; that is no
      sign of fitting the noise, which raises the loss.  A member whose loss has not risen by
      the last iteration is never stopped, and the fit returns its last output.
    - ``min_gain`` (the first output of a flat minimum): the output kept (and the stop
      iteration) moves to a new minimum of L_t only where that is below the kept one's L by more
      than the fraction ``min_gain``; the patience and the guard still count from the true
      minimum.  Where the net goes on fitting the noise on the pixels it sees, the held-out loss
      can stay flat (within 0.1 %) for hundreds of iterations while the PSNR falls by 1–2 dB, so
      that where in the flat stretch its lowest point falls is decided by rounding: the same fit
      with another thread count chose iteration 230 or 390 (retina σ 25: 38.81 or 37.88 dB).  The
      first output within the margin is the earliest one the loss cannot tell from the minimum
      (the one-standard-error rule's idea: among those the data cannot separate, the simplest),
      and it does not move with the rounding.  Where the fit peaks and decays (λ 0) the loss's
      minimum already comes before the PSNR's peak and the margin costs (results/
      stopping_rules_xeon.md): ``--stop-min-gain``, 0 by default, 0.002 in denoising's quick
      preset (λ 1.4: results/cpu_modes_denoising_amx_before_decide_at_end.md).
    - ``decide_at_end`` (``--stop-decide-at-end``; ``finish``): a fit that ends before the
      patience has run out returns the output kept at the minimum where L has risen above it by
      the guard's margin, instead of its last output.  Off by default (the λ-0 replays: 0.34 /
      1.24 → 0.35 / 1.24 dB); denoising's quick preset sets it (a bf16 fit on cell σ 25 whose
      loss rose from 420 to its end at 600: 36.80 → 38.47 dB, fp32 38.58).

    Attributes as ``VarianceStop``: ``stopped``, ``stop_iteration`` (of the output kept),
    ``output`` (the output at the minimum), ``smoothed`` (latest L_t, the lower of the two with
    ``both``), ``min_loss``, ``min_iteration`` (of the true minimum), and ``kept``.
    """

    def __init__(self, window=10, patience=1000, centred=False, both=False, min_rise=0.0,
                 min_gain=0.0, decide_at_end=False):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not min_rise >= 0:
            raise ValueError(f"min_rise must be >= 0, got {min_rise}")
        self.window, self.patience = int(window), patience
        self.centred, self.both, self.min_rise = bool(centred), bool(both), float(min_rise)
        if not 0 <= min_gain < 1:
            raise ValueError(f"min_gain must be in [0, 1), got {min_gain}")
        self.min_gain, self.decide_at_end = float(min_gain), bool(decide_at_end)
        self.count = 0
        self.recent = collections.deque(maxlen=(self.window - 1) // 2 + 1 if centred else 1)
        self.buf = self.stopped = self.stop_iteration = self.output = self.smoothed = None
        self.kept = None

    def update(self, iteration, output=None, ratio=None, heldout=None, candidate=None,
               heldout_output=None):
        """Record one held-out loss (B,) with its outputs (B, C, H, W) (or None: then only the
        iterations are tracked); returns ``stopped`` (B,) bool.  candidate: what to keep at the
        minimum instead of ``output`` (the moving average, whose held-out loss is then given);
        heldout_output: with ``both``, the held-out loss of ``output`` itself."""
        if heldout is None:
            raise ValueError("the validation rule needs the held-out loss (a data term with "
                             "held-out pixels: DataTerm.with_holdout)")
        two = self.both and heldout_output is not None
        values = [heldout, heldout_output] if two else [heldout]
        value = torch.stack([torch.as_tensor(v).detach().reshape(-1) for v in values])  # (K, B)
        dev, b = value.device, value.shape[1]
        if self.buf is None:
            self.buf = torch.full((self.window, *value.shape), math.nan, device=dev,
                                  dtype=_acc(dev))
            self.kept = torch.zeros(b, dtype=torch.long, device=dev)
            self._start(b, dev)
        self.buf[self.count % self.window] = value
        self.count += 1
        outs = [candidate if candidate is not None else output] + ([output] if two else [])
        outs = [o for o in outs if o is not None]
        out = None
        if len(outs) == len(values):
            out = torch.stack([o.detach().unsqueeze(0) if o.dim() == 3 else o.detach()
                               for o in outs])                              # (K, B, C, H, W)
            if self.output is None:
                self.output = out[0].clone()
        self.recent.append((iteration, out))
        if self.count < self.window:
            return self.stopped
        smoothed = self.buf.mean(0)                                          # (K, B)
        k = torch.nan_to_num(smoothed, nan=math.inf).argmin(0)               # (B,)
        self.smoothed = smoothed.gather(0, k[None])[0]
        at, past = self.recent[0]
        if past is not None:
            pick = k.view(1, -1, *([1] * (past.dim() - 2))).expand(1, *past.shape[1:])
            past = past.gather(0, pick)[0]
        stopped = self._track(self.smoothed, iteration, past, at=at)
        self.kept = torch.where(self.moved, k, self.kept)
        return stopped

    @property
    def min_loss(self):
        return self.minimum


STOP_RULES = ("ratio", "variance", "validation", "none")
# the validation rule of --stop validation: centred window, the raw output and the moving average
# both candidates (ValidationStop), declared before the replays of benchmarks/stopping.py that
# measured it on 24 fits (results/stopping_rules.md, 2026-12-05): oracle gap 0.28 dB mean, 1.04
# max, against 0.30 / 1.39 for the rule as Li et al. describe it.  The stall guard (min_rise 0.1 %)
# came after benchmarks/decay.py showed a stall: at λ 1.0 on grass σ 25 the held-out loss stayed
# flat within 0.01 % from about iteration 50 to 320, the rule stopped at 300 and lost 5.28 dB; with
# the guard λ 1.0's 16 decay fits give 0.30 / 0.80 dB (0.64 / 5.28 without: grass and coffee σ 25
# now run to the horizon), the stopping benchmark's 24 replays 0.272 / 1.035 (0.276 / 1.035)
# (min_gain, the first output of a flat minimum, is --stop-min-gain: 0 here, as the stopping
# benchmark's 24 replays at λ 0 lose with it, 0.34 / 1.24 dB → 0.47 / 2.23 at 0.2 %: where the fit
# peaks and decays the held-out loss's minimum already comes before the peak; denoising's quick
# preset, at λ 1.4, sets it: results/cpu_modes_denoising_amx_before_decide_at_end.md)
VALIDATION_OPTIONS = dict(centred=True, both=True, min_rise=1e-3)


def make_stop_rule(name, window=100, eps=0.01, patience=1000, min_gain=0.0, decide_at_end=False):
    """The rule called ``name`` (``STOP_RULES``) with its parameters, or None for ``none``
    (min_gain and decide_at_end: the validation rule's, ``ValidationStop``)."""
    if name == "ratio":
        return RatioStop(window, eps)
    if name == "variance":
        return VarianceStop(window, patience)
    if name == "validation":
        return ValidationStop(window, patience, **{**VALIDATION_OPTIONS, "min_gain": min_gain,
                                                   "decide_at_end": decide_at_end})
    if name == "none":
        return None
    raise ValueError(f"unknown stop rule {name!r} ({' | '.join(STOP_RULES)})")
