"""Bad input: exit status 2, one line naming the file and the problem, no traceback, and no new
file in the output folder.  Plus the user's own images keep their mode through a run."""
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import launcher

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--quick", "--quiet", "--channels", "8", "--iters", "2", "--log-every", "1"]


def run(script, *args):
    return launcher.run([ROOT / script, *args], timeout=300)


def snapshot(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def png(path, size=(64, 64), mode="RGB", value=None):
    rng = np.random.default_rng(0)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    a = rng.integers(0, 256, shape, dtype=np.uint8) if value is None else np.full(shape, value,
                                                                                  np.uint8)
    Image.fromarray(a).save(path)
    return path


def bomb_png(path):
    """A PNG whose header claims 20000×20000 pixels: Pillow refuses it on open."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
                     chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def out(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def check_rejected(r, out, needle, before=()):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr and len(err.splitlines()) == 1, err
    assert needle in err, err
    assert snapshot(out) == list(before)


def test_missing_path(tmp_path, out):
    r = run("denoising.py", *FAST, "--image", str(tmp_path / "nope.png"), "--out", str(out))
    check_rejected(r, out, "nope.png")


def test_a_paper_image_by_name_without_the_data_says_how_to_get_it(tmp_path, out):
    (tmp_path / "data").mkdir()
    r = run("denoising.py", *FAST, "--image", "kodim01", "--data-dir", str(tmp_path / "data"),
            "--out", str(out))
    check_rejected(r, out, "kodim01: a paper image (denoising/kodim01.png), but not in ")
    assert "`python -m dataset.fetch denoising`, or give --data-dir" in r.stderr
    r = run("denoising.py", *FAST, "--image", "kodim99", "--data-dir", str(tmp_path / "data"),
            "--out", str(out))
    check_rejected(r, out, "kodim99: no such file or directory")


def test_a_paper_image_by_name_is_the_tasks_own_and_the_line_names_it(tmp_path, out, capsys):
    """``--image House`` for denoising is the denoising set's House, not deblocking's house.png,
    and a line names the file (both are in the data folder).  In-process: the command line's
    own main."""
    from tasks import get_task
    from utils.cli import main
    data = tmp_path / "data"
    pixels = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    for rel in ("denoising/image_House256rgb.png", "deblocking/LIVE1/house.png"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(data / rel)
    assert main(get_task("denoising"), [*FAST, "--image", "House", "--data-dir", str(data),
                                        "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert "House: the paper's denoising/image_House256rgb.png" in said.out + said.err
    assert [p.name for p in out.iterdir() if p.is_dir()] == ["image_House256rgb"]


def test_folder_without_images(tmp_path, out):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    r = run("denoising.py", *FAST, "--image", str(tmp_path / "empty"), "--out", str(out))
    check_rejected(r, out, "empty")


@pytest.mark.parametrize("name,content", [
    ("notes.png", b"this is not an image"),
    ("empty.png", b""),
])
def test_not_an_image_and_empty(tmp_path, out, name, content):
    (tmp_path / name).write_bytes(content)
    r = run("denoising.py", *FAST, "--image", str(tmp_path / name), "--out", str(out))
    check_rejected(r, out, name)


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated(tmp_path, out, fmt):
    p = tmp_path / f"photo.{fmt}"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    r = run("denoising.py", *FAST, "--image", str(p), "--out", str(out))
    check_rejected(r, out, p.name)


def test_too_small(tmp_path, out):
    p = png(tmp_path / "tiny.png", size=(15, 20))
    r = run("denoising.py", *FAST, "--image", str(p), "--out", str(out))
    check_rejected(r, out, "tiny.png")


def test_decompression_bomb(tmp_path, out):
    p = bomb_png(tmp_path / "bomb.png")
    r = run("denoising.py", *FAST, "--image", str(p), "--out", str(out))
    check_rejected(r, out, "bomb.png")


def test_mask_of_another_size(tmp_path, out):
    img = png(tmp_path / "img.png")
    mask = png(tmp_path / "m.png", size=(32, 32), mode="L", value=255)
    r = run("inpainting.py", *FAST, "--image", str(img), "--mask", str(mask), "--out", str(out))
    check_rejected(r, out, "m.png")


def test_mask_not_two_valued(tmp_path, out):
    img = png(tmp_path / "img.png")
    mask = png(tmp_path / "m.png", mode="L")  # random gray values
    r = run("inpainting.py", *FAST, "--image", str(img), "--mask", str(mask), "--out", str(out))
    check_rejected(r, out, "m.png")


def test_observed_inpainting_needs_a_mask(tmp_path, out):
    img = png(tmp_path / "img.png")
    r = run("inpainting.py", *FAST, "--image", str(img), "--observed", "--out", str(out))
    check_rejected(r, out, "--mask")


@pytest.mark.parametrize("script,args,needle", [
    ("denoising.py", ["--sigma", "-1"], "--sigma"),
    ("deblocking.py", ["--quality", "0"], "--quality"),
    ("deblocking.py", ["--quality", "101"], "--quality"),
    ("super_resolution.py", ["--factor", "3"], "--factor"),
])
def test_invalid_values(tmp_path, out, script, args, needle):
    img = png(tmp_path / "img.png")
    fast = [a for a in FAST if a not in ("--channels", "8")]  # the SR hourglass has no --channels
    r = run(script, *fast, *args, "--image", str(img), "--out", str(out))
    check_rejected(r, out, needle)


def test_argparse_rejects_a_malformed_value(tmp_path, out):
    r = run("denoising.py", "--iters", "many", "--out", str(out))
    assert r.returncode == 2 and "--iters" in r.stderr and snapshot(out) == []


def test_unwritable_output(tmp_path):
    img = png(tmp_path / "img.png")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    r = run("denoising.py", *FAST, "--image", str(img), "--out", str(blocker / "sub"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (f"error: {blocker / 'sub'}: output directory cannot be "
                                f"created: {blocker} is a file")
    r = run("denoising.py", *FAST, "--image", str(img), "--out", str(blocker))
    assert r.returncode == 2 and r.stderr.strip() == (
        f"error: {blocker}: output directory cannot be created: it is a file")


def test_out_that_would_overwrite_the_input(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    img = png(folder / "img.png")
    before = img.read_bytes()
    r = run("denoising.py", *FAST, "--image", str(img), "--out", str(tmp_path))
    assert r.returncode == 2 and "img.png" in r.stderr
    assert img.read_bytes() == before and snapshot(folder) == ["img.png"]


def test_rgba_alpha_and_16_bit_survive_a_run(tmp_path, out):
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "logo.png")
    g16 = (rng.integers(0, 65536, (48, 48))).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "deep.png")
    r = run("denoising.py", *FAST, "--image", str(tmp_path / "*.png"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    with Image.open(out / "logo" / "output.png") as im:
        assert im.mode == "RGBA" and im.size == (50, 40)
        assert np.array_equal(np.array(im)[..., 3], rgba[..., 3])
    with Image.open(out / "deep" / "output.png") as im:
        assert im.mode.startswith("I") and np.array(im).max() > 255
    assert (out / "summary.md").read_text().count("| logo |") == 1
    # inpainting's mask.png is a plain mask: neither the image's alpha nor its 16 bits
    r = run("inpainting.py", *FAST, "--image", str(tmp_path / "*.png"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    for name in ("logo", "deep"):
        with Image.open(out / name / "mask.png") as im:
            assert im.mode == "L" and set(np.unique(np.array(im))) == {0, 255}, name
    with Image.open(out / "logo" / "masked.png") as im:
        assert im.mode == "RGBA"


def test_observed_inpainting_without_a_mask_names_both_ways_to_give_one(tmp_path, out, capsys):
    from tasks import get_task
    from utils.cli import main
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(tmp_path / "x.png")
    assert main(get_task("inpainting"), [*FAST, "--image", str(tmp_path / "x.png"),
                                         "--observed", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a mask: --mask FILE, or x_mask.png beside the image" in err[0]
    assert not out.exists() or not any(out.iterdir())
