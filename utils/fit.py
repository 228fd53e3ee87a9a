"""The one optimisation loop of the project: fit ``f_θ(z)`` to a degraded observation.

Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018): minimise ``E(A f_θ(z), y)`` over θ
from a random init; the architecture is the prior.  This loop adds DIP's tricks (input
perturbation, an exponential moving average of outputs, backtracking on a PSNR drop, made to
recover: see ``Fit.backtrack``) and the instruments of Shi et al. (IJCV 2022): the
frequency-band correspondence (Sec. 3) and the blurriness/sharpness ratio whose plateau stops
the fit (Sec. 4.3, Eq. 8).  ``result = fit(net, z, data_term, FitConfig(iters=3000), target=x)``
(or ``Fit(...).run()``).  One iteration: ``Fit.step`` (forward, loss, backward, EMA), every
``log_every`` iterations ``Fit.measure`` (measures, ``backtrack``, the oracle's best, the stop
rule), the step of ``utils.members.MemberAdam`` and ``Fit.hold`` (members that backtracked or
stopped go back to their checkpoint), all on the device; ``Fit.sync`` copies the logs to the
host once per ``sync_every`` iterations and decides whether every member has stopped.

Batched independent fits: a list of nets (same architecture) and a code per member, fitted
together with ``torch.func`` (the weights as one (M, N) buffer, ``vmap`` over its rows:
utils/members.py), each with its own loss, stop rule, backtracking and step size.  Nothing
here changes process-wide state (the input perturbation has its own generator; cuDNN's
autotuner and TF32 switch are set for the fit only)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from utils.device import (DeadlineReached, cudnn_settings, device_name, past_deadline,
                          resolve_amp, resolve_device)
from utils.estimate import warnings_above_bar
from utils.members import MemberAdam, Members
from utils.metrics import psnr
from utils.physics import OBJECTIVES
from utils.spectral import frequency_band_correspondence
from utils.stopping import STOP_RULES, blur_sharpness_ratio, make_stop_rule

RATE_ITERS, RATE_SECONDS = 10, 3.0   # the rate for on_rate: after this many iterations (or s)
COLLAPSE = 0.5      # saturated fraction of A f(z) that counts as a collapse (see backtrack)
FIT_CHOICES = {"optimizer": ("adam", "lbfgs"), "stop": STOP_RULES, "amp": ("auto", "none", "bf16"),
               "loss": OBJECTIVES}
MEASURES = ("loss", "psnr_obs", "psnr_gt", "psnr_ema", "fbc1", "fbc2", "fbc3", "fbc4", "fbc5",
            "ratio", "heldout")


def _opt(default, help):
    return field(default=default, metadata={"help": help})


@dataclass
class FitConfig:
    """Hyper-parameters of the loop (the task scripts fill them from their config block);
    ``fields(FitConfig)[k].metadata["help"]`` describes each."""
    iters: int = _opt(10000, "iterations")
    lr: float = _opt(0.001, "learning rate")
    lr_warmup: int = _opt(0, "step size × min(1, t/n) at Adam step t (lbfgs: its 100 Adam steps)")
    optimizer: str = _opt("adam", "adam | lbfgs (DIP's option: 100 Adam steps, then L-BFGS)")
    loss: str = _opt("mse", "mse (DIP's) | spectral: utils.physics.DataTerm.spectral_loss")
    seed: int = _opt(0, "seed of the input perturbation")
    device: str = _opt("auto", "auto | cpu | cuda (auto: CUDA when present)")
    reg_noise_std: float = _opt(0.0, "DIP's input perturbation: z + N(0, std) each iteration")
    exp_weight: float = _opt(0.99, "weight of the exponential moving average of outputs")
    ema_warmup: bool = _opt(False, "the average's weight at step t: min(exp_weight, (1+t)/(10+t))")
    backtrack: bool = _opt(True, "restore the weights when the PSNR to the observation drops "
                                 "by more than backtrack_db (DIP)")
    backtrack_db: float = _opt(5.0, "the drop (dB) that triggers backtracking")
    backtrack_every: int = _opt(0, "check every k iterations too (0: at the measures; 1: DIP's)")
    backtrack_recover: int = _opt(0, "a halved step doubles back over n good checks (0: never)")
    log_every: int = _opt(1, "measures every k iterations (1 = the paper's curves)")
    stop: str = _opt("ratio", "stopping rule: " + " | ".join(STOP_RULES))
    stop_window: int = _opt(100, "window n of the stopping rule (evaluations): the ratio rule's "
                                 "(Eq. 8), the variance rule's, the validation rule's smoothing")
    stop_eps: float = _opt(0.01, "ε of the ratio rule (Eq. 8)")
    stop_patience: int = _opt(1000, "patience of the variance and validation rules (iterations)")
    stop_min_gain: float = _opt(0.0, "validation rule: keep a new minimum only this fraction lower")
    stop_decide_at_end: bool = _opt(False, "validation rule: a fit that ends on a risen loss "
                                           "returns the output at its minimum (else the last)")
    run_on: bool = _opt(False, "after the stop, fit on to iters (the result stays the rule's)")
    holdout: float = _opt(0.05, "fraction of the observed pixels held out of the loss for the "
                                "validation rule and --lambda auto (Self-Validation DIP)")
    track_heldout: bool = _opt(False, "hold pixels out, log their loss whatever the stop rule")
    use_ema: bool = _opt(False, "the result is the moving average of outputs (steadier): at the "
                                "stop rule's choice, or at the end")
    oracle: bool = _opt(False, "return the output of best PSNR to the ground truth (figures only)")
    sync_every: int = _opt(100, "host copies of the logs once per this many iterations")
    quiet: bool = _opt(False, "no progress bar")
    amp: str = _opt("auto", "auto | none | bf16: convolutions in bf16 (loss, σ and measures in "
                            "fp32); auto: bf16 on a CPU with native bf16 where measured as "
                            "good as fp32, else fp32 (utils.device.resolve_amp)")
    tf32: bool = _opt(True, "cuDNN's TF32 convolutions on CUDA (PyTorch's); --no-tf32: strict fp32")
    compile: bool = _opt(False, "torch.compile the network, checked against eager at step 1")
    channels_last: bool = _opt(False, "channels-last memory format")


@dataclass
class FitResult:
    output: torch.Tensor             # (M, C, H, W) the chosen output: stop / last / EMA / oracle
    last_output: torch.Tensor        # output of the last good iteration
    ema_output: torch.Tensor         # exponential moving average of outputs
    stop_iteration: list             # per member: iteration the stop rule chose, or None
    best_iteration: list             # per member: iteration of the best PSNR to GT (oracle)
    best_output: torch.Tensor | None
    history: dict                    # name -> np.ndarray (n_logged, M); iteration -> (n_logged,)
    iterations: int                  # iterations actually run
    seconds: float
    its_per_sec: float
    device: str
    interrupted: bool = False
    warnings: list = field(default_factory=list)
    restores: list = field(default_factory=list)   # per member: backtracking restores
    chosen: list | None = None       # members averaged into the result (None: all of them)
    holdout: torch.Tensor | None = None   # (1, 1, h, w) 1 on the pixels held out of the loss
    selection: dict = field(default_factory=dict)  # how they were chosen (--lambda auto)

    def final(self, which: str = "output") -> torch.Tensor:
        """The result, (1, C, H, W): the mean of the chosen members' ``output`` (or
        ``ema_output``): one fit, the average of restarts, or the chosen λ's restarts."""
        t = getattr(self, which)
        return (t if self.chosen is None else t[self.chosen]).mean(0, keepdim=True)


