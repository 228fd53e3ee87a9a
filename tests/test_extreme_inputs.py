"""Extreme options and odd inputs do not reach the fit (issue #25): a σ beyond the 0-255 scale,
more restarts than memory holds, a blur kernel wider than the image, --crop32 on a small image,
a FIFO given as an image or a mask; and a colour JPEG comes back in colour, colour profiles
follow the output's colour space, a folder of .ppm/.pgm files is read.  Each is run as a user
hits it: the command line on real files, its exit status, its one-line message, and the files
it left (none for a refused run)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

import launcher
import utils.config
import utils.task
from tasks import get_task
from utils.cli import main
from utils.imageio import load_image

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--quick", "--quiet", "--channels", "8", "--iters", "2", "--log-every", "1"]
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


def png(path, size=40, seed=0, channels=3):
    shape = (size, size) + ((channels,) if channels > 1 else ())
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def run(task, *args, capsys):
    status = main(get_task(task), [*FAST, *map(str, args)])
    return status, capsys.readouterr()


def one_line(err):
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def refused(task, args, tmp_path, capsys, *needles):
    """Run, expect exit 2 with one error line holding every needle, and no output folder."""
    out = tmp_path / "new" / "out"
    status, cap = run(task, *args, "--out", out, capsys=capsys)
    line = one_line(cap.err)
    assert status == 2 and all(n in line for n in needles), line
    assert not (tmp_path / "new").exists()
    return line


# ------------------------------------------------------------------------ σ, restarts, blur
@pytest.mark.parametrize("task", ["denoising", "deblurring"])
def test_a_noise_level_beyond_the_0_255_scale_is_refused(task, tmp_path, capsys):
    refused(task, ["--image", png(tmp_path / "a.png"), "--sigma", "1e9"], tmp_path, capsys,
            "--sigma must be a number in [0, 255]", "1000000000")


def test_a_thousand_restarts_are_refused_by_the_option_check(tmp_path, capsys):
    refused("denoising", ["--image", png(tmp_path / "a.png"), "--restarts", "1000"], tmp_path,
            capsys, "--restarts must be an integer in 1..64", "1000")


def _capped(limit):
    """A child's address space capped at ``limit`` bytes: a regression that starts the fit fails
    there instead of exhausting the machine."""
    import resource
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_restarts_that_exceed_the_memory_are_refused_with_the_estimate(tmp_path):
    """64 restarts × the 5 λs of --lambda auto of a 128-channel decoder on 512² need about
    690 GB: refused on any machine before a net is built (in a child process with a timeout
    and a capped address space, so that a regression cannot take the machine's memory)."""
    img = png(tmp_path / "big.png", size=512)
    r = subprocess.run([sys.executable, "denoising.py", *FAST, "--image", str(img),
                        "--restarts", "64", "--lambda", "auto", "--crop", "0", "--channels",
                        "128", "--tile", "0", "--out", str(tmp_path / "new" / "out")], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, preexec_fn=_capped(8 << 30))
    line = one_line(r.stderr)
    assert r.returncode == 2, r.stderr
    for needle in (str(img), "the fit needs about 687.2 GB", "64 restart(s) × 5 λs",
                   "512x512 px × 128 channels", "available", "fewer --restarts"):
        assert needle in line, line
    assert not (tmp_path / "new").exists()


def test_a_fit_beyond_the_available_memory_gives_a_bad_input_row(tmp_path, capsys,
                                                                  monkeypatch):
    """In a folder run the image too big for the memory gets a 'bad input' row, the other is
    fitted, and the exit status is 2 (the memory is made small here)."""
    folder = tmp_path / "in"
    folder.mkdir()
    png(folder / "big.png", size=200)     # 224² padded × 8 channels × 64 B = 25.7 MB
    png(folder / "small.png", size=40)    # 64² padded: 2.1 MB
    monkeypatch.setattr(utils.task, "available_memory", lambda dev: (10 ** 7, "RAM available"))
    status, cap = run("denoising", "--image", folder, "--crop", "0", "--tile", "0", "--out",
                      tmp_path / "out", capsys=capsys)
    assert status == 2 and "Traceback" not in cap.err
    assert f"error: {folder / 'big.png'}: the fit needs about 26 MB (1 restart(s) × 224x224 px" \
        in cap.err
    assert "more than the 10 MB RAM available" in cap.err
    table = (tmp_path / "out" / "summary.csv").read_text()
    assert "big,bad input" in table and "small,ok" in table
    assert not (tmp_path / "out" / "big").exists() and (tmp_path / "out" / "small").is_dir()


def test_the_memory_estimate_counts_every_member():
    cfg, _ = utils.config.resolve_config(get_task("denoising"), {"restarts": 3}, "quick")
    one = utils.task.memory_estimate(dict(cfg, restarts=1), (128, 128))
    assert one == 128 * 128 * 64 * utils.task.MEMBER_BYTES_PER_PIXEL_CHANNEL   # quick: 64 ch
    assert utils.task.memory_estimate(cfg, (128, 128)) == 3 * one
    assert utils.task.memory_estimate(dict(cfg, ln_lambda="auto"), (128, 128)) == 15 * one
    have, what = utils.task.available_memory("cpu")
    assert have is None or (have > one and what == "RAM available")


def test_a_huge_blur_sigma_is_refused_by_the_option_check(tmp_path, capsys):
    refused("deblurring", ["--image", png(tmp_path / "a.png"), "--blur-sigma", "1e9"], tmp_path,
            capsys, "--blur-sigma must be a number in (0, 50]")


def test_a_blur_kernel_wider_than_the_image_is_refused_quickly(tmp_path):
    """σ 50 on a 48×48 image (padded to 64²): a radius of 150 px, refused at once; run in a
    child process with a timeout, as a regression would build the kernel and hang."""
    img = png(tmp_path / "a.png", size=48)
    r = launcher.run(["deblurring.py", *FAST, "--image", img, "--blur-sigma", "50",
                      "--out", tmp_path / "new" / "out"], timeout=60)
    line = one_line(r.stderr)
    assert r.returncode == 2, r.stderr
    assert line == (f"error: {img}: --blur-sigma 50 needs a kernel of radius 150 px, wider than "
                    "this 64x64 (padded) image allows: at most --blur-sigma 21 for it")
    assert not (tmp_path / "new").exists()


def test_the_largest_blur_the_image_allows_is_fitted(tmp_path, capsys):
    img = png(tmp_path / "a.png", size=48)
    status, cap = run("deblurring", "--image", img, "--blur-sigma", "21", "--out",
                      tmp_path / "out", capsys=capsys)
    assert status == 0, cap.err
    assert (tmp_path / "out" / "a" / "output.png").is_file()


# ------------------------------------------------------------------------ --crop32
def test_crop32_on_an_image_smaller_than_32_is_a_bad_input(tmp_path, capsys):
    img = png(tmp_path / "small.png", size=20)
    line = refused("denoising", ["--image", img, "--crop32"], tmp_path, capsys, str(img),
                   "--crop32 needs an image at least 32x32, this one is 20x20")
    assert "ValueError" not in line and "after --crop" not in line


def test_crop32_after_a_small_crop_says_so(tmp_path, capsys):
    refused("denoising", ["--image", png(tmp_path / "a.png"), "--crop", "16", "--crop32"],
            tmp_path, capsys, "this one is 16x16 after --crop")


# ------------------------------------------------------------------------ FIFOs
def _cli(tmp_path, script, *args):
    """The script in a child process with a timeout: a FIFO that is opened blocks forever."""
    out = tmp_path / "new" / "out"
    r = launcher.run([script, *FAST, *args, "--out", out], timeout=60)
    return r, out


@needs_fifo
def test_a_fifo_given_as_the_image_is_refused_unopened(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    r, out = _cli(tmp_path, "denoising.py", "--image", fifo)
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr) == (f"error: {fifo}: is a FIFO (named pipe), not a regular file: "
                                  "only regular files are read")
    assert not (tmp_path / "new").exists()


@needs_fifo
def test_a_fifo_given_as_the_mask_is_refused_unopened(tmp_path):
    fifo = tmp_path / "holes.png"
    os.mkfifo(fifo)
    r, out = _cli(tmp_path, "inpainting.py", "--image", png(tmp_path / "a.png"), "--mask", fifo,
                  "--observed")
    assert r.returncode == 2, r.stderr
    assert one_line(r.stderr) == f"error: {fifo}: is a FIFO (named pipe), not a regular file: " \
                                 "only regular files are read"
    assert not (tmp_path / "new").exists()


@needs_fifo
def test_a_fifo_beside_an_image_as_its_mask_is_a_bad_input_of_a_folder_run(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    png(folder / "a.png")
    png(folder / "b.png", seed=1)
    os.mkfifo(folder / "a_mask.png")
    r, out = _cli(tmp_path, "inpainting.py", "--image", folder)
    assert r.returncode == 2, r.stderr
    assert f"error: {folder / 'a_mask.png'}: is a FIFO (named pipe)" in r.stderr
    assert "Traceback" not in r.stderr
    table = (out / "summary.csv").read_text()
    assert "b,ok" in table and "a_mask.png,bad input" in table
    assert not (out / "a").exists() and (out / "b" / "output.png").is_file()


# ------------------------------------------------------------------------ colour JPEG
def _colour_jpeg(path):
    from skimage import data
    Image.fromarray(data.astronaut()[100:164, 150:214]).save(path, quality=15)
    return path


def _chroma(a):
    from utils.imageio import to_tensor
    from utils.metrics import rgb_to_ycbcr
    return rgb_to_ycbcr(to_tensor(a))[0, 1:].numpy()


def test_an_observed_colour_jpeg_comes_back_in_colour_with_its_chroma(tmp_path, capsys):
    jpg = _colour_jpeg(tmp_path / "photo.jpg")
    status, cap = run("deblocking", "--image", jpg, "--observed", "--out", tmp_path / "out",
                      capsys=capsys)
    assert status == 0, cap.err
    assert "keeps the input's chroma (Cb, Cr)" in cap.err          # said, once
    src = load_image(jpg).array
    for name in ("output", "output_ema", "jpeg"):
        with Image.open(tmp_path / "out" / "photo" / f"{name}.png") as im:
            assert im.mode == "RGB", name
        out = load_image(tmp_path / "out" / "photo" / f"{name}.png").array
        # the chroma is the input's (within the 8-bit rounding of the output)
        assert np.abs(_chroma(out) - _chroma(src)).mean() < 1.5 / 255, name


def test_a_colour_image_deblocked_as_the_papers_do_says_its_outputs_are_gray(tmp_path, capsys):
    from skimage import data
    rgba = np.dstack([data.astronaut()[100:164, 150:214], np.full((64, 64), 200, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "photo.png")
    status, cap = run("deblocking", "--image", tmp_path / "photo.png", "--out", tmp_path / "out",
                      capsys=capsys)
    assert status == 0, cap.err
    assert "its Y channel is compressed and restored, as deblocking papers do, so the outputs " \
           "are gray (its alpha channel dropped); --color rgb" in cap.err
    with Image.open(tmp_path / "out" / "photo" / "output.png") as im:
        assert im.mode == "L"
    status, cap = run("deblocking", "--image", tmp_path / "photo.png", "--color", "rgb", "--out",
                      tmp_path / "rgb", capsys=capsys)
    assert status == 0 and "gray" not in cap.err
    with Image.open(tmp_path / "rgb" / "photo" / "output.png") as im:
        assert im.mode == "RGBA"


def test_restore_of_a_colour_jpeg_gives_it_back_in_colour(tmp_path):
    """The Python API shows what the command line writes: Y restored, the chroma kept."""
    import warnings

    from tasks import restore
    jpg = _colour_jpeg(tmp_path / "photo.jpg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = restore(str(jpg), task="deblocking", preset="quick", channels=8, iters=2,
                    log_every=1)
    src = load_image(jpg).array
    assert r.array.shape == src.shape and r.image.mode == "RGB"
    assert np.abs(_chroma(r.array) - _chroma(src)).mean() < 1.5 / 255
    assert any("keeps the input's chroma" in str(w.message) for w in caught)


def test_the_y_and_chroma_round_trip_is_exact_to_a_grey_level():
    from deblocking import with_chroma
    from utils.imageio import from_uint8, to_tensor, to_uint8
    from utils.metrics import rgb_to_y
    a = from_uint8(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8))
    y = from_uint8(to_uint8(rgb_to_y(to_tensor(a))[0, 0].numpy()))
    back = with_chroma(y, a)
    assert back.shape == a.shape and np.abs(back - a).max() < 0.8 / 255


def test_a_synthetic_colour_deblocking_run_keeps_the_papers_y_protocol(tmp_path, capsys):
    jpg = _colour_jpeg(tmp_path / "photo.png")
    status, cap = run("deblocking", "--image", jpg, "--out", tmp_path / "out", capsys=capsys)
    assert status == 0, cap.err
    with Image.open(tmp_path / "out" / "photo" / "output.png") as im:
        assert im.mode == "L"


# ------------------------------------------------------------------------ colour profiles
def _srgb_png(path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)) \
        .save(path, icc_profile=icc)
    return path, icc


def test_a_gray_output_does_not_get_the_inputs_rgb_profile(tmp_path, capsys):
    src, icc = _srgb_png(tmp_path / "photo.png")
    status, cap = run("deblocking", "--image", src, "--out", tmp_path / "out", capsys=capsys)
    assert status == 0, cap.err
    for name in ("output.png", "jpeg.png"):
        with Image.open(tmp_path / "out" / "photo" / name) as im:
            assert im.mode == "L" and "icc_profile" not in im.info
            im.load()
    status, cap = run("denoising", "--image", src, "--out", tmp_path / "den", capsys=capsys)
    with Image.open(tmp_path / "den" / "photo" / "output.png") as im:   # colour: kept
        assert status == 0 and im.mode == "RGB" and im.info.get("icc_profile") == icc


# ------------------------------------------------------------------------ Netpbm folders
def test_a_folder_of_ppm_and_pgm_files_is_fitted(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "a.ppm")
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(folder / "b.pgm")
    status, cap = run("denoising", "--image", folder, "--out", tmp_path / "out", capsys=capsys)
    assert status == 0, cap.err
    assert (tmp_path / "out" / "a" / "output.png").is_file()
    assert (tmp_path / "out" / "b" / "output.png").is_file()
