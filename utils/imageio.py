"""The project's one image I/O module.

Loading turns any image a user is likely to have (8/16-bit, gray/colour, with or without
alpha, palette, EXIF-rotated JPEG, 16-bit TIFF) into a float32 (H, W, C) array in [0, 1] with
C = 1 or 3; alpha is kept aside and put back unchanged on save, at the input's bit depth. Every
problem with an input file (a FIFO or a device too, refused unopened) becomes an
:class:`ImageError` whose message is one line naming the file, so task scripts can print
``error: <msg>`` and exit 2 instead of a traceback.

All writes (images here, the CSV/JSON/figure writers elsewhere) go through utils/atomic.py, so
an interrupted run never leaves a half-written file behind.  16-bit colour PNG, which Pillow
cannot read or write at full depth, goes through the small codec in utils/png16.py; 16-bit
colour TIFF through tifffile.
"""
from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import os
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image, ImageFile

from utils import png16
from utils.atomic import atomic_write

__all__ = [
    "IMAGE_EXTENSIONS", "ImageError", "LoadedImage", "load_image", "load_mask", "save_image",
    "to_tensor", "to_array", "pad_to_multiple", "crop_to", "center_crop_multiple",
    "list_images", "quantise", "to_uint8", "from_uint8", "MIN_SIZE",
    "pil_pixels", "from_pixels", "attach_alpha", "check_regular", "icc_matching",
]

# what a folder or a glob lists (Netpbm too); a single file is read whatever its name
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif",
                    ".ppm", ".pgm", ".pbm", ".pnm")
MIN_SIZE = 16   # the smallest image side the tasks take (files and arrays alike)
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP",
            ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}
_TIFF_SIGS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Everything a decoder may throw on a damaged file.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError,
                  KeyError, TypeError, struct.error, zlib.error)


class ImageError(ValueError):
    """A problem with an image file (or in-memory image); ``str()`` is one line:
    ``"<path>: <problem>"``.  A ValueError, so the Python API raises the documented type."""

    def __init__(self, path, problem: str):
        self.path, self.problem = path, problem
        # Newlines inside a path or a library message would break "one line".
        super().__init__(" ".join(f"{path}: {problem}".splitlines()))

    def __reduce__(self):  # picklable across worker processes despite the two-argument __init__
        return type(self), (self.path, self.problem)


@dataclass
class LoadedImage:
    """An image as the network sees it, plus what is needed to save it back alike.
    ``array``: float32 (H, W, C) in [0, 1], C = 1 (gray) or 3 (RGB).
    ``alpha``: float32 (H, W) in [0, 1] or None; re-attached unchanged on save.
    ``mode``: the original PIL mode ('L', 'RGB', 'RGBA', 'P', 'I;16', 'LA', ...).
    ``bit_depth``: 8 or 16, the depth used when saving results.
    """
    array: np.ndarray
    alpha: np.ndarray | None = None
    mode: str = ""
    bit_depth: int = 8
    path: Path | None = None
    name: str = "image"
    icc_profile: bytes | None = None  # kept so colour-managed photos keep their look
    notes: list = field(default_factory=list)  # warnings for the user ("first frame only")

    def __post_init__(self):
        if not self.mode:
            self.mode = self.plain_mode

    @property
    def plain_mode(self) -> str:
        """The 8-bit PIL mode of these channels: L, LA, RGB or RGBA."""
        return ("L" if self.channels == 1 else "RGB") + ("A" if self.alpha is not None else "")

    @functools.cached_property
    def pixels_sha256(self) -> str:
        """The fingerprint of the pixels and alpha (a rerun skips only the same image)."""
        h = hashlib.sha256(np.ascontiguousarray(self.array).tobytes())
        if self.alpha is not None:
            h.update(np.ascontiguousarray(self.alpha).tobytes())
        return h.hexdigest()

    @property
    def channels(self) -> int:
        return 1 if self.array.ndim == 2 else int(self.array.shape[2])


# ----------------------------------------------------------------------------- loading

@contextlib.contextmanager
def _strict_pillow():
    """Refuse truncated files and decompression bombs, without touching the pixel limit."""
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _irregular(path, mode: int) -> None:
    """ImageError for a file that is not a regular one (a FIFO, a device, a socket)."""
    if not stat.S_ISREG(mode):
        what = next((w for test, w in _KINDS if test(mode)), "not a regular file")
        raise ImageError(path, f"is {what}, not a regular file: only regular files are read")


