"""Tests for utils/imageio.py: round trips over every supported mode, one test per error case."""
import io
import os
import pickle
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import is_png
from hypothesis import given, settings, strategies as st
from PIL import Image, ImageOps

from utils.atomic import atomic_write, atomic_write_text
from utils.imageio import (ImageError, center_crop_multiple, crop_to, list_images, load_image,
                           load_mask, pad_to_multiple, save_image, to_array, to_tensor)

SETTINGS = settings(max_examples=25, deadline=None)
sizes = st.integers(16, 300)
seeds = st.integers(0, 2**32 - 1)


# ------------------------------------------------------------------ an independent 16-bit PNG writer
# Written here, separately from the module's encoder, to produce files like other
# software does: every PNG filter type (Sub/Avg/Paeth need real unfiltering) and Adam7.

def _filter_rows(rows, bpp, types):
    """Apply PNG filter types[i] to row i of uint8 rows (n, L); returns (n, 1 + L)."""
    x = rows.astype(np.int32)
    a = np.zeros_like(x); a[:, bpp:] = x[:, :-bpp]
    b = np.zeros_like(x); b[1:] = x[:-1]
    c = np.zeros_like(x); c[1:, bpp:] = x[:-1, :-bpp]
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    preds = [np.zeros_like(x), a, b, (a + b) // 2, paeth]
    out = np.stack([(x[i] - preds[t][i]) % 256 for i, t in enumerate(types)]).astype(np.uint8)
    return np.concatenate([np.asarray(types, np.uint8)[:, None], out], axis=1)


def png16_bytes(a, rng, interlace):
    """16-bit PNG of uint16 (H, W, C) with random per-row filters, optionally Adam7."""
    h, w, c = a.shape
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
              (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)] if interlace else [(0, 0, 1, 1)]
    body = []
    for x0, y0, dx, dy in passes:
        sub = a[y0::dy, x0::dx]
        if sub.size:
            rows = sub.astype(">u2").reshape(sub.shape[0], -1).view(np.uint8)
            body.append(_filter_rows(rows, 2 * c, rng.integers(0, 5, len(rows))).tobytes())

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, {2: 4, 3: 2, 4: 6}[c], 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"".join(body))) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- sample files

def make_file(kind, h, w, seed, folder):
    """Write a (h, w) test image of ``kind``; return (path, expected ints (H, W, C) incl. alpha,
    max value, expected mode, expected mode after saving)."""
    rng = np.random.default_rng(seed)
    u8 = lambda *s: rng.integers(0, 256, (h, w) + s, dtype=np.uint8)
    u16 = lambda *s: rng.integers(0, 65536, (h, w) + s, dtype=np.uint16)
    path = Path(folder) / f"in_{kind}.png"
    if kind in ("L", "LA", "RGB", "RGBA"):
        a = u8(len(kind)) if kind != "L" else u8()
        Image.fromarray(a).save(path)
        return path, a.reshape(h, w, -1), 255, kind, kind
    if kind in ("P", "P+tRNS"):
        palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
        idx = u8()
        img = Image.fromarray(idx, "L").convert("P")
        img.putpalette(palette.tobytes())
        expected = palette[idx]
        if kind == "P+tRNS":
            img.info["transparency"] = 7
            expected = np.dstack([expected, np.where(idx == 7, 0, 255).astype(np.uint8)])
        img.save(path, transparency=img.info.get("transparency"))
        return path, expected, 255, "P", "RGBA" if kind == "P+tRNS" else "RGB"
    if kind == "I;16":
        a = u16()
        Image.fromarray(a).save(path)
        return path, a[..., None], 65535, "I;16", "I;16"
    if kind == "PNG16":  # 16-bit gray+alpha / RGB / RGBA, which Pillow alone reads as 8-bit
        c = int(rng.integers(2, 5))
        a = u16(c)
        path.write_bytes(png16_bytes(a, rng, interlace=bool(rng.integers(0, 2))))
        mode = {2: "LA", 3: "RGB", 4: "RGBA"}[c]
        return path, a, 65535, mode, mode
    if kind == "TIFF16":
        c = int(rng.integers(1, 5))
        a = u16(c)
        path = path.with_suffix(".tif")
        tifffile.imwrite(path, a[..., 0] if c == 1 else a, photometric="rgb" if c >= 3 else "minisblack",
                         extrasamples=["unassalpha"] if c in (2, 4) else None,
                         byteorder=">" if c == 1 and seed % 2 else "<")
        mode = {1: "I;16B" if seed % 2 else "I;16", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
        return path, a, 65535, mode, "I;16" if c == 1 else mode
    if kind == "JPEG-EXIF":
        smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
                            .resize((w, h), Image.Resampling.BILINEAR))
        exif = Image.Exif()
        exif[0x0112] = int(rng.integers(1, 9))
        path = path.with_suffix(".JPG")
        Image.fromarray(smooth).save(path, exif=exif, quality=95)
        with Image.open(path) as img:  # reference: Pillow's own orientation handling
            expected = np.asarray(ImageOps.exif_transpose(img))
        return path, expected, 255, "RGB", "RGB"
    raise ValueError(kind)


