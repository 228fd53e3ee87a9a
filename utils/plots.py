"""Figures of a fit: the five FBC bands (Shi et al. IJCV 2022, Fig. 2), PSNR and the
blur/sharpness ratio with the stop iteration marked (Sec. 4.3), and side-by-side montages.
matplotlib with the Agg backend; every file is written atomically."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.imageio import atomic_write_bytes  # noqa: E402


def save_figure(fig, path, dpi=110):
    """Write a matplotlib figure as PNG atomically and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def fbc_figure(history, path, member=0, title="frequency-band correspondence", mark=None):
    """FBC of the five bands (low → high frequency) against iteration."""
    it = history["iteration"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    colors = plt.cm.viridis(np.linspace(0, 0.9, 5))
    for k in range(5):
        ax.plot(it, history[f"fbc{k + 1}"][:, member], color=colors[k], label=f"band {k + 1}")
    if mark is not None:
        ax.axvline(mark, color="k", ls="--", lw=1, label=f"iteration {mark}")
    ax.set(xlabel="iteration", ylabel="FBC", ylim=(0, 1.05), title=title)
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    save_figure(fig, path)


def psnr_ratio_figure(history, path, stop_iteration=None, member=0, title=None):
    """PSNR (to ground truth when known, else to the observation) and the ratio on a twin axis."""
    it = history["iteration"]
    has_gt = np.isfinite(history["psnr_gt"][:, member]).any()
    key = "psnr_gt" if has_gt else "psnr_obs"
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(it, history[key][:, member], color="tab:blue",
            label="PSNR to ground truth" if has_gt else "PSNR to observation")
    ax.set(xlabel="iteration", ylabel="PSNR (dB)", title=title)
    ax2 = ax.twinx()
    ax2.plot(it, history["ratio"][:, member], color="tab:orange", lw=1, label="blur/sharpness")
    ax2.set_ylabel("blurriness / sharpness")
    if stop_iteration is not None:
        ax.axvline(stop_iteration, color="k", ls="--", lw=1, label=f"stop at {stop_iteration}")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="lower right")
    save_figure(fig, path)


def montage(images, titles, path, cols=None):
    """Images (H, W, C) in [0, 1] side by side with titles."""
    n = len(images)
    cols = cols or n
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t in zip(axes.flat, images, titles):
        img = np.clip(img, 0, 1)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(t, fontsize=8)
    save_figure(fig, path)


def psnr_curves(curves, path, title=None, marks=()):
    """PSNR against iteration for several runs: ``curves`` is a list of (label, iterations,
    psnr); ``marks`` a list of (label, iteration) drawn as dashed vertical lines."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, it, p in curves:
        ax.plot(it, p, label=label)
    for label, it in marks:
        ax.axvline(it, color="k", ls="--", lw=1, label=label)
    ax.set(xlabel="iteration", ylabel="PSNR to ground truth (dB)", title=title)
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)
