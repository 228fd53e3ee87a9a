"""The one optimisation loop of the project: fit ``f_θ(z)`` to a degraded observation.

Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018): minimise ``E(A f_θ(z), y)`` over θ
from a random init; the architecture is the prior.  This loop adds DIP's tricks (input
perturbation, an exponential moving average of outputs, backtracking on a PSNR drop) and the
instruments of Shi et al. (IJCV 2022): the frequency-band correspondence (Sec. 3) and the
blurriness/sharpness ratio whose plateau stops the fit (Sec. 4.3, Eq. 8).

Everything inside the iteration stays on the device: measures, stop rules, backtracking and the
log rows are tensors; the host sees them once per ``sync_every`` iterations (one copy per chunk).

Batched independent fits: pass a list of nets (same architecture, independent weights) and a
code per member; they are fitted together with ``torch.func`` (stacked weights + ``vmap``), every
member with its own loss, stop rule and backtracking, giving the numbers of separate fits.
"""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from models.layers import LipschitzConv2d
from utils.metrics import psnr
from utils.spectral import frequency_band_correspondence
from utils.stopping import RatioStop, VarianceStop, blur_sharpness_ratio

MAX_RESTORES = 3  # consecutive backtracking restores before the checkpoint moves on
MEASURES = ("loss", "psnr_obs", "psnr_gt", "psnr_ema", "fbc1", "fbc2", "fbc3", "fbc4", "fbc5",
            "ratio")


@dataclass
class FitConfig:
    """Hyper-parameters of the loop (the task scripts fill them from their config block)."""
    iters: int = 10000
    lr: float = 0.001
    optimizer: str = "adam"          # adam | lbfgs (DIP: 100 Adam steps, then L-BFGS)
    seed: int = 0
    device: str = "auto"             # auto = CUDA when present, else CPU
    reg_noise_std: float = 0.0       # DIP's input perturbation z + N(0, std) each iteration
    exp_weight: float = 0.99         # EMA of outputs (DIP)
    backtrack: bool = True           # restore weights when PSNR to y drops by > backtrack_db
    backtrack_db: float = 5.0
    log_every: int = 1               # measures every k iterations (1 = the paper's curves)
    stop: str = "ratio"              # ratio | variance | none
    stop_window: int = 100           # n of Eq. 8 / the variance window
    stop_eps: float = 0.01           # ε of Eq. 8
    stop_patience: int = 1000        # VarianceStop patience
    oracle: bool = False             # return the best-PSNR-to-GT output (needs ground truth)
    sync_every: int = 100            # host copies happen once per this many iterations
    quiet: bool = False
    amp: str = "none"                # none | bf16 (convolutions in bf16, loss/measures fp32)
    compile: bool = False            # torch.compile the forward
    channels_last: bool = False
    sigma_method: str = "auto"       # svdvals | eigvalsh | auto (all exact, see models.layers)


@dataclass
class FitResult:
    output: torch.Tensor             # (M, C, H, W) the chosen output: stop / oracle / last
    last_output: torch.Tensor        # output of the last iteration run
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


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA too


class _Members:
    """Uniform view of one net or several stacked ones: ``forward(z) -> (M, C, H, W)`` and a list
    of parameter tensors whose leading dim is the member (for per-member masks)."""

    def __init__(self, nets, device, cfg):
        nets = nets if isinstance(nets, (list, tuple)) else [nets]
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        for n in nets:
            n.to(device, memory_format=fmt)
        self.count, self.nets = len(nets), nets
        if self.count == 1:
            net = nets[0]
            self.params = [p for p in net.parameters() if p.requires_grad]
            self._forward = net
            self.stacked = False
        else:
            from torch.func import functional_call, stack_module_state, vmap
            params, buffers = stack_module_state(nets)
            self.param_dict = {k: v.requires_grad_(True) for k, v in params.items()}
            self.params = list(self.param_dict.values())
            base = copy.deepcopy(nets[0]).to("meta")

            def one(p, b, z):
                return functional_call(base, (p, b), (z[None],))[0]

            batched = vmap(one)
            self._forward = lambda z: batched(self.param_dict, buffers, z)
            self.stacked = True
        if cfg.compile:
            self._forward = torch.compile(self._forward)

    def __call__(self, z):
        return self._forward(z)

    def member_view(self, mask, p):
        """Reshape a (M,) mask to broadcast against parameter ``p``."""
        return mask.view(-1, *([1] * (p.dim() - 1))) if self.stacked else mask.view([1] * p.dim())

    def unstack(self):
        """Write stacked weights back into the individual nets (after a batched fit)."""
        if self.stacked:
            with torch.no_grad():
                for i, net in enumerate(self.nets):
                    for name, p in net.named_parameters():
                        p.copy_(self.param_dict[name][i])