KINDS = ["L", "LA", "RGB", "RGBA", "P", "P+tRNS", "I;16", "PNG16", "TIFF16", "JPEG-EXIF"]


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(h=sizes, w=sizes, seed=seeds)
def test_round_trip(kind, h, w, seed):
    with tempfile.TemporaryDirectory() as d:
        path, ints, maxval, mode, saved_mode = make_file(kind, h, w, seed, d)
        img = load_image(path)
        H, W = ints.shape[:2]  # swapped for EXIF orientations 5..8
        colour = ints[..., :-1] if ints.shape[2] in (2, 4) else ints
        assert img.array.dtype == np.float32 and img.array.shape == (H, W, colour.shape[2])
        assert img.mode == mode and img.bit_depth == (16 if maxval == 65535 else 8)
        assert img.name == path.stem and img.channels == colour.shape[2]
        np.testing.assert_array_equal(np.round(img.array * maxval), colour)
        if ints.shape[2] in (2, 4):
            np.testing.assert_array_equal(np.round(img.alpha * maxval), ints[..., -1])
        else:
            assert img.alpha is None

        padded, size = pad_to_multiple(img.array, 32)
        assert size == (H, W) and padded.shape[0] % 32 == 0 and padded.shape[1] % 32 == 0
        assert padded.shape[0] - H < 32 and padded.shape[1] - W < 32
        np.testing.assert_array_equal(crop_to(padded, size), img.array)

        out = save_image(Path(d) / f"out{path.suffix}", img.array, like=img)
        back = load_image(out)
        assert back.array.shape == img.array.shape and back.bit_depth == img.bit_depth
        if kind == "JPEG-EXIF":  # lossy: same size and orientation, close values
            assert np.abs(back.array - img.array).mean() < 2 / 255
            return
        assert back.mode == saved_mode
        np.testing.assert_array_equal(back.array, img.array)
        if img.alpha is not None:
            np.testing.assert_array_equal(back.alpha, img.alpha)
        if img.bit_depth == 16 and out.suffix == ".png":
            assert out.read_bytes()[24] == 16


@SETTINGS
@given(h=st.integers(1, 300), w=st.integers(1, 300), c=st.sampled_from([None, 1, 3]),
       m=st.sampled_from([8, 32, 64]))
def test_pad_crop_any_size(h, w, c, m):
    a = np.random.default_rng(h * w).random((h, w) if c is None else (h, w, c)).astype(np.float32)
    padded, size = pad_to_multiple(a, m)
    assert padded.shape[0] % m == 0 and padded.shape[1] % m == 0 and size == (h, w)
    np.testing.assert_array_equal(crop_to(padded, size), a)
    t = to_tensor(padded)
    assert t.shape == (1, c or 1, padded.shape[0], padded.shape[1])
    assert crop_to(t, size).shape[-2:] == (h, w)