def check_regular(path) -> None:
    """ImageError unless ``path`` is an existing regular file (links followed), from its
    metadata only: a FIFO or a device, which would block a reader or never end, is not opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except OSError as e:
        raise ImageError(path, f"cannot read file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(path, "is a directory, expected an image file")
    _irregular(path, st.st_mode)


def _check_file(path: Path) -> bytes:
    """Raise ImageError for a missing/unreadable/empty path or one that is not a regular file
    (checked before opening, and on the descriptor, opened non-blocking so that a FIFO put in
    its place meanwhile cannot hang the run); return the first bytes."""
    check_regular(path)
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            _irregular(path, os.fstat(f.fileno()).st_mode)
            head = f.read(64)
    except OSError as e:
        raise ImageError(path, f"cannot read file ({e.strerror or e})") from None
    if not head:
        raise ImageError(path, "empty file")
    return head


def _check_pixel_limit(path, w: int, h: int) -> None:
    """Pillow's bomb rule (warning treated as error) for files decoded without Pillow."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and w * h > limit:
        raise ImageError(path, "image exceeds Pillow's pixel limit (decompression bomb)")


_ICC_SPACES = {1: b"GRAY", 3: b"RGB "}


def icc_matching(icc: bytes | None, channels: int) -> bytes | None:
    """``icc`` if its colour space (header bytes 16-19) is that of ``channels`` colour channels
    (1: GRAY, 3: RGB), else None: another space's (RGB on a gray output, a CMYK JPEG's on its
    RGB pixels) would make the file invalid or its colours wrong."""
    if not icc or len(icc) < 20:
        return None
    return icc if icc[16:20] == _ICC_SPACES.get(channels) else None


