"""The members of a fit and their optimiser, as one flat parameter buffer.

``Members`` holds the trainable weights of one net or of several independent nets (same
architecture) as one ``(M, N)`` tensor, member m in row m, and runs the nets on views of it
(``torch.func.functional_call``; ``vmap`` over the rows for M > 1).  Everything per member is
then one operation over the buffer: the optimiser step, a checkpoint, a restore.

``MemberAdam`` is Adam (Kingma & Ba, ICLR 2015; the update of ``torch.optim.Adam``: bias
corrections, ε outside the square root, no weight decay) with a step count and a step-size scale
per member, so that utils/fit.py can restore one member's weights *and* its optimiser state and
halve its step size without touching the others.

``--lambda auto`` fits members at several λ at once (``lambdas``) and keeps those of the λ whose
held-out pixels are predicted best at the members' own stops (``choose_lambda``): a choice of λ
without the ground truth.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap


LAMBDA_AUTO = (1.2, 1.4, 1.8, 2.4, None)   # the λs of --lambda auto (None: no control)
DROPPED = "--compile not used"     # how a fit's warning that its compile was dropped begins


def dropped_compile(said) -> str | None:
    """Why a fit's compile was dropped (its warning among ``said``, without the machine), or
    None: how the benchmarks tell a compiled run from one that ran eager."""
    return next((w.split(" on this machine")[0] for w in said if w.startswith(DROPPED)), None)


class Members:
    """One net or several independent ones: ``forward(z) -> (M, C, H, W)`` for codes
    ``z`` (M, C, h, w), with the weights in ``flat`` (M, N)."""

    def __init__(self, nets, device, channels_last=False, compile=False):
        nets = list(nets) if isinstance(nets, (list, tuple)) else [nets]
        self.nets, self.count = nets, len(nets)
        for n in nets:
            n.to(device)
        named = [(k, p) for k, p in nets[0].named_parameters() if p.requires_grad]
        self.names = [k for k, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        rows = []
        for n in nets:
            params = dict(n.named_parameters())
            rows.append(torch.cat([params[k].detach().reshape(-1) for k in self.names]))
        self.flat = torch.stack(rows).requires_grad_(True)
        self.channels_last = channels_last
        if self.count == 1:
            base = nets[0]
            self._forward = lambda z: functional_call(base, self._views(0), (z,))
        else:
            _, buffers = stack_module_state(nets)
            base = copy.deepcopy(nets[0]).to("meta")

            def one(p, b, z):
                return functional_call(base, (p, b), (z[None],))[0]

            batched = vmap(one)
            self._forward = lambda z: batched(self._views(None), buffers, z)
        self.note = None                   # why a compile asked for was not used
        self._unchecked = torch.compile(self._forward) if compile else None

    def _views(self, member):
        """The weights as views of ``flat``: of one member (M = 1) or stacked (M, *shape)."""
        out, off = {}, 0
        for k, shape, n in zip(self.names, self.shapes, self.sizes):
            v = self.flat[:, off:off + n].unflatten(1, shape)
            v = v[member] if member is not None else v
            if self.channels_last and v.dim() == 4:
                v = v.contiguous(memory_format=torch.channels_last)
            out[k] = v
            off += n
        return out

    def __call__(self, z):
        if self._unchecked is not None:
            self._forward, self._unchecked = self._checked_compile(self._unchecked, z), None
        return self._forward(z)

    def _checked_compile(self, compiled, z):
        """``compiled`` if its output and gradient on the first call agree with eager's, else the
        eager forward, with ``note`` saying why (and a warning).

        Why: torch 2.13's Inductor on an AVX2-only CPU gave the decoder's weight gradient 12-67 %
        (max relative, a random projection of the output; by net width and seed) away from
        eager's, which agrees with fp64 to 1e-6; a compiled fit then learned slower and ended
        6 dB lower (astronaut, 150 iterations: 17.76 against 23.94 dB), with no error.  The check
        costs one eager forward and backward and one compiled pair whose result is dropped,
        under the caller's autocast, against a fixed zero-mean random projection of the output
        (its own generator: the global random stream is untouched).  Tolerance, relative to the
        largest entry: 1e-3 in strict fp32 (the two agree to 2e-5 where Inductor is right), 0.02
        with CUDA's TF32 convolutions, 0.1 under autocast (bf16 alone moved the gradient by 0.061
        from fp32's, layers.centred_conv; the two round differently).  NaN fails."""
        dev = z.device.type
        tolerance = (0.1 if torch.is_autocast_enabled(dev) else
                     0.02 if dev == "cuda" and torch.backends.cudnn.allow_tf32 else 1e-3)
        gen = torch.Generator(device=z.device)
        outs = []
        for forward in (self._forward, compiled):
            with torch.enable_grad():
                y = forward(z)
                r = torch.randn(y.shape, generator=gen.manual_seed(0), device=y.device)
                g, = torch.autograd.grad((y.float() * r).sum(), self.flat)
            outs.append((y.detach().float(), g))
        errs = [float((c - e).abs().max()) / max(float(e.abs().max()), 1e-12)
                for e, c in zip(outs[0], outs[1])]            # output, gradient
        err = max(errs, key=lambda e: (e != e, e))     # NaN first
        if all(e <= tolerance for e in errs):                   # False for NaN
            return compiled
        eager_ok = all(bool(t.isfinite().all()) for t in outs[0])
        self.note = (f"{DROPPED}: torch.compile's output or gradient differs from "
                     f"eager's by {err:.3g} (relative; at most {tolerance:g} "
                     f"expected) on this machine (torch {torch.__version__}, {dev}); the fit runs "
                     "eager" + ("" if eager_ok else " (eager's own first step is not finite)"))
        warnings.warn(self.note, stacklevel=2)
        return self._forward

    def unstack(self):
        """Write the fitted weights back into the nets."""
        with torch.no_grad():
            for m, net in enumerate(self.nets):
                params = dict(net.named_parameters())
                off = 0
                for k, shape, n in zip(self.names, self.shapes, self.sizes):
                    params[k].copy_(self.flat[m, off:off + n].view(shape))
                    off += n


