"""Figures: the five FBC bands (Shi et al. IJCV 2022, Fig. 2), PSNR curves, PSNR with the
blur/sharpness ratio and the stop iteration (Sec. 4.3), and side-by-side montages.

Each figure is drawn by a panel function on a matplotlib axis, so a run's own figures
(utils/cli.py) and the paper's multi-panel figures (paper/figures.py) draw the same thing.
matplotlib with the Agg backend, imported at the first figure (not at import: it adds about
0.7 s to every script's start, --help and errors included); every file is written atomically.
"""
from __future__ import annotations

import io
import textwrap

import numpy as np

from utils.atomic import atomic_write_bytes


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported once, when a figure is first drawn)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot
    return matplotlib.pyplot


def save_figure(fig, path, dpi=110, tight=True):
    """Write a matplotlib figure as PNG atomically and close it.  ``tight``: crop to what is
    drawn, which costs a second drawing of the figure (about 0.15 s per figure on a CPU core);
    a run's own figures have fixed margins instead (``_fixed_layout``), written once per image."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _wrapped(title, width):
    """A title folded onto lines of at most ``width`` characters (fixed margins do not grow
    with it), at most two: a longer one is cut with an ellipsis."""
    lines = textwrap.wrap(title, width) if title else []
    if len(lines) > 2:
        lines = [lines[0], textwrap.shorten(" ".join(lines[1:]), width, placeholder=" …")]
    return "\n".join(lines) or None


def _titles_inside(fig, smallest=5.0):
    """Shrink each axis title that reaches past the figure's left or right edge until it fits,
    down to ``smallest`` points, then cut its longest line (fixed margins do not grow with a
    long image name); measures the titles alone, without drawing the figure."""
    renderer, width = fig.canvas.get_renderer(), fig.bbox.width
    for ax in fig.axes:
        title = ax.title

        def outside():
            box = title.get_window_extent(renderer)
            return bool(title.get_text()) and (box.x0 < 0 or box.x1 > width)
        while outside() and title.get_fontsize() > smallest:
            title.set_fontsize(title.get_fontsize() - 0.5)
        lines = title.get_text().split("\n")
        while outside() and max(map(len, lines)) > 1:    # still too wide: one unbroken word
            k = max(range(len(lines)), key=lambda i: len(lines[i]))
            lines[k] = lines[k].rstrip("…")[:-1] + "…"
            title.set_text("\n".join(lines))


def _title(ax, text, fontsize=None):
    """An axis title at a fixed height: matplotlib's automatic placement lays out every tick
    label to clear what sits above the axes, which these plots never have (the same pixels,
    about a tenth of a figure's time)."""
    if text:
        ax.set_title(text, fontsize=fontsize, y=1.0)


def _fixed_layout(fig, right=0.97):
    """The margins of a run's 6 × 3.6 in plot: room for the tick labels, the axis labels and a
    title of two lines (``right`` < 1 leaves room for a twin axis's labels)."""
    fig.subplots_adjust(left=0.11, right=right, bottom=0.14, top=0.86)
    _titles_inside(fig)


def fbc_panel(ax, iterations, bands, title="frequency-band correspondence", mark=None):
    """The FBC of the five bands (low → high frequency) against iteration; ``mark`` an
    (iteration, label) drawn as a dashed line."""
    colors = pyplot().cm.viridis(np.linspace(0, 0.9, len(bands)))
    for k, band in enumerate(bands):
        ax.plot(iterations, band, color=colors[k], label=f"band {k + 1}")
    if mark is not None:
        ax.axvline(mark[0], color="k", ls="--", lw=1, label=mark[1])
    ax.set(xlabel="iteration", ylabel="FBC", ylim=(0, 1.05))
    _title(ax, title, 8 if title and len(title) > 60 else None)
    ax.legend(fontsize=7, ncol=3, loc="lower right")


def psnr_panel(ax, curves, title=None):
    """PSNR to the ground truth against iteration; ``curves`` (label, iterations, psnr)."""
    for label, it, p in curves:
        ax.plot(it, p, lw=1, label=label)
    ax.set(xlabel="iteration", ylabel="PSNR to ground truth (dB)")
    _title(ax, title)
    ax.legend(fontsize=7)


def psnr_ratio_panel(ax, iterations, psnr, ratio, psnr_label="PSNR", stop=None, title=None,
                     best=None, result=None):
    """PSNR and the blur/sharpness ratio on a twin log axis (the first ratios, in the
    thousands for the random initial output, would flatten a linear one); ``stop`` and ``best``
    are (iteration, label) pairs drawn as dashed and dotted lines, ``result`` an (iteration,
    PSNR) drawn as a star: the output returned (a moving average, the stop rule's choice),
    which the curve of the outputs logged every ``log_every`` iterations need not contain."""
    ax.plot(iterations, psnr, color="tab:blue", label=psnr_label)
    ax.set(xlabel="iteration", ylabel="PSNR (dB)")
    _title(ax, title, 8 if title and len(title) > 60 else None)
    ax2 = ax.twinx()
    ax2.plot(iterations, ratio, color="tab:orange", lw=1, label="blur/sharpness")
    ax2.set_ylabel("blurriness / sharpness (log)")
    if (np.asarray(ratio) > 0).any():            # a log axis needs a positive value
        ax2.set_yscale("log")
    if stop is not None:
        ax.axvline(stop[0], color="k", ls="--", lw=1, label=stop[1])
    if best is not None:
        ax.axvline(best[0], color="tab:green", ls=":", lw=1.5, label=best[1])
    if result is not None:
        ax.plot([result[0]], [result[1]], ls="none", marker="*", ms=10, color="tab:red",
                label=f"result {result[1]:.2f} dB")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
    return ax2


def fbc_figure(history, path, member=0, title="frequency-band correspondence", mark=None):
    """A fit's FBC (``FitResult.history``) against iteration, one figure."""
    fig, ax = pyplot().subplots(figsize=(6, 3.6))
    fbc_panel(ax, history["iteration"], [history[f"fbc{k + 1}"][:, member] for k in range(5)],
              _wrapped(title, 90), None if mark is None else (mark, f"iteration {mark}"))
    _fixed_layout(fig)
    save_figure(fig, path, tight=False)


def psnr_ratio_figure(history, path, stop_iteration=None, member=0, title=None, result=None):
    """A fit's PSNR (to ground truth when known, else to the observation) and ratio, with the
    stop iteration, the best one (best PSNR to the ground truth) and ``result`` (iteration,
    PSNR to the ground truth of the output returned) marked."""
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
                                                          f"stop at {stop_iteration}"),
                     _wrapped(title, 90), best, result if has_gt else None)
    _fixed_layout(fig, right=0.87)
    save_figure(fig, path, tight=False)


def montage(images, titles, path, cols=None):
    """Images (H, W, C) in [0, 1] side by side with titles (of up to two lines): each image in
    a cell 3.2 in wide, as tall as the tallest image's shape asks (0.8 to 6.4 in), with 0.4 in
    above it for its title."""
    n = len(images)
    cols = cols or n
    rows = (n + cols - 1) // cols
    cell = 3.2 * min(max(max(a.shape[0] / a.shape[1] for a in images), 0.25), 2.0)
    fig, axes = pyplot().subplots(rows, cols, figsize=(3.2 * cols, (cell + 0.4) * rows),
                                  squeeze=False)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02 / rows,
                        top=1 - 0.4 / ((cell + 0.4) * rows), wspace=0.05, hspace=0.4 / cell)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t in zip(axes.flat, images, titles):
        img = np.clip(img, 0, 1)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        _title(ax, _wrapped(t, 48), 8)
    _titles_inside(fig)
    save_figure(fig, path, tight=False)