def _apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Undo EXIF orientation on (H, W[, C]) exactly like ImageOps.exif_transpose."""
    # 2 mirror horizontal, 3 rotate 180, 4 mirror vertical, 5 transpose, 6 rotate 90 clockwise,
    # 7 transverse, 8 rotate 90 counter-clockwise
    ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
           5: lambda x: x.swapaxes(0, 1), 6: lambda x: np.rot90(x, -1),
           7: lambda x: x[::-1, ::-1].swapaxes(0, 1), 8: lambda x: np.rot90(x, 1)}
    return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a


def _exif_orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # malformed metadata must not block restoring the pixels
        return 1


def _read_tiff16(path: Path) -> tuple[np.ndarray, int, bytes | None, int] | None:
    """(uint16 (H, W, C), orientation, icc, pages) for a multi-sample 16-bit TIFF, else None.

    Pillow cannot open 16-bit gray+alpha TIFF and truncates 16-bit RGB, so these go through
    tifffile; 16-bit gray TIFF is left to Pillow ('I;16')."""
    import tifffile
    try:
        tif = tifffile.TiffFile(path)
    except Exception:
        return None  # let Pillow produce the diagnosis
    with tif:
        page = tif.pages[0]
        if page.bitspersample != 16 or page.samplesperpixel < 2 or page.samplesperpixel > 4:
            return None
        _check_pixel_limit(path, page.imagewidth, page.imagelength)
        try:
            arr = page.asarray()
        except Exception:
            raise ImageError(path, "truncated or corrupt image") from None
        if page.axes.startswith("S"):          # planar storage -> channels last
            arr = np.moveaxis(arr, 0, -1)
        tag = page.tags.get("Orientation")
        icc = page.tags.get("InterColorProfile")
        return (arr.astype(np.uint16), int(tag.value) if tag else 1,
                bytes(icc.value) if icc else None, len(tif.pages))


def pil_pixels(path, img: Image.Image) -> tuple[np.ndarray, float]:
    """Pixels (H, W[, C]) and the value meaning white (255, 65535 or 1.0), from a loaded PIL image."""
    mode = img.mode
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16), 65535
    if mode == "I":
        a = np.asarray(img)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageError(path, "32-bit integer pixels outside 0..65535 are not supported")
        return a.astype(np.uint16), 65535
    if mode == "F":  # float TIFF: taken as is when already in [0, 1], saved as 16-bit
        a = np.asarray(img)
        if a.size and not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1):
            raise ImageError(path, "floating-point pixels outside [0, 1] are not supported")
        return a, 1.0
    if mode in ("1", "L", "LA", "RGB", "RGBA"):
        img = img.convert("L") if mode == "1" else img
    elif mode == "P":
        img = img.convert("RGBA" if img.has_transparency_data else "RGB")
    elif mode in ("La", "PA"):
        img = img.convert("LA" if mode == "La" else "RGBA")
    elif mode == "RGBa":
        img = img.convert("RGBA")
    else:  # CMYK, YCbCr, RGBX, LAB, HSV, ...
        try:
            img = img.convert("RGB")
        except ValueError:
            raise ImageError(path, f"unsupported image mode {mode}") from None
    return np.asarray(img), 255


def load_image(path, min_size: int = MIN_SIZE) -> LoadedImage:
    """Load an image file as a :class:`LoadedImage`; raise :class:`ImageError` on any problem.
    An animated or multi-page file gives its first frame, with a note saying so."""
    path = Path(path)
    head = _check_file(path)
    icc = None
    # 16-bit colour PNG (bit depth: byte 24, colour type: byte 25 of the IHDR chunk)
    is_png16 = head[:8] == png16.SIGNATURE and len(head) > 28 and head[24] == 16 and head[25] in (2, 4, 6)
    raw = _read_tiff16(path) if head[:4] in _TIFF_SIGS else None
    if raw is not None:
        pixels, orientation, icc, frames = raw
        mode, maxval = {2: "LA", 3: "RGB", 4: "RGBA"}[pixels.shape[2]], 65535
    else:
        try:
            with _strict_pillow():
                with Image.open(path) as img:
                    img.load()  # force the full decode so truncation shows up here
                    mode, icc = img.mode, img.info.get("icc_profile")
                    orientation = _exif_orientation(img)
                    pixels, maxval = pil_pixels(path, img)
                    frames = getattr(img, "n_frames", 1)
                    if is_png16:
                        pixels, maxval = png16.decode(path), 65535
                        mode = {2: "RGB", 4: "LA", 6: "RGBA"}[head[25]]
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(path, "image exceeds Pillow's pixel limit (decompression bomb)") from None
        except Image.UnidentifiedImageError:
            raise ImageError(path, "not an image file") from None
        except _DECODE_ERRORS:
            raise ImageError(path, "truncated or corrupt image") from None

    pixels = _apply_orientation(pixels if pixels.ndim == 3 else pixels[..., None], orientation)
    img = from_pixels(pixels, maxval, mode, path.stem, path=path, icc=icc, min_size=min_size)
    if frames > 1:
        img.notes.append(f"{path}: {frames} frames or pages: the first frame only is used")
    return img


def from_pixels(pixels: np.ndarray, maxval: float, mode: str, name: str, path=None, icc=None,
                min_size: int = MIN_SIZE) -> LoadedImage:
    """A LoadedImage from (H, W, C) pixels, ``maxval`` meaning white (255, 65535 or 1.0) and
    C in 1..4 (2 and 4: the last channel is alpha); the one place an image is scaled to [0, 1]
    and checked for its size, for files and in-memory images alike (utils/inmemory.py)."""
    h, w, c = pixels.shape
    where = path if path is not None else name
    if h < min_size or w < min_size:
        raise ImageError(where, f"image is {w}x{h}, smaller than the minimum {min_size}x{min_size}")
    scaled = pixels.astype(np.float32) / np.float32(maxval)
    colour, alpha = (scaled[..., :-1], scaled[..., -1]) if c in (2, 4) else (scaled, None)
    icc = icc_matching(icc, colour.shape[2])   # e.g. a CMYK profile of pixels now RGB: dropped
    return LoadedImage(array=np.ascontiguousarray(colour),
                       alpha=None if alpha is None else np.ascontiguousarray(alpha),
                       mode=mode, bit_depth=8 if maxval == 255 else 16,
                       path=None if path is None else Path(path), name=name,
                       icc_profile=icc or None)


def load_mask(path, shape_hw, threshold: float = 0.0) -> np.ndarray:
    """Boolean (H, W) mask, True where the pixel is known (the brighter of two values; with
    ``threshold`` > 0, any mask, known where its mean gray in [0, 1] is at least that). Gray or
    RGB (equal channels) masks at any bit depth; alpha is ignored.  ``path`` may carry its pixels
    (``utils.inmemory.MaskInMemory``, a mask given to ``restore()`` as an array)."""
    a = path.image.array if hasattr(path, "image") else load_image(path, min_size=1).array
    h, w = int(shape_hw[0]), int(shape_hw[1])
    if a.shape[:2] != (h, w):
        raise ImageError(path, f"mask is {a.shape[1]}x{a.shape[0]} but the image is {w}x{h}")
    if threshold > 0:
        return a.mean(-1) >= threshold
    values = np.unique(a[..., 0])
    grey = a.shape[2] == 1 or (a == a[..., :1]).all()
    if not grey or len(values) > 2:
        raise ImageError(path, ("mask is not grayscale: its colour channels differ" if not grey
                                else f"mask is not two-valued: found {len(values)} distinct "
                                "values") + " (save masks losslessly, e.g. as PNG, or give "
                         "--mask-threshold 0.5: known where the gray is ≥ 0.5)")
    if len(values) == 1 and values[0] == 0:  # one value: all unknown if black, else all known
        return np.zeros((h, w), bool)
    return a[..., 0] >= values[-1]


# ----------------------------------------------------------------------------- writing

def _same_file(a: Path, b) -> bool:
    try:
        return b is not None and Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False


def save_image(path, array, like: LoadedImage | None = None, *, protect: Iterable = ()) -> Path:
    """Save a float (H, W[, C]) array in [0, 1] (C = 1 or 3) atomically to ``path``.

    The format comes from the extension (PNG if unknown). With ``like``, the result gets its
    bit depth (16-bit for PNG/TIFF, otherwise 8), its alpha (re-attached unchanged; resized if
    the result has another size, dropped for JPEG/BMP) and its ICC profile where the profile's
    colour space is the output's (:func:`icc_matching`); palette inputs come back as RGB(A).
    Values are clipped and rounded. Refuses to overwrite ``like.path`` or any path in
    ``protect`` (the inputs). Returns the path written."""
    path = Path(path)
    if any(_same_file(path, p) for p in [getattr(like, "path", None), *protect]):
        raise ImageError(path, "refusing to overwrite an input image")
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"save_image expects (H, W), (H, W, 1) or (H, W, 3), got {a.shape}")
    fmt = _FORMATS.get(path.suffix.lower(), "PNG")
    alpha = like.alpha if like is not None and fmt not in ("JPEG", "BMP") else None
    colours = 3 if fmt == "WEBP" else a.shape[2]    # WebP has no gray: saved as RGB below
    icc = icc_matching(like.icc_profile if like is not None else None, colours)
    a = attach_alpha(a, alpha)
    deep = like is not None and like.bit_depth == 16 and fmt in ("PNG", "TIFF")
    q = quantise(a, 65535 if deep else 255)

    if deep and fmt == "PNG":
        writer = lambda p: p.write_bytes(png16.encode(q, icc))
    elif deep:
        import tifffile
        writer = lambda p: tifffile.imwrite(
            p, q[..., 0] if q.shape[2] == 1 else q,
            photometric="minisblack" if q.shape[2] <= 2 else "rgb",
            extrasamples=["unassalpha"] if alpha is not None else None, iccprofile=icc)
    else:
        img = Image.fromarray(q[..., 0] if q.shape[2] == 1 else q)  # L, LA, RGB or RGBA
        if fmt == "WEBP" and img.mode in ("L", "LA"):
            img = img.convert("RGBA" if img.mode == "LA" else "RGB")  # WebP has no gray
        options = {"JPEG": dict(quality=95, subsampling=0), "WEBP": dict(lossless=True)}.get(fmt, {})
        if icc:
            options["icc_profile"] = icc
        writer = lambda p: img.save(p, format=fmt, **options)
    return atomic_write(path, writer)


def attach_alpha(a: np.ndarray, alpha) -> np.ndarray:
    """(H, W, C) colour + the input's alpha plane -> (H, W, C + 1); the plane is resized
    (bicubic) when the result has another size (super-resolution).  No alpha: ``a`` as is."""
    if alpha is None:
        return a
    h, w = a.shape[:2]
    if alpha.shape != (h, w):
        plane = Image.fromarray(alpha.astype(np.float32))
        alpha = np.clip(np.asarray(plane.resize((w, h), Image.Resampling.BICUBIC)), 0, 1)
    return np.concatenate([a, alpha[..., None].astype(a.dtype)], axis=2)


# ----------------------------------------------------------------------------- tensors & geometry

def to_tensor(array) -> torch.Tensor:
    """float32 (H, W[, C]) array -> (1, C, H, W) float32 tensor."""
    a = np.asarray(array, np.float32)
    a = a[..., None] if a.ndim == 2 else a
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]


def to_array(tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) tensor -> float32 (H, W, C) numpy array (detached, on CPU)."""
    t = tensor.detach().cpu().float()
    t = t[0] if t.dim() == 4 else t
    return np.ascontiguousarray(t.numpy().transpose(1, 2, 0))