class MemberAdam:
    """Adam on the rows of a flat (M, N) parameter with per-member step counts and step-size
    scales: ``θ_m ← θ_m − s_m lr m̂ / (√v̂ + ε)`` with m̂, v̂ bias-corrected by member m's own
    step count.  ``state()``/``load(state, mask)`` save and restore chosen members' weights,
    moments and counts; ``scale`` is each member's step-size factor (1 at the start).
    ``warmup`` n > 0: the step size is also × min(1, t/n) at member step t (a linear warm-up:
    Adam's first steps move every weight by about lr at once, which at a fast lr can throw a
    dark image's output into the sigmoid's flat end before the fit starts)."""

    def __init__(self, flat, lr, betas=(0.9, 0.999), eps=1e-8, warmup=0):
        self.flat, self.lr, (self.b1, self.b2), self.eps = flat, float(lr), betas, eps
        self.warmup = int(warmup)
        M = flat.shape[0]
        self.m = torch.zeros_like(flat, requires_grad=False)
        self.v = torch.zeros_like(flat, requires_grad=False)
        self.steps = torch.zeros(M, device=flat.device, dtype=flat.dtype)
        self.scale = torch.ones(M, device=flat.device, dtype=flat.dtype)

    def zero_grad(self):
        self.flat.grad = None

    @torch.no_grad()
    def step(self):
        g = self.flat.grad
        self.steps += 1
        self.m.lerp_(g, 1 - self.b1)
        self.v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        bc1 = 1 - self.b1 ** self.steps
        bc2 = 1 - self.b2 ** self.steps
        step_size = self.lr * self.scale / bc1
        if self.warmup:
            step_size = step_size * (self.steps / self.warmup).clamp(max=1)
        step_size = step_size[:, None]
        denom = (self.v.sqrt() / bc2.sqrt()[:, None]).add_(self.eps)
        self.flat.sub_(step_size * self.m / denom)

    def state(self):
        """A copy of the weights, moments and step counts (a checkpoint)."""
        return [t.detach().clone() for t in (self.flat, self.m, self.v, self.steps)]

    def rescale(self, mask, factor):
        """Multiply the step-size scale of the members in ``mask`` (M,) by ``factor`` (up to 1)."""
        self.scale = torch.where(mask, (self.scale * factor).clamp(max=1), self.scale)

    @torch.no_grad()
    def keep(self, ckpt, mask):
        """Move the checkpoint of the members in ``mask`` (M,) to their current state."""
        for c, t in zip(ckpt, (self.flat, self.m, self.v, self.steps)):
            c.copy_(torch.where(mask.view(-1, *([1] * (t.dim() - 1))), t, c))

    @torch.no_grad()
    def load(self, ckpt, mask, weights_only=False):
        """Put the members in ``mask`` (M,) back to their checkpoint (only their weights with
        ``weights_only``)."""
        state = (self.flat,) if weights_only else (self.flat, self.m, self.v, self.steps)
        for c, t in zip(ckpt, state):
            t.copy_(torch.where(mask.view(-1, *([1] * (t.dim() - 1))), c, t))


def lambdas(cfg: dict) -> list:
    """The λ of each group of members: ``LAMBDA_AUTO`` for ``ln_lambda='auto'``, else the one
    configured."""
    return list(LAMBDA_AUTO) if cfg.get("ln_lambda") == "auto" else [cfg.get("ln_lambda")]


def heldout_at_stop(res, window: int) -> np.ndarray:
    """Each member's held-out loss at its own stop (the last iteration if it never stopped):
    the mean of the ``window`` logged values ending there, at most the later half of those
    logged by then (a short fit's first values are the untrained net's), (M,)."""
    held, its = res.history["heldout"], res.history["iteration"]
    out = np.full(held.shape[1], np.nan)
    for m, stop in enumerate(res.stop_iteration):
        end = len(its) if stop is None else int(np.searchsorted(its, stop, side="right"))
        rows = held[max(end - window, end // 2):end, m]
        out[m] = np.nanmean(rows) if np.isfinite(rows).any() else np.nan
    return out


def choose_lambda(res, groups: list, window: int):
    """``--lambda auto``: the λ whose members have the lowest mean held-out loss at their own
    stops (no ground truth; ``groups`` from the strongest control to none); sets ``res.chosen``
    to its members and ``res.selection``."""
    per = heldout_at_stop(res, window).reshape(len(groups), -1)   # (λ, restarts)
    score = per.mean(1)
    # an exact tie is one course: a bound that never acted (λ 2.4 in a short fit is no
    # control), so the least control among the tied (the last: LAMBDA_AUTO's order) is named
    best = len(score) - 1 - int(np.nanargmin(score[::-1])) if np.isfinite(score).any() else 0
    r = per.shape[1]
    res.chosen = list(range(best * r, (best + 1) * r))
    name = lambda lam: "none" if not lam else f"{lam:g}"  # noqa: E731
    res.selection = {"lambda": name(groups[best]),
                     "heldout": {name(lam): float(v) for lam, v in zip(groups, score)},
                     "members": {m: {"lambda": name(groups[m // r]), "heldout_at_stop": float(v)}
                                 for m, v in enumerate(per.ravel())}}   # member_metrics