@SETTINGS
@given(h=st.integers(32, 300), w=st.integers(32, 300), d=st.sampled_from([8, 16, 32]))
def test_center_crop_matches_authors(h, w, d):
    a = np.random.default_rng(h + 7 * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(a)  # the authors' crop_image, verbatim arithmetic
    new = (img.size[0] - img.size[0] % d, img.size[1] - img.size[1] % d)
    bbox = [int((img.size[0] - new[0]) / 2), int((img.size[1] - new[1]) / 2),
            int((img.size[0] + new[0]) / 2), int((img.size[1] + new[1]) / 2)]
    np.testing.assert_array_equal(center_crop_multiple(a, d), np.asarray(img.crop(bbox)))


def test_center_crop_too_small():
    with pytest.raises(ValueError):
        center_crop_multiple(np.zeros((20, 40)), 32)


def test_tensor_round_trip():
    a = np.random.default_rng(0).random((20, 30, 3)).astype(np.float32)
    t = to_tensor(a)
    assert t.shape == (1, 3, 20, 30) and t.dtype == torch.float32
    np.testing.assert_array_equal(to_array(t.requires_grad_()), a)
    assert to_tensor(a[..., 0]).shape == (1, 1, 20, 30)


def test_list_images(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.TIFF", "notes.txt", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.TIFF"]
    assert [p.name for p in list_images(str(tmp_path / "*.jpg"))] == ["a.jpg"]
    assert list_images(tmp_path / "a.jpg") == [tmp_path / "a.jpg"]


def test_load_mask_accepts_two_valued(tmp_path):
    known = np.random.default_rng(1).random((20, 30)) > 0.5
    for name, arr in [("m255.png", known * np.uint8(255)), ("m01.png", known.astype(np.uint8)),
                      ("m16.png", known * np.uint16(65535)),
                      ("mrgb.png", np.dstack([known * np.uint8(255)] * 3))]:
        Image.fromarray(arr).save(tmp_path / name)
        np.testing.assert_array_equal(load_mask(tmp_path / name, (20, 30)), known)
    Image.fromarray(np.full((20, 30), 255, np.uint8)).save(tmp_path / "white.png")
    assert load_mask(tmp_path / "white.png", (20, 30, 3)).all()


def test_save_refuses_to_overwrite_input(tmp_path):
    p = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(p)
    before = p.read_bytes()
    with pytest.raises(ImageError, match="overwrite"):
        save_image(p, np.ones((16, 16)), like=load_image(p))
    assert p.read_bytes() == before


def _profile(space=b"RGB "):
    """A real sRGB ICC profile, its colour-space field (header bytes 16-19) set to ``space``."""
    from PIL import ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return icc[:16] + space + icc[20:]


@pytest.mark.parametrize("name", ["icc.png", "icc16.png", "icc16.tif", "icc.jpg", "icc.webp"])
def test_icc_profile_kept(tmp_path, name):
    icc = _profile()
    img = load_image(_png(tmp_path / "src.png"))
    img.icc_profile, img.bit_depth = icc, 16 if "16" in name else 8
    assert load_image(save_image(tmp_path / name, img.array, like=img)).icc_profile == icc


@pytest.mark.parametrize("name", ["gray.png", "gray16.png", "gray16.tif", "gray.jpg"])
def test_an_rgb_profile_is_not_put_on_a_gray_output(tmp_path, name):
    img = load_image(_png(tmp_path / "src.png"))
    img.icc_profile, img.bit_depth = _profile(), 16 if "16" in name else 8
    out = save_image(tmp_path / name, img.array[..., :1], like=img)
    with Image.open(out) as im:
        assert im.mode in ("L", "I;16", "I;16B") and "icc_profile" not in im.info
        im.load()   # a valid file: Pillow decodes it
    assert load_image(out).icc_profile is None


def test_a_gray_profile_stays_on_a_gray_output_and_leaves_an_rgb_one(tmp_path):
    img = load_image(_png(tmp_path / "src.png"))
    img.icc_profile = gray = _profile(b"GRAY")
    assert load_image(save_image(tmp_path / "g.png", img.array[..., :1], like=img)).icc_profile == gray
    assert load_image(save_image(tmp_path / "c.png", img.array, like=img)).icc_profile is None


def test_a_cmyk_jpegs_profile_is_not_carried_to_its_rgb_pixels(tmp_path):
    cmyk = Image.frombytes("CMYK", (32, 32), np.random.default_rng(1).integers(
        0, 256, 32 * 32 * 4, dtype=np.uint8).tobytes())
    src = tmp_path / "cmyk.jpg"
    cmyk.save(src, icc_profile=_profile(b"CMYK"))
    with Image.open(src) as im:
        assert im.info["icc_profile"][16:20] == b"CMYK"       # the file does carry it
    img = load_image(src)
    assert img.channels == 3 and img.icc_profile is None
    out = save_image(tmp_path / "out.png", img.array, like=img)
    with Image.open(out) as im:
        assert "icc_profile" not in im.info


def test_a_folder_of_netpbm_files_is_listed(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "a.ppm")
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(tmp_path / "b.PGM")
    found = list_images(tmp_path)
    assert [p.name for p in found] == ["a.ppm", "b.PGM"]
    assert [load_image(p).channels for p in found] == [3, 1]
    assert [p.name for p in list_images(str(tmp_path / "*.p?m"))] == ["a.ppm"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_being_opened(tmp_path):
    """A FIFO with no writer blocks whoever opens it: loading one must not open it (run in a
    child process with a timeout, so that a regression fails instead of hanging the suite)."""
    import subprocess
    import sys
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    code = ("import sys; from utils.imageio import load_image, load_mask, list_images, ImageError\n"
            "for f in (load_image, lambda p: load_mask(p, (16, 16)), list_images):\n"
            "    try:\n        f(sys.argv[1])\n    except ImageError as e:\n        print(e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True,
                       timeout=60, cwd=Path(__file__).resolve().parents[1])
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and len(lines) == 3, r.stderr
    assert all(ln == f"{fifo}: is a FIFO (named pipe), not a regular file: only regular files "
                     "are read" for ln in lines)


def test_a_character_device_is_refused(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    link = tmp_path / "zero.png"
    link.symlink_to("/dev/zero")     # a link to an endless stream: followed, then refused
    expect_error(lambda: load_image(link), "zero.png", "character device")


def test_error_pickles():
    err = pickle.loads(pickle.dumps(ImageError(Path("a.png"), "empty file")))
    assert str(err) == "a.png: empty file"


# ------------------------------------------------------------------ errors: one line naming the file

def expect_error(fn, name, text):
    with pytest.raises(ImageError) as err:
        fn()
    msg = str(err.value)
    assert name in msg and text in msg and "\n" not in msg, msg
    return msg


def _png(path, h=32, w=32):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_error_missing_path(tmp_path):
    expect_error(lambda: load_image(tmp_path / "nope.png"), "nope.png", "no such file")
    expect_error(lambda: list_images(tmp_path / "nope"), "nope", "no such file")


def test_error_directory_given(tmp_path):
    (tmp_path / "photos").mkdir()
    expect_error(lambda: load_image(tmp_path / "photos"), "photos", "directory")


def test_error_folder_without_images(tmp_path):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "empty_dir" / "readme.txt").write_text("hi")
    expect_error(lambda: list_images(tmp_path / "empty_dir"), "empty_dir", "no images found")
    expect_error(lambda: list_images(str(tmp_path / "*.webp")), "*.webp", "no images")


def test_error_not_an_image(tmp_path):
    p = tmp_path / "photo.png"
    p.write_text("this is not a picture\n")
    expect_error(lambda: load_image(p), "photo.png", "not an image file")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.95])