def pad_to_multiple(array, multiple: int = 32):
    """Pad (H, W[, C]) at the bottom and right to the next multiple; return (padded, (h, w)).

    Bottom/right padding keeps every original pixel at its own index, so ``crop_to(out, (h,
    w))`` undoes it exactly. Mirror padding avoids the hard edges zero padding would add;
    numpy's 'reflect' reflects repeatedly when the pad is larger than the image, and a 1-pixel
    axis (nothing to reflect) falls back to 'edge'."""
    a = np.asarray(array)
    h, w = a.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    widths = [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, widths, mode="reflect" if min(h, w) > 1 else "edge"), (h, w)


def crop_to(array, size_hw):
    """Top-left (h, w) crop: numpy arrays are (H, W, ...), tensors are (..., H, W)."""
    h, w = size_hw
    return array[..., :h, :w] if isinstance(array, torch.Tensor) else array[:h, :w]


def center_crop_multiple(array, multiple: int = 32) -> np.ndarray:
    """Centre crop (H, W[, C]) to multiples of ``multiple``, exactly like the authors' crop_image.

    Their box is (int((W - newW) / 2), int((H - newH) / 2), ...), i.e. the odd extra pixel is
    cut on the right/bottom."""
    a = np.asarray(array)
    h, w = a.shape[:2]
    nh, nw = h - h % multiple, w - w % multiple
    if nh == 0 or nw == 0:
        raise ValueError(f"image {w}x{h} is smaller than the crop multiple {multiple}")
    top, left = int((h - nh) / 2), int((w - nw) / 2)
    return a[top:top + nh, left:left + nw]


