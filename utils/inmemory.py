"""In-memory images for the Python API (``tasks.restore``): a numpy array, a PIL image, a torch
tensor or a path in; the restored image out in the same type, dtype, layout and range.  The
rules follow the file loader's (utils/imageio.py), and everything else is refused with a
``TypeError`` or ``ValueError`` rather than turned into a white or black image:

* ``uint8`` is divided by 255, ``uint16`` by 65535; other integer types (int16..int64, uint32,
  uint64) are 8-bit when every value is in 0..255, 16-bit when in 0..65535; negative or larger
  values, and a type that cannot hold the range (int8; int16 above 255), are refused.
* floats (16/32/64-bit) are taken as they are in [0, 1]; values a little outside (within
  [-0.5, 1.5]: an unclipped noisy observation) are clipped, with a warning; anything else (a
  float array in 0–255) is refused: divide it by 255 first.
* a numpy masked array with any value masked: ``ValueError`` (its hidden values would be
  used as pixels): pass ``np.ma.getdata(a)`` for every pixel, or for inpainting that with
  ``mask=~np.ma.getmaskarray(a)``; one with nothing masked is its plain array.
* bool (a mask, not an image: ``mask=`` takes it, True = known), complex and object arrays:
  ``TypeError``.  NaN/Inf, an empty image, more than one image (a 4-D array, a tensor batch of
  N > 1), channels other than 1..4 and sides under ``MIN_SIZE`` (16, as on the command line):
  ``ValueError``.
* numpy: (H, W) or (H, W, C); torch: (H, W), (C, H, W) or (1, C, H, W).  C = 2 or 4: the last
  channel is alpha, put back unchanged on the output.
* PIL: every mode the file loader reads ('I;16' by 65535, 'I' in 0..65535, 'F' in [0, 1], ...);
  the output has the same mode, except palette ('P', 'PA') → RGB(A), '1' → 'L', and CMYK,
  YCbCr, LAB, HSV → RGB.  A path gives a PIL image (16-bit gray as 'I;16'; 16-bit colour, which
  PIL cannot hold, as 8-bit RGB: ``Restored.array`` has the full precision).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from utils.imageio import (ImageError, LoadedImage, attach_alpha, from_pixels, load_image,
                           pil_pixels, quantise)


@dataclass
class Like:
    """What the input was, to give the output back alike."""
    kind: str                      # numpy | tensor | pil | path
    dtype: object = None           # numpy or torch dtype
    scale: float = 1.0             # the value meaning white: 255, 65535 or 1.0
    layout: str = "HWC"            # HW | HWC | CHW | 1CHW
    mode: str = ""                 # PIL mode of the output
    alpha: np.ndarray | None = None


def _white(a: np.ndarray, what: str, notes: list) -> float:
    """The value meaning white for an array's dtype and values (the rules above); a clip of
    floats a little outside [0, 1] is said in ``notes`` (``restore`` warns them at its caller's
    line)."""
    if a.dtype == np.bool_:
        raise TypeError(f"{what}: a boolean array is a mask, not an image (inpainting takes "
                        "it as mask=, True = known)")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"{what}: pixels of type {a.dtype} are not supported (integers or "
                        "floats)")
    if a.size == 0:
        raise ValueError(f"{what}: the image is empty")
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError(f"{what}: NaN or infinite pixel values")
        lo, hi = float(a.min()), float(a.max())
        if lo < -0.5 or hi > 1.5:
            raise ValueError(f"{what}: float pixels must be in [0, 1], found {lo:.4g}..{hi:.4g} "
                             "(divide 8-bit data by 255, 16-bit data by 65535)")
        if lo < 0 or hi > 1:
            notes.append(f"{what}: float pixels in {lo:.4g}..{hi:.4g} are clipped to [0, 1]")
        return 1.0
    if a.dtype in (np.uint8, np.uint16):
        return 255.0 if a.dtype == np.uint8 else 65535.0
    lo, hi = int(a.min()), int(a.max())
    if lo < 0:
        raise ValueError(f"{what}: negative pixel values ({lo}) in a {a.dtype} image")
    if hi > 65535:
        raise ValueError(f"{what}: {a.dtype} pixels up to {hi}; integer images are 0..255 "
                         "(8-bit) or 0..65535 (16-bit)")
    white = 255.0 if hi <= 255 else 65535.0
    if np.iinfo(a.dtype).max < white:   # the output could not be given back in this dtype
        raise TypeError(f"{what}: {a.dtype} cannot hold {'8' if white == 255 else '16'}-bit "
                        f"pixels (0..{white:.0f}); pass {'uint8' if white == 255 else 'uint16'}")
    return white


def _from_hwc(a: np.ndarray, what: str, like: Like) -> tuple[LoadedImage, Like]:
    if a.ndim != 3 or not 1 <= a.shape[2] <= 4:
        raise ValueError(f"{what}: an image has 1 to 4 channels (H, W, C), got shape "
                         f"{a.shape}")
    notes = []
    like.scale = _white(a, what, notes)
    pixels = np.clip(a.astype(np.float32), 0, 1) if like.scale == 1.0 else a
    img = from_pixels(pixels, like.scale, "", what)     # mode "": from the channels
    img.notes += notes
    like.alpha = img.alpha
    return img, like


def _from_pil(image: Image.Image) -> tuple[LoadedImage, Like]:
    what = "PIL image"
    pixels, white = pil_pixels(what, image)
    pixels = pixels if pixels.ndim == 3 else pixels[..., None]
    img = from_pixels(pixels, white, image.mode, "image")
    if getattr(image, "n_frames", 1) > 1:
        img.notes.append(f"{what}: {image.n_frames} frames: the first frame only is used")
    mode = image.mode if image.mode in ("I", "F") or image.mode.startswith("I;16") else \
        img.plain_mode
    return img, Like("pil", scale=white, mode="I;16" if mode.startswith("I;16") else mode,
                     alpha=img.alpha)


def from_memory(image) -> tuple[LoadedImage, Like]:
    """A path, PIL image, numpy array or torch tensor as a LoadedImage, and how to give the
    result back (``to_memory``); TypeError/ValueError for what the rules above refuse."""
    if isinstance(image, (str, Path)):
        img = load_image(image)
        mode = "I;16" if img.bit_depth == 16 and img.plain_mode == "L" else img.plain_mode
        return img, Like("path", mode=mode, alpha=img.alpha)
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        layout = {2: "HW", 3: "CHW", 4: "1CHW"}.get(t.dim())
        if layout is None or (t.dim() == 4 and t.shape[0] != 1):
            raise ValueError(f"tensor image: expected (H, W), (C, H, W) or (1, C, H, W), got "
                             f"shape {tuple(t.shape)} (pass one image)")
        if t.dim() > 2 and not 1 <= t.shape[-3] <= 4:
            hwc = " (an (H, W, C) tensor: pass t.permute(2, 0, 1))" if 1 <= t.shape[-1] <= 4 \
                else ""
            raise ValueError(f"tensor image: a tensor is (C, H, W) or (1, C, H, W) with 1 to 4 "
                             f"channels, got shape {tuple(t.shape)}{hwc}")
        a = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
        a = a[..., None] if t.dim() == 2 else np.moveaxis(a[0] if t.dim() == 4 else a, 0, -1)
        return _from_hwc(a, "tensor image", Like("tensor", dtype=t.dtype, layout=layout))
    if isinstance(image, np.ma.MaskedArray):
        hidden = int(np.count_nonzero(np.ma.getmaskarray(image)))
        if hidden:
            raise ValueError(
                f"array image: a masked array with {hidden} of {image.size} values masked; "
                "restore() would use the hidden values under the mask: pass np.ma.getdata(a) "
                "to restore from every pixel, or for inpainting that with "
                "mask=~np.ma.getmaskarray(a) (True = known pixel)")
        image = np.ma.getdata(image)    # nothing hidden: the pixels are all there is
    if isinstance(image, np.ndarray) or hasattr(image, "__array__"):
        a = np.asarray(image)
        if a.ndim not in (2, 3):
            raise ValueError(f"array image: expected (H, W) or (H, W, C), got shape {a.shape} "
                             "(pass one image)")
        return _from_hwc(a if a.ndim == 3 else a[..., None], "array image",
                         Like("numpy", dtype=a.dtype, layout="HW" if a.ndim == 2 else "HWC"))
    raise TypeError(f"an image is a path, PIL image, numpy array or torch tensor, got "
                    f"{type(image).__name__}")


class MaskInMemory(str):
    """An inpainting mask given to ``restore(mask=...)`` as an array, PIL image or tensor (white,
    or True, = known pixel): the name that messages and records give it (``mask=`` with its
    type), carrying its pixels (``image``) for ``utils.imageio.load_mask``, which checks it as
    it checks a mask file (its size, two values or ``mask_threshold``)."""
    image: LoadedImage

    def __new__(cls, mask):
        what = f"mask= ({type(mask).__name__})"
        if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
            mask = mask.cpu().numpy()
        if isinstance(mask, np.ndarray) and mask.dtype == bool:   # True = known
            mask = mask.astype(np.uint8) * 255
        try:
            image, _ = from_memory(mask)
        except ImageError as e:
            raise ImageError(what, e.problem) from None
        except (TypeError, ValueError) as e:
            raise type(e)(f"{what}: {e}") from None
        self = super().__new__(cls, what)
        self.image = image
        image.notes[:] = [f"{what}: {n}" for n in image.notes]
        return self


def to_memory(array: np.ndarray, like: Like):
    """The restored (H, W, C) float array in [0, 1] in the input's type, range and layout,
    with the input's alpha put back."""
    a = attach_alpha(np.clip(array, 0, 1).astype(np.float32), like.alpha)
    if like.kind in ("pil", "path"):
        if like.mode == "F":
            return Image.fromarray(a[..., 0].astype(np.float32), "F")
        if like.mode in ("I", "I;16"):
            q = quantise(a[..., 0], 65535)
            return Image.fromarray(q.astype(np.int32), "I") if like.mode == "I" else \
                Image.fromarray(q)
        q = quantise(a)
        return Image.fromarray(q[..., 0] if q.shape[-1] == 1 else q)
    if like.scale == 1.0:
        out = a
    else:
        out = quantise(a, int(like.scale))
    if like.layout == "HW":
        out = out[..., 0]
    if like.kind == "numpy":
        return out.astype(like.dtype)
    t = torch.from_numpy(np.ascontiguousarray(out.astype(np.float32) if like.scale == 1.0
                                              else out.astype(np.int64)))
    t = t if like.layout == "HW" else t.permute(2, 0, 1)
    return (t[None] if like.layout == "1CHW" else t).contiguous().to(like.dtype)
