"""Figures: the five FBC bands (Shi et al. IJCV 2022, Fig. 2), PSNR curves, PSNR with the
blur/sharpness ratio and the stop iteration (Sec. 4.3), and side-by-side montages.

Each figure is drawn by a panel function on a matplotlib axis, so a run's own figures
(utils/cli.py) and the paper's multi-panel figures (paper/figures.py) draw the same thing.
matplotlib with the Agg backend, imported at the first figure (not at import: it adds about
0.7 s to every script's start, --help and errors included); every file is written atomically.
"""
from __future__ import annotations

import io

import numpy as np

from utils.atomic import atomic_write_bytes


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported once, when a figure is first drawn)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot
    return matplotlib.pyplot


def save_figure(fig, path, dpi=110):
    """Write a matplotlib figure as PNG atomically and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def fbc_panel(ax, iterations, bands, title="frequency-band correspondence", mark=None):
    """The FBC of the five bands (low → high frequency) against iteration; ``mark`` an
    (iteration, label) drawn as a dashed line."""
    colors = pyplot().cm.viridis(np.linspace(0, 0.9, len(bands)))
    for k, band in enumerate(bands):
        ax.plot(iterations, band, color=colors[k], label=f"band {k + 1}")
    if mark is not None:
        ax.axvline(mark[0], color="k", ls="--", lw=1, label=mark[1])
    ax.set(xlabel="iteration", ylabel="FBC", ylim=(0, 1.05), title=title)
    ax.legend(fontsize=7, ncol=3, loc="lower right")


def psnr_panel(ax, curves, title=None):
    """PSNR to the ground truth against iteration; ``curves`` (label, iterations, psnr)."""
    for label, it, p in curves:
        ax.plot(it, p, lw=1, label=label)
    ax.set(xlabel="iteration", ylabel="PSNR to ground truth (dB)", title=title)
    ax.legend(fontsize=7)


def psnr_ratio_panel(ax, iterations, psnr, ratio, psnr_label="PSNR", stop=None, title=None,
                     best=None):
    """PSNR and the blur/sharpness ratio on a twin log axis (the first ratios, in the
    thousands for the random initial output, would flatten a linear one); ``stop`` and ``best``
    are (iteration, label) pairs drawn as dashed and dotted lines."""
    ax.plot(iterations, psnr, color="tab:blue", label=psnr_label)
    ax.set(xlabel="iteration", ylabel="PSNR (dB)")
    if title:
        ax.set_title(title, fontsize=8 if len(title) > 60 else None)
    ax2 = ax.twinx()
    ax2.plot(iterations, ratio, color="tab:orange", lw=1, label="blur/sharpness")
    ax2.set_ylabel("blurriness / sharpness (log)")
    if (np.asarray(ratio) > 0).any():            # a log axis needs a positive value
        ax2.set_yscale("log")
    if stop is not None:
        ax.axvline(stop[0], color="k", ls="--", lw=1, label=stop[1])
    if best is not None:
        ax.axvline(best[0], color="tab:green", ls=":", lw=1.5, label=best[1])
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
    return ax2


def fbc_figure(history, path, member=0, title="frequency-band correspondence", mark=None):
    """A fit's FBC (``FitResult.history``) against iteration, one figure."""
    fig, ax = pyplot().subplots(figsize=(6, 3.6))
    fbc_panel(ax, history["iteration"], [history[f"fbc{k + 1}"][:, member] for k in range(5)],
              title, None if mark is None else (mark, f"iteration {mark}"))
    save_figure(fig, path)


def psnr_ratio_figure(history, path, stop_iteration=None, member=0, title=None):
    """A fit's PSNR (to ground truth when known, else to the observation) and ratio, with the
    stop iteration and the best one (best PSNR to the ground truth) marked."""
    has_gt = np.isfinite(history["psnr_gt"][:, member]).any()
    key = "psnr_gt" if has_gt else "psnr_obs"
    best = None
    if has_gt:
        k = int(np.nanargmax(history["psnr_gt"][:, member]))
        it = int(history["iteration"][k])
        best = (it, f"best {history['psnr_gt'][k, member]:.2f} dB at {it}")
    fig, ax = pyplot().subplots(figsize=(6, 3.6))
    psnr_ratio_panel(ax, history["iteration"], history[key][:, member],
                     history["ratio"][:, member],
                     "PSNR to ground truth" if has_gt else "PSNR to observation",
                     None if stop_iteration is None else (stop_iteration,
                                                          f"stop at {stop_iteration}"), title,
                     best)
    save_figure(fig, path)


def montage(images, titles, path, cols=None):
    """Images (H, W, C) in [0, 1] side by side with titles."""
    n = len(images)
    cols = cols or n
    rows = (n + cols - 1) // cols
    fig, axes = pyplot().subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t in zip(axes.flat, images, titles):
        img = np.clip(img, 0, 1)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(t, fontsize=8)
    save_figure(fig, path)