def ema_weight(cfg: FitConfig, i: int) -> float:
    """The moving average's weight at iteration ``i``: ``exp_weight`` (DIP's), or with
    ``ema_warmup`` ``min(exp_weight, (1+i)/(10+i))`` (TensorFlow's EMA with ``num_updates``): the
    unfitted first outputs weigh little (DIP's average holds the first at 0.99³⁰⁰ = 5 %)."""
    return min(cfg.exp_weight, (1 + i) / (10 + i)) if cfg.ema_warmup else cfg.exp_weight


def _where(mask, a, b):
    """Per-member choice between two (M, ...) tensors."""
    return torch.where(mask.view(-1, *([1] * (a.dim() - 1))), a, b)


class Fit:
    """One fit of one net (or a list of independent nets) to ``data_term``; ``run()`` it once.

    nets: a ``models.DIPNet`` or a list (independent fits, Adam only); net_input: z, (M, C, h, w).
    data_term: a ``utils.physics.DataTerm`` whose observation has batch M.
    target: ground truth (M, C, H, W), reported (PSNR, SSIM); it chooses only with ``oracle``.
    region: (h, w) of the true image when the output is padded; measures use this crop.
    callbacks: callables ``cb(iteration, output)`` run at each host sync (e.g. snapshots).
    on_rate: ``cb(seconds per iteration, iterations)``, once after the first iterations
        (``RATE_ITERS``; ``RATE_SECONDS`` on a CPU) at their rate: the estimate line.
    observers: callables ``ob(iteration, output, ema, ratio, heldout)`` run at every measure,
        on device (benchmarks/stopping.py replays stop rules on one trajectory with them).
    """

    def __init__(self, nets, net_input, data_term, config: FitConfig | None = None,
                 target=None, region=None, callbacks=(), observers=(), on_rate=None):
        cfg = config or FitConfig()
        dev = self.dev = resolve_device(cfg.device)
        if cfg.amp == "auto":   # the task layer resolves it with the task's parity verdict
            amp, cl, _ = resolve_amp(cfg.amp, dev, verified=False)
            cfg = replace(cfg, amp=amp, channels_last=cfg.channels_last if cl is None else cl)
        self.cfg, self.on_rate, self.rate_start = cfg, on_rate, None
        self.members = Members(nets, dev, cfg.channels_last, cfg.compile)
        M = self.M = self.members.count
        if M > 1 and cfg.optimizer != "adam":
            raise ValueError("batched fits support the Adam optimizer only")
        for name, allowed in FIT_CHOICES.items():
            if name != "stop" and getattr(cfg, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(cfg, name)!r} ({' | '.join(allowed)})")
        self.z0 = net_input.to(dev)
        if cfg.channels_last:
            self.z0 = self.z0.contiguous(memory_format=torch.channels_last)
        if self.z0.shape[0] != M:
            raise ValueError(f"net_input has batch {self.z0.shape[0]} but there are {M} nets")
        self.noise = torch.Generator(device=dev).manual_seed(cfg.seed)
        self.term = data_term.to(dev).with_objective(cfg.loss)
        self.gt = target.to(dev) if target is not None else None
        if cfg.oracle and self.gt is None:
            raise ValueError("oracle output needs a ground truth target")
        self.region, self.callbacks, self.observers = region, callbacks, observers
        self.obs_region = self._obs_region(nets)
        if (cfg.stop == "validation" or cfg.track_heldout) and self.term.holdout is None:
            self.term = self.term.with_holdout(cfg.holdout, cfg.seed, self.obs_region)
        self.stop_rule = make_stop_rule(cfg.stop, cfg.stop_window, cfg.stop_eps, cfg.stop_patience,
                                        cfg.stop_min_gain, cfg.stop_decide_at_end)
        self.adam = MemberAdam(self.members.flat, cfg.lr if cfg.optimizer == "adam" else 0.001,
                               warmup=cfg.lr_warmup)
        self.ckpt = self.adam.state()
        full = lambda v, dtype=None: torch.full((M,), v, dtype=dtype, device=dev)  # noqa: E731
        self.active = full(True, torch.bool)
        self.last_psnr, self.best_psnr, self.best_obs = (full(-math.inf) for _ in range(3))
        self.bad_count, self.restores = full(0, torch.int32), full(0, torch.int32)
        self.best_it = full(-1, torch.long)
        self.saturated_y = self.term.saturation(self.term.observation)
        self.restore = self.nan_stopped = None     # (M,) masks, set by measure / sync
        self.ema = self.good_out = self.best_out = self.y_obs = None
        self.rows, self.its_logged, self.host_rows, self.host_its = [], [], [], []
        self.warnings, self.pbar = [], None

    # ------------------------------------------------------------------ region crops
    def _obs_region(self, nets):
        """The true image's (h, w) in the observation (None when the output is not padded): the
        output's padding scaled to the observation's size (e.g. the LR image of SR)."""
        if self.region is None:
            return None
        net = nets[0] if isinstance(nets, (list, tuple)) else nets
        out_h = self.z0.shape[-2] * getattr(net, "code_scale", 1)
        out_w = self.z0.shape[-1] * getattr(net, "code_scale", 1)
        y = self.term.observation
        return (self.region[0] * y.shape[-2] // out_h, self.region[1] * y.shape[-1] // out_w)

    def crop_out(self, t):
        """The true image inside an output-space tensor."""
        return t if self.region is None else t[..., :self.region[0], :self.region[1]]

    def crop_obs(self, t):
        """The true image inside an observation-space tensor (e.g. the LR image of SR)."""
        if self.obs_region is None:
            return t
        return t[..., :self.obs_region[0], :self.obs_region[1]]

    # ------------------------------------------------------------------ one iteration
    def step(self, i):
        """Forward, loss, backward, EMA and (every ``log_every``) the measures; returns the loss."""
        cfg, z = self.cfg, self.z0
        if cfg.reg_noise_std > 0:
            z = z + torch.empty_like(z).normal_(generator=self.noise) * cfg.reg_noise_std
        autocast = torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16")
        with autocast:
            out = self.members(z)
        if cfg.amp != "none":
            out = out.float()  # the loss and the measures stay in fp32
        per = self.term.loss(out)                     # (M,)
        # a stopped member gets no gradient (it is also held at its weights, see hold)
        loss = torch.where(self.active, per, torch.zeros_like(per)).sum()
        loss.backward()
        o = out.detach()
        w = ema_weight(cfg, i)
        if self.ema is None:
            self.ema = o.clone()
        elif self.stop_rule is None:
            self.ema.mul_(w).add_(o, alpha=1 - w)
        else:   # a stopped member's average stays what it was at its stop (run_on too)
            done = self.stop_rule.stopped
            live = self.active if done is None else self.active & ~done
            self.ema = _where(live, self.ema.mul(w).add_(o, alpha=1 - w), self.ema)
        if i % cfg.log_every == 0:
            self.measure(i, o, per.detach())
        elif cfg.backtrack_every and i % cfg.backtrack_every == 0:    # between the measures (#26)
            a_o = self.term(o)
            self.backtrack(per.detach(), self.term.psnr_of(a_o), a_o, o)
        return loss

    def measure(self, i, o, per):
        """Log loss, PSNRs, FBC and ratio; then backtracking, the oracle's best, the stop rule."""
        oc = self.crop_out(o)
        a_o = self.term(o)
        if self.y_obs is None:
            self.y_obs = self.crop_obs(self.term.observation)
        p_obs = self.term.psnr_of(a_o)
        nan = torch.full((self.M,), float("nan"), device=self.dev)
        gt = None if self.gt is None else self.crop_out(self.gt)
        p_gt = psnr(oc, gt) if gt is not None else nan
        p_ema = psnr(self.crop_out(self.ema), gt) if gt is not None else nan
        fbc = frequency_band_correspondence(self.crop_obs(a_o), self.y_obs)
        ratio = blur_sharpness_ratio(oc)
        # the output a stop keeps: the moving average with use_ema (its held-out loss then; the
        # raw output's too, the validation rule's other candidate)
        cand, out_held = (self.ema if self.cfg.use_ema else o), self.term.holdout is not None
        held_o = self.term.heldout_loss(a_o) if out_held else nan
        held = self.term.heldout_loss(self.term(cand)) if out_held and self.cfg.use_ema else held_o
        self.rows.append(torch.stack([per, p_obs, p_gt, p_ema, *fbc.T, ratio, held], 1))
        self.its_logged.append(i)
        for observe in self.observers:
            observe(i, o, self.ema, ratio, held)
        self.backtrack(per, p_obs, a_o, o)
        if gt is not None:
            self.track_best(i, p_gt, o)
        if self.stop_rule is not None:
            stopped = self.stop_rule.update(i, o, ratio=ratio, heldout=held, candidate=cand,
                                            heldout_output=held_o)
            self.active = self.active if self.cfg.run_on else self.active & ~stopped

    def backtrack(self, per, p_obs, a_o, o):
        """Backtracking: a member restores its checkpoint (weights, Adam moments and step count)
        after this step, and halves its step size, when its loss is not finite, its PSNR to the
        observation fell by more than ``backtrack_db`` below the checkpoint's (DIP's rule), or
        its output collapsed (more than half of A f(z) saturated at 0 or 1, 25 points more than
        in the observation: the sigmoid's dead end).  Otherwise the checkpoint moves to the
        current state, unless its PSNR is over ``backtrack_db`` below the member's best or it is
        within 5 points of a collapse (a rounding must not make the restored state a collapse)."""
        cfg = self.cfg
        drop = bad = near = ~torch.isfinite(per)
        if cfg.backtrack:
            over = self.term.saturation(a_o) - (self.saturated_y + 0.25).clamp(min=COLLAPSE)
            drop = bad | (over > 0) | (p_obs < self.last_psnr - cfg.backtrack_db)
            near = over > -0.05
        live = ~drop & self.active
        self.best_obs = torch.where(live, torch.maximum(self.best_obs, p_obs), self.best_obs)
        keep = live & ~near & (p_obs >= self.best_obs - cfg.backtrack_db)
        self.adam.keep(self.ckpt, keep)
        if cfg.backtrack_recover:   # (× 2^(1/n) per check without a drop, up to 1)
            self.adam.rescale(keep, 2 ** (1 / cfg.backtrack_recover))
        self.last_psnr = torch.where(keep, p_obs, self.last_psnr)
        self.bad_count += bad.int()
        self.restore = drop & self.active
        self.restores += self.restore.int()
        self.good_out = o.clone() if self.good_out is None else _where(keep, o, self.good_out)

    def track_best(self, i, p_gt, o):
        """The oracle's best output so far (best PSNR to the ground truth)."""
        better = (p_gt > self.best_psnr) & self.active
        self.best_psnr = torch.where(better, p_gt, self.best_psnr)
        self.best_it = torch.where(better, torch.full_like(self.best_it, i), self.best_it)
        self.best_out = o.clone() if self.best_out is None else _where(better, o, self.best_out)

    def hold(self):
        """After the step: members that backtracked get their checkpoint (weights, moments, step
        count) back at half the step size; stopped members their checkpoint's weights only."""
        restore, self.restore = self.restore, None
        held = ~self.active if restore is None else restore | ~self.active
        if self.dev.type == "cpu" and not bool(held.any()):   # (free on a CPU, a sync on CUDA)
            return
        self.adam.load(self.ckpt, held, weights_only=restore is None)
        if restore is not None:
            self.adam.rescale(restore, 0.5)

    def sync(self, i, final=False):
        """Once per chunk: copy the logged rows to the host, report, and return True when every
        member has stopped (a member whose loss went NaN/Inf twice stops too)."""
        if self.rows:
            self.host_rows.append(torch.stack(self.rows).cpu().numpy())
            self.host_its.extend(self.its_logged)
            self.rows.clear()
            self.its_logged.clear()
        gone = (self.bad_count >= 2)
        if bool(gone.any()):
            if bool((gone & self.active).any()):
                self.warnings.append(f"loss became NaN/Inf twice at iteration <= {i}; kept the "
                                     "last good output of the affected member(s)")
            self.active &= ~gone
            self.nan_stopped = gone if self.nan_stopped is None else gone | self.nan_stopped
        if self.pbar is not None and self.host_rows:
            last = self.host_rows[-1][-1]
            shown = ["psnr_obs"] + ([] if self.gt is None else ["psnr_gt"] + ["psnr_ema"] * bool(
                self.cfg.use_ema))      # psnr_ema: the result where use_ema
            post = {"loss": f"{np.nanmean(last[:, 0]):.5f}",
                    **{k: f"{np.nanmean(last[:, MEASURES.index(k)]):.2f}" for k in shown}}
            self.pbar.set_postfix(post, refresh=False)
            self.pbar.update(i + 1 - self.pbar.n)
        for cb in () if final else self.callbacks:
            cb(i, self.good_out)
        if not final and past_deadline():
            raise DeadlineReached
        return not bool(self.active.any())

    def all_stopped(self, i) -> bool:
        """On a CPU after a measure: has every member stopped? (on a GPU: the next sync)"""
        return (self.dev.type == "cpu" and i % self.cfg.log_every == 0
                and not bool(self.active.any()))

    def tick(self, i):
        """After iteration ``i``: a CPU's progress bar; once, ``on_rate`` (rate of 1..)."""
        cpu = self.dev.type == "cpu"
        if self.pbar is not None and cpu:
            self.pbar.update(i + 1 - self.pbar.n)
        if self.on_rate is None:
            return
        start, now = self.rate_start, time.perf_counter()
        if start is not None and not (i >= RATE_ITERS or i + 1 == self.cfg.iters
                                      or (cpu and now - start >= RATE_SECONDS)):
            return
        if not cpu:             # (twice: at the start and at the report)
            torch.cuda.synchronize(self.dev)
            now = time.perf_counter()
        if start is None:
            self.rate_start = now
        else:
            report, self.on_rate = self.on_rate, None
            report((now - start) / i, self.cfg.iters)

    # ------------------------------------------------------------------ the loops
    def run(self) -> FitResult:
        """Run the fit (Ctrl-C returns what was done) and return its result."""
        cfg = self.cfg
        if not cfg.quiet:
            from tqdm import tqdm
            self.pbar = tqdm(total=cfg.iters, desc="fit", dynamic_ncols=True, leave=True)
        t0 = time.perf_counter()
        self.last_i, interrupted = -1, False
        with cudnn_settings(self.dev, cfg.tf32), warnings_above_bar(self.pbar is not None):
            try:
                self._adam_loop() if cfg.optimizer == "adam" else self._lbfgs_loop()
            except KeyboardInterrupt as e:
                interrupted = True
                who = ("stopped at the time limit of the invocation"
                       if isinstance(e, DeadlineReached) else "interrupted (Ctrl-C or SIGTERM)")
                self.warnings.append(f"{who} after {self.last_i + 1} iterations")
            self.sync(self.last_i, final=True)
            if self.dev.type == "cuda":
                torch.cuda.synchronize(self.dev)
        seconds = time.perf_counter() - t0
        if self.pbar is not None:
            self.pbar.close()
        self.members.unstack()
        return self.result(max(self.last_i + 1, 0), seconds, interrupted)

    def _adam_loop(self):
        cfg = self.cfg
        for i in range(cfg.iters):
            self.adam.zero_grad()
            self.step(i)
            self.last_i = i     # logged, measured (Ctrl-C before this line: i does not count)
            self.adam.step()
            if self.restore is not None or self.M > 1:
                self.hold()
            self.tick(i)
            if (i + 1) % cfg.sync_every == 0 or i + 1 == cfg.iters or self.all_stopped(i):
                if self.sync(i):
                    break

    def _lbfgs_loop(self):
        """DIP's L-BFGS option: 100 Adam steps at lr 0.001, then L-BFGS for the rest."""
        cfg = self.cfg
        warm = min(100, cfg.iters)
        for i in range(warm):
            self.adam.zero_grad()
            self.step(i)
            self.last_i = i
            self.adam.step()
            self.hold()
            self.tick(i)
        lbfgs = torch.optim.LBFGS([self.members.flat], lr=cfg.lr,
                                  max_iter=max(cfg.iters - warm, 1), tolerance_grad=-1,
                                  tolerance_change=-1)
        _Done = type("_Done", (Exception,), {})      # the closure's way out of L-BFGS

        def closure():
            lbfgs.zero_grad(set_to_none=True)
            i = self.last_i + 1
            if i >= cfg.iters:
                raise _Done
            loss = self.step(i)
            self.last_i = i
            self.tick(i)
            if ((i + 1) % cfg.sync_every == 0 or self.all_stopped(i)) and self.sync(i):
                raise _Done
            return loss

        try:
            lbfgs.step(closure)
        except _Done:
            pass

    # ------------------------------------------------------------------ the result
    def result(self, iterations, seconds, interrupted) -> FitResult:
        """The chosen output per member: the stop rule's or the last good one, the moving
        average with ``use_ema``, the oracle's best with ``oracle`` (a member stopped by
        NaN/Inf losses keeps its last good output).  A member the rule has not stopped when the
        iterations run out (a minimum younger than the patience, or a validation loss that has
        not risen past the stall guard) returns its last output (or moving average)."""
        M = self.M
        if self.good_out is None:   # interrupted before the first iteration: the initial output
            with torch.no_grad():
                self.good_out = self.members(self.z0).float()
            self.ema = self.good_out.clone()
        table = np.concatenate(self.host_rows or [np.zeros((0, M, len(MEASURES)))])
        history = {name: table[:, :, k] for k, name in enumerate(MEASURES)}
        history["iteration"] = np.asarray(self.host_its, dtype=np.int64)
        chosen = (self.ema if self.cfg.use_ema else self.good_out).clone()
        stop_its = [None] * M
        rule = self.stop_rule
        if rule is not None and rule.output is not None:
            stopped, its = rule.finish().cpu(), rule.stop_iteration.cpu()   # finish first
            for m in range(M):
                if bool(stopped[m]):
                    stop_its[m] = int(its[m])
                    chosen[m] = rule.output[m]   # (the moving average's with use_ema)
                    if self.cfg.use_ema:    # the average at the stop, not at the decision
                        self.ema[m] = rule.output[m]
        best_its = [int(v) if v >= 0 else None for v in self.best_it.cpu().tolist()]
        if self.cfg.oracle and self.best_out is not None:
            chosen = self.best_out.clone()
        for m in range(M) if self.nan_stopped is not None else ():
            if bool(self.nan_stopped[m]) and stop_its[m] is None:   # (run_on: the stop's stays)
                chosen[m] = self.good_out[m]
        restores = self.restores.cpu().tolist()
        self.warnings += [self.members.note] if self.members.note else []
        if any(restores):
            self.warnings.append(f"backtracked {', '.join(map(str, restores))} time(s) (per "
                                 "member): the weights went back to the last good checkpoint and "
                                 "the step size was halved each time")
        return FitResult(output=chosen.cpu(), last_output=self.good_out.cpu(),
                         ema_output=self.ema.cpu(), stop_iteration=stop_its, best_iteration=best_its,
                         best_output=None if self.best_out is None else self.best_out.cpu(),
                         history=history, iterations=iterations, seconds=seconds,
                         its_per_sec=iterations / seconds if seconds > 0 else float("nan"),
                         device=device_name(self.dev), interrupted=interrupted,
                         warnings=self.warnings, restores=restores,
                         holdout=None if self.term.holdout is None else self.term.holdout.cpu())


def fit(nets, net_input, data_term, config: FitConfig | None = None, target=None,
        region=None, callbacks=(), observers=(), on_rate=None) -> FitResult:
    """``Fit(...).run()``: fit ``nets`` to ``data_term`` and return the result (see Fit)."""
    return Fit(nets, net_input, data_term, config, target, region, callbacks, observers,
               on_rate).run()