# ----------------------------------------------------------------------------- listing

def list_images(spec) -> list[Path]:
    """Images named by ``spec``: a file, a folder (non-recursive, sorted) or a glob pattern."""
    _listed = lambda q: Path(q).suffix.lower() in IMAGE_EXTENSIONS     # noqa: E731
    p = Path(spec)
    if p.is_file():
        return [p]
    if os.path.lexists(p) and not p.is_dir():   # a FIFO, a device, a dangling link
        check_regular(p)
    if p.is_dir():
        found = sorted(q for q in p.iterdir() if q.is_file() and _listed(q)
                       and not q.name.startswith("."))
        if not found:
            raise ImageError(p, "no images found in this folder")
        return found
    if any(ch in str(spec) for ch in "*?["):
        seen, found = set(), []
        for q in sorted(glob.glob(str(spec), recursive=True)):
            real = os.path.realpath(q)      # a file reached twice (links, loops) counts once
            if os.path.isfile(q) and _listed(q) and real not in seen:
                seen.add(real)
                found.append(Path(q))
        if not found:
            raise ImageError(spec, "no images match this pattern")
        return found
    raise ImageError(spec, "no such file or directory")


def quantise(array, maxval: int = 255) -> np.ndarray:
    """Float [0, 1] -> integers 0..maxval with rounding (uint8 for 255, else uint16), any
    shape, NaN -> 0: the one quantiser, used by the image writer, the Pillow-based degradations
    and the API."""
    a = np.nan_to_num(np.asarray(array, dtype=np.float64), nan=0.0)
    return (np.clip(a, 0, 1) * maxval).round().astype(np.uint8 if maxval <= 255 else np.uint16)


def to_uint8(array) -> np.ndarray:
    """Float [0, 1] -> uint8 (see :func:`quantise`)."""
    return quantise(array, 255)


def from_uint8(array) -> np.ndarray:
    """uint8 (H, W[, C]) -> float32 (H, W, C) in [0, 1]."""
    a = np.asarray(array, np.float32) / 255
    return a[..., None] if a.ndim == 2 else a
