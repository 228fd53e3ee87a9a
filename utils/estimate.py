"""The line a run prints before its long work: how long the fit (and the rest of a folder) will
take, from the rate of its first iterations (``utils.fit.Fit``'s ``on_rate``), and how to make a
long one shorter.

    estimate: 0.16 s per iteration, at most 1 min 36 s for this image's 600 iterations; ...

The rest of a folder is priced at this image's rate per pixel (the pixels the net computes: its
size after ``--crop``, padded as the fit pads it): the same task and net cost about the same per
pixel and iteration, once an image is large enough that the per-iteration costs that do not grow
with it (σ_max of every conv, the measures) are a small part.  From an image under 128×128 the
larger images after it are not priced (a 24×24 image priced a 40×400 one at 26 minutes, which
took 4); each says its own time when it starts.  "At most": a stop rule may end a fit sooner.
"""
from __future__ import annotations

import contextlib
import sys
import warnings

LONG_S = 15 * 60    # an estimate past this says how to make the run shorter
SMALL = 128 * 128   # pixels: below this, an image's rate per pixel does not price larger ones


def duration(seconds: float) -> str:
    """``0.4 s``, ``3 s``, ``42 s``, ``3 min 05 s``, ``2 h 07 min``: tenths of a second below
    10 s, so that a sub-second tile does not read ``0 s``."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f}".rstrip("0").rstrip(".") + " s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def padded_multiple(hw, multiple: int = 32, min_size: int = 64) -> int:
    """The multiple an image of (h, w) is reflect-padded to (``utils.task.prepare``): ``multiple``,
    or ``min_size`` where a side is under it (the decoder needs a code of at least 2×2)."""
    return max(multiple, min_size) if min(hw) < min_size else multiple


def fitted_pixels(shape, cfg: dict) -> int:
    """The pixels the net computes for an image (h, w, ...): after the ``crop`` entry's centre
    crop, cut to multiples of 32 (``crop32``) or padded as ``utils.task.prepare`` pads it, to
    multiples of 32, of 64 where a side is under 64 (a 24×24 image is fitted at 64×64)."""
    h, w = shape[:2]
    c = int(cfg.get("crop") or 0)
    h, w = (min(h, c), min(w, c)) if c else (h, w)
    if cfg.get("crop32"):
        return (h - h % 32) * (w - w % 32)
    m = padded_multiple((h, w))
    return -(-h // m) * m * (-(-w // m) * m)


def estimate_line(rate: float, iters: int, pixels: int, rest_pixels: int = 0,
                  rest_images: int = 0, stops: bool = True, share: float = 1.0,
                  tiles: int = 0) -> str:
    """The line: ``rate`` seconds per iteration of this image (``pixels`` fitted), or of one of
    its ``tiles`` left to fit (``share`` of the image: a tiled fit resumed), ``iters``
    iterations; ``rest_images`` more images of ``rest_pixels`` pixels in all after it."""
    mine = rate * iters * max(tiles, 1)
    bound = "at most " if stops else ""
    what = (f"this image's {iters} iterations" if not tiles else
            f"this image's {tiles} tiles, {iters} iterations each" if share >= 1 else
            f"the {tiles} tiles left of this image, {iters} iterations each")
    per = " of a tile" if tiles else ""
    line = f"estimate: {rate:.3g} s per iteration{per}, {bound}{duration(mine)} for {what}"
    total, many = mine, "s" if rest_images > 1 else ""
    if rest_images and pixels < SMALL and rest_pixels > 2 * rest_images * pixels:
        line += f"; the {rest_images} larger image{many} after it: an estimate as each starts"
    elif rest_images:
        total += mine * rest_pixels / max(pixels * share, 1)
        line += f"; about {duration(total)} for it and the {rest_images} image{many} after it"
    if total > LONG_S:
        line += ("; to make it shorter: --crop N (the centre only), --iters N, or a GPU "
                 "(--device cuda)")
    return line


def say(line: str, stream=None):
    """``line`` on stderr (or ``stream``), above a progress bar (``tqdm.write``), where stdout
    keeps the results."""
    from tqdm import tqdm
    tqdm.write(line, file=stream or sys.stderr)


@contextlib.contextmanager
def warnings_above_bar(active: bool):
    """While a progress bar is drawn (``active``): each warning as one ``warning: MESSAGE`` line
    above it (:func:`say`), where Python's own line would be overwritten by the bar's next
    redraw (a compile check's warning at a fit's first step was).  Not where warnings are
    recorded (``catch_warnings(record=True)``, ``pytest.warns``) or shown by a caller's own
    ``showwarning``: they stay the caller's."""
    impl = getattr(warnings, "_showwarnmsg_impl", None)        # a catch_warnings(record=True)
    recorded = getattr(impl, "__name__", "") != "_showwarnmsg_impl"     # or pytest.warns replaces
    if not active or recorded or warnings.showwarning is not warnings._showwarning_orig:
        yield                 # a caller records or shows warnings its own way: left to it
        return
    with warnings.catch_warnings():       # restores the display on the way out
        warnings.showwarning = lambda message, *_, **__: say(f"warning: {message}")
        yield


def printer(iters_stop: bool, pixels: int, rest_pixels: int = 0, rest_images: int = 0,
            stream=None, words=None):
    """An ``on_rate`` callback that prints :func:`estimate_line` (:func:`say`); its optional
    arguments: the share of the image left (a tiled fit resumed) and the tiles left.  words: a
    function that respells the line's options (``restore()``: ``crop=N`` for ``--crop N``)."""
    def report(rate, iters, share=1.0, tiles=0):
        line = estimate_line(rate, iters, pixels, rest_pixels, rest_images, iters_stop, share,
                             tiles)
        say(words(line) if words else line, stream)
    return report