def test_error_truncated(tmp_path, fmt, keep):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, fmt)
    p = tmp_path / f"cut.{fmt.lower()}"
    p.write_bytes(buf.getvalue()[:int(len(buf.getvalue()) * keep)])
    expect_error(lambda: load_image(p), "cut.", "truncated or corrupt image")


def test_error_truncated_png16(tmp_path):
    data = png16_bytes(np.zeros((40, 40, 3), np.uint16) + 5, np.random.default_rng(0), False)
    p = tmp_path / "cut16.png"
    p.write_bytes(data[:len(data) // 2])
    expect_error(lambda: load_image(p), "cut16.png", "truncated or corrupt image")


def test_error_empty_file(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    expect_error(lambda: load_image(tmp_path / "zero.png"), "zero.png", "empty file")


def test_error_too_small(tmp_path):
    p = _png(tmp_path / "tiny.png", h=20, w=15)
    expect_error(lambda: load_image(p), "tiny.png", "image is 15x20, smaller than the minimum 16x16")


@pytest.mark.parametrize("side", [40, 64])  # above the limit (warning) / above twice it (error)
def test_error_decompression_bomb(tmp_path, monkeypatch, side):
    p = _png(tmp_path / "bomb.png", side, side)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    expect_error(lambda: load_image(p), "bomb.png", "decompression bomb")


def test_error_decompression_bomb_tiff16(tmp_path, monkeypatch):
    p = tmp_path / "bomb16.tif"
    tifffile.imwrite(p, np.zeros((40, 40, 3), np.uint16), photometric="rgb")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    expect_error(lambda: load_image(p), "bomb16.tif", "decompression bomb")


def test_error_mask_wrong_size(tmp_path):
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "mask.png")
    expect_error(lambda: load_mask(tmp_path / "mask.png", (30, 20)), "mask.png",
                 "mask is 30x20 but the image is 20x30")


def test_error_mask_not_two_valued(tmp_path):
    three = np.arange(600, dtype=np.uint8).reshape(20, 30) % 3 * 100
    Image.fromarray(three).save(tmp_path / "grey.png")
    expect_error(lambda: load_mask(tmp_path / "grey.png", (20, 30)), "grey.png",
                 "mask is not two-valued: found 3 distinct values")


def test_a_threshold_takes_an_anti_aliased_or_jpeg_mask(tmp_path):
    # the levels 0, 100, 200 (of 255): known from gray 0.5 is the 200s only, from 0.3 also 100
    three = np.arange(600, dtype=np.uint8).reshape(20, 30) % 3 * 100
    Image.fromarray(three).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "grey.png", (20, 30), 0.5), three == 200)
    np.testing.assert_array_equal(load_mask(tmp_path / "grey.png", (20, 30), 0.3), three > 0)
    # a colour JPEG of a black hole on white: its channels and edges blur, the hole stays
    m = np.full((40, 60, 3), 255, np.uint8)
    m[10:30, 20:40] = 0
    Image.fromarray(m).save(tmp_path / "m.jpg", quality=60)
    expect_error(lambda: load_mask(tmp_path / "m.jpg", (40, 60)), "m.jpg", "--mask-threshold")
    known = load_mask(tmp_path / "m.jpg", (40, 60), 0.5)
    np.testing.assert_array_equal(known, m[..., 0] > 0)