def fit(nets, net_input, data_term, config: FitConfig | None = None, target=None,
        region=None, callbacks=()) -> FitResult:
    """Fit one net (or a list of independent nets) so that ``data_term`` of its output matches.

    nets: a ``models.DIPNet`` or a list of them (batched independent fits, Adam only).
    net_input: the code z, (M, C, h, w) with one code per member.
    data_term: a ``utils.physics.DataTerm`` whose observation has batch M.
    target: ground truth (M, C, H, W) for reporting (PSNR/SSIM to GT); never used to choose the
        output unless ``config.oracle``.
    region: (h, w) of the true image when the output is padded; measures use this crop.
    callbacks: callables ``cb(iteration, output)`` run at each host sync (e.g. snapshots).
    """
    cfg = config or FitConfig()
    dev = resolve_device(cfg.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    LipschitzConv2d.sigma_method = cfg.sigma_method
    members = _Members(nets, dev, cfg)
    M = members.count
    if M > 1 and cfg.optimizer != "adam":
        raise ValueError("batched fits support the Adam optimizer only")
    seed_everything(cfg.seed)
    z0 = net_input.to(dev)
    if cfg.channels_last:
        z0 = z0.contiguous(memory_format=torch.channels_last)
    if z0.shape[0] != M:
        raise ValueError(f"net_input has batch {z0.shape[0]} but there are {M} nets")
    data_term = data_term.to(dev)
    y = data_term.observation
    gt = target.to(dev) if target is not None else None
    if cfg.oracle and gt is None:
        raise ValueError("oracle output needs a ground truth target")

    # output-space and observation-space crops of the true (unpadded) image
    def crop_out(t):
        return t if region is None else t[..., :region[0], :region[1]]

    def crop_obs(t):
        if region is None:
            return t
        oh = region[0] * y.shape[-2] // out_hw[0]
        ow = region[1] * y.shape[-1] // out_hw[1]
        return t[..., :oh, :ow]

    stop_rule = {"ratio": lambda: RatioStop(cfg.stop_window, cfg.stop_eps),
                 "variance": lambda: VarianceStop(cfg.stop_window, cfg.stop_patience),
                 "none": lambda: None}[cfg.stop]()
    use_fused = dev.type == "cuda"
    adam = torch.optim.Adam(members.params, lr=cfg.lr if cfg.optimizer == "adam" else 0.001,
                            fused=use_fused or None)
    ckpt = [p.detach().clone() for p in members.params]
    y_obs = None
    state = dict(
        active=torch.ones(M, dtype=torch.bool, device=dev),
        last_psnr=torch.full((M,), -math.inf, device=dev),
        bad_count=torch.zeros(M, dtype=torch.int32, device=dev),
        streak=torch.zeros(M, dtype=torch.int32, device=dev),
        best_psnr=torch.full((M,), -math.inf, device=dev),
        best_it=torch.full((M,), -1, dtype=torch.long, device=dev),
    )
    ema = good_out = best_out = None
    rows, host_rows, host_its, its_logged = [], [], [], []
    warn = []
    autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if cfg.amp == "bf16"
                else torch.autocast(dev.type, enabled=False))
    pbar = None
    if not cfg.quiet:
        from tqdm import tqdm
        pbar = tqdm(total=cfg.iters, desc="fit", dynamic_ncols=True, leave=True)

    def step_body(i):
        """Forward, loss, backward and (every log_every) the measures; returns the loss."""
        nonlocal ema, out_hw
        z = z0 + torch.randn_like(z0) * cfg.reg_noise_std if cfg.reg_noise_std > 0 else z0
        with autocast:
            out = members(z)
        if cfg.amp != "none":
            out = out.float()  # the loss and the measures stay in fp32
        out_hw = out.shape[-2:]
        per = data_term.loss(out)                     # (M,)
        # a stopped member gets no gradient (it is also held at its weights, see below)
        loss = torch.where(state["active"], per, torch.zeros_like(per)).sum()
        loss.backward()
        o = out.detach()
        ema = o.clone() if ema is None else ema.mul_(cfg.exp_weight).add_(o, alpha=1 - cfg.exp_weight)
        if i % cfg.log_every == 0:
            measure(i, o, per.detach())
        return loss

    def measure(i, o, per):
        nonlocal good_out, best_out, y_obs
        oc = crop_out(o)
        a_o = data_term(o)
        if y_obs is None:
            y_obs = crop_obs(y)
        p_obs = data_term.psnr_of(a_o)
        nan = torch.full((M,), float("nan"), device=dev)
        p_gt = psnr(oc, crop_out(gt)) if gt is not None else nan
        p_ema = psnr(crop_out(ema), crop_out(gt)) if gt is not None else nan
        fbc = frequency_band_correspondence(crop_obs(a_o), y_obs)
        ratio = blur_sharpness_ratio(oc)
        rows.append(torch.stack([per, p_obs, p_gt, p_ema, *fbc.T, ratio], 1))
        its_logged.append(i)
        # backtracking (DIP): a drop of PSNR to y by more than backtrack_db, or a non-finite loss,
        # restores the weights of the last checkpoint after this step; otherwise checkpoint now
        bad = ~torch.isfinite(per)
        drop = bad | (p_obs < state["last_psnr"] - cfg.backtrack_db) if cfg.backtrack else bad
        # DIP's rule can cycle: Adam's momentum repeats the step that was undone.  After
        # MAX_RESTORES restores in a row the current (finite) weights become the checkpoint.
        streak = torch.where(drop, state["streak"] + 1, torch.zeros_like(state["streak"]))
        drop = drop & (bad | (streak <= MAX_RESTORES))
        state["streak"] = torch.where(drop, streak, torch.zeros_like(streak))
        state["bad_count"] += bad.int()
        keep = ~drop & state["active"]
        for c, p in zip(ckpt, members.params):
            c.copy_(torch.where(members.member_view(keep, p), p.detach(), c))
        state["last_psnr"] = torch.where(keep, p_obs, state["last_psnr"])
        state["restore"] = drop
        good_out = o.clone() if good_out is None else torch.where(
            keep.view(-1, 1, 1, 1), o, good_out)
        if gt is not None:
            better = (p_gt > state["best_psnr"]) & state["active"]
            state["best_psnr"] = torch.where(better, p_gt, state["best_psnr"])
            state["best_it"] = torch.where(better, torch.full_like(state["best_it"], i),
                                           state["best_it"])
            best_out = o.clone() if best_out is None else torch.where(
                better.view(-1, 1, 1, 1), o, best_out)
        if stop_rule is not None:
            if cfg.stop == "ratio":
                stopped = stop_rule.update(i, ratio, output=o)
            else:
                stopped = stop_rule.update(i, o)
            state["active"] = state["active"] & ~stopped

    def after_step():
        """Restore weights of members that backtracked or stopped (held frozen)."""
        hold = state.pop("restore", None)
        inactive = ~state["active"]
        hold = inactive if hold is None else hold | inactive
        with torch.no_grad():
            for c, p in zip(ckpt, members.params):
                p.copy_(torch.where(members.member_view(hold, p), c, p))

    def sync(i, final=False):
        """Once per chunk: copy the logged rows to the host, report, decide to stop."""
        if rows:
            host_rows.append(torch.stack(rows).cpu().numpy())
            host_its.extend(its_logged)
            rows.clear()
            its_logged.clear()
        n_bad = state["bad_count"].cpu()
        if bool((n_bad >= 2).any()):
            gone = (n_bad >= 2).to(dev)
            if bool((gone & state["active"]).any()):
                warn.append(f"loss became NaN/Inf twice at iteration <= {i}; kept the last "
                            "good output of the affected member(s)")
            state["active"] &= ~gone
            state["nan_stopped"] = gone | state.get("nan_stopped", torch.zeros_like(gone))
        if pbar is not None and host_rows:
            last = host_rows[-1][-1]
            post = {"loss": f"{np.nanmean(last[:, 0]):.5f}", "psnr": f"{np.nanmean(last[:, 1]):.2f}"}
            if gt is not None:
                post["psnr_gt"] = f"{np.nanmean(last[:, 2]):.2f}"
            pbar.set_postfix(post, refresh=False)
            pbar.update(i + 1 - pbar.n)
        for cb in () if final else callbacks:
            cb(i, good_out)
        return not bool(state["active"].any())

    out_hw = y.shape[-2:]
    t0 = time.perf_counter()
    i = -1
    interrupted = False
    try:
        if cfg.optimizer == "adam":
            for i in range(cfg.iters):
                adam.zero_grad(set_to_none=True)
                step_body(i)
                adam.step()
                if "restore" in state or M > 1:
                    after_step()
                if (i + 1) % cfg.sync_every == 0 or i + 1 == cfg.iters:
                    if sync(i):
                        break
        elif cfg.optimizer == "lbfgs":
            i = _fit_lbfgs(cfg, members, adam, step_body, after_step, sync)
        else:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adam | lbfgs)")
    except KeyboardInterrupt:
        interrupted = True
        warn.append(f"interrupted by the user at iteration {i}")
    sync(i, final=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    if pbar is not None:
        pbar.close()
    members.unstack()
    return _result(cfg, state, stop_rule, members, good_out, ema, best_out, host_rows, host_its,
                   max(i + 1, 0), seconds, dev, interrupted, warn)


def _fit_lbfgs(cfg, members, adam, step_body, after_step, sync):
    """DIP's L-BFGS option: 100 Adam steps at lr 0.001, then L-BFGS for the remaining iterations."""
    warm = min(100, cfg.iters)
    for i in range(warm):
        adam.zero_grad(set_to_none=True)
        step_body(i)
        adam.step()
        after_step()
    lbfgs = torch.optim.LBFGS(members.params, lr=cfg.lr, max_iter=max(cfg.iters - warm, 1),
                              tolerance_grad=-1, tolerance_change=-1)
    counter = [warm]

    class _Done(Exception):
        pass

    def closure():
        lbfgs.zero_grad(set_to_none=True)
        i = counter[0]
        if i >= cfg.iters:
            raise _Done
        loss = step_body(i)
        counter[0] += 1
        if (i + 1) % cfg.sync_every == 0 and sync(i):
            raise _Done
        return loss

    try:
        lbfgs.step(closure)
    except _Done:
        pass
    return counter[0] - 1


def _result(cfg, state, stop_rule, members, good_out, ema, best_out, host_rows, host_its,
            iterations, seconds, dev, interrupted, warn) -> FitResult:
    M = members.count
    table = np.concatenate(host_rows) if host_rows else np.zeros((0, M, len(MEASURES)))
    history = {name: table[:, :, k] for k, name in enumerate(MEASURES)}
    history["iteration"] = np.asarray(host_its, dtype=np.int64)
    last = good_out if good_out is not None else torch.zeros(0)
    chosen = last.clone()
    stop_its = [None] * M
    if stop_rule is not None and stop_rule.output is not None:
        stopped = stop_rule.stopped.cpu()
        its = stop_rule.stop_iteration.cpu()
        for m in range(M):
            if bool(stopped[m]):
                stop_its[m] = int(its[m])
                chosen[m] = stop_rule.output[m]
    nan_stopped = state.get("nan_stopped")
    best_its = [int(v) if v >= 0 else None for v in state["best_it"].cpu().tolist()]
    if cfg.oracle and best_out is not None:
        chosen = best_out.clone()
    if nan_stopped is not None:
        for m in range(M):
            if bool(nan_stopped[m]):
                chosen[m] = good_out[m]
    its_per_sec = iterations / seconds if seconds > 0 else float("nan")
    return FitResult(output=chosen.cpu(), last_output=last.cpu(), ema_output=ema.cpu(),
                     stop_iteration=stop_its, best_iteration=best_its,
                     best_output=None if best_out is None else best_out.cpu(),
                     history=history, iterations=iterations, seconds=seconds,
                     its_per_sec=its_per_sec, device=_device_name(dev),
                     interrupted=interrupted, warnings=warn)


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return "cpu"