# ----------------------------------------------------------------------------- atomic writes

def test_atomic_write_failure_leaves_target_untouched(tmp_path):
    target = tmp_path / "result.png"
    target.write_bytes(b"old contents")

    def half_write(tmp):
        tmp.write_bytes(b"half a PNG")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, half_write)
    assert target.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["result.png"]


def test_save_image_failure_leaves_no_file(tmp_path, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG partial")
        raise OSError("interrupted")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        save_image(tmp_path / "out.png", np.zeros((16, 16, 3)))
    assert os.listdir(tmp_path) == []


def test_atomic_write_text(tmp_path):
    p = atomic_write_text(tmp_path / "new" / "log.csv", "a,b\r\n1,2\n")
    assert p.read_bytes() == b"a,b\r\n1,2\n" and os.listdir(p.parent) == ["log.csv"]


@pytest.mark.parametrize("name", ["astronaut", "IMG_20261204_123456789_HDR_" * 3 + "W" * 60])
def test_a_runs_figures_keep_every_label_and_title_inside_their_fixed_margins(tmp_path, name):
    """A run's figures are drawn once, with fixed margins (no tight crop): every tick label,
    axis label, legend and title, a long image name's included, must still lie inside."""
    import utils.plots as plots
    it = np.arange(0, 10001, 10)
    hist = {"iteration": it, "psnr_gt": np.linspace(10, 38, len(it))[:, None],
            "psnr_obs": np.linspace(10, 30, len(it))[:, None],
            "ratio": np.logspace(3, -2, len(it))[:, None],
            **{f"fbc{k + 1}": np.linspace(0, 1, len(it))[:, None] for k in range(5)}}
    drawn, legends = {}, {}

    def measure(fig, path, dpi=110, tight=True):
        assert not tight                  # the run's figures skip the second drawing
        fig.canvas.draw()
        box = fig.get_tightbbox(fig.canvas.get_renderer())
        drawn[Path(path).name] = (box.extents, fig.bbox_inches.extents)
        legends[Path(path).name] = [t.get_text() for ax in fig.axes if ax.get_legend()
                                    for t in ax.get_legend().get_texts()]
        return saved(fig, path, dpi, tight)
    saved, plots.save_figure = plots.save_figure, measure
    try:
        plots.fbc_figure(hist, tmp_path / "fbc.png", title=f"denoising · {name} (tile 1 of 25)",
                         mark=5000)
        plots.psnr_ratio_figure(hist, tmp_path / "psnr_ratio.png", 5230,
                                title=f"super_resolution · {name} (tile 1 of 25)",
                                result=(5230, 27.514))
        for shape in [(64, 128, 3), (300, 60, 1)]:
            plots.montage([np.zeros(shape)] * 3, [f"noisy {name} (20.12 dB)", "output", "truth"],
                          tmp_path / f"montage_{shape[0]}.png")
    finally:
        plots.save_figure = saved
    assert len(drawn) == 4
    assert legends["psnr_ratio.png"] == ["PSNR to ground truth", "stop at 5230",
                                         "best 38.00 dB at 10000", "result 27.51 dB",
                                         "blur/sharpness"]
    for file, ((x0, y0, x1, y1), (_, _, w, h)) in drawn.items():
        assert x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h, (file, (x0, y0, x1, y1), (w, h))
        assert is_png(tmp_path / file)
