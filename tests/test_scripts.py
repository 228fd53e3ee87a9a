"""The task scripts end to end, as a user runs them (a process each: tests/launcher.py; tiny
settings)."""
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import launcher
from conftest import is_png
from models import NETS
from skimage import data
from tasks import get_task, task_names
from utils.cli import collect_images
from utils.imageio import ImageError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--quick", "--quiet", "--channels", "8", "--log-every", "2"]
DATA = os.environ.get("DIP_DATA_DIR")


def run(script, *args, env=None):
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return launcher.run([ROOT / script, *args], env=e)




@pytest.fixture(scope="module")
def small_png(tmp_path_factory):
    p = tmp_path_factory.mktemp("in") / "face.png"
    Image.fromarray(data.astronaut()[150:230, 180:260]).save(p)  # 80×80: padded to 96
    return p


@pytest.fixture(scope="module")
def gray_png(tmp_path_factory):
    p = tmp_path_factory.mktemp("in") / "cam.png"
    Image.fromarray(data.camera()[200:264, 200:264]).save(p)
    return p


def test_denoising_end_to_end(small_png, tmp_path):
    r = run("denoising.py", *TINY, "--iters", "30", "--image", str(small_png), "--out",
            str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "quick preset" in r.stdout
    d = tmp_path / "face"
    for name in ("noisy", "output", "output_ema", "fbc", "psnr_ratio"):
        assert is_png(d / f"{name}.png"), name
    with Image.open(d / "output.png") as im:
        assert im.size == (80, 80) and im.mode == "RGB"  # cropped back to the input size
    rows = list(csv.DictReader(open(d / "log.csv")))
    assert len(rows) == 15 and {"iteration", "loss", "psnr_obs", "psnr_gt", "fbc1", "fbc5",
                                "ratio"} <= set(rows[0])
    s = json.loads((d / "summary.json").read_text())
    assert s["iterations"] == 30 and s["hyperparameters"]["iters"] == 30
    assert np.isfinite(s["psnr"]) and np.isfinite(s["psnr_in"]) and s["device"] == "cpu"
    md = (tmp_path / "summary.md").read_text()
    assert md.count("| face |") == 1
    # the summary names the CPU (its rounding and speed move the numbers), and a mean squared
    # error is written with 3 significant digits (was 0.01 for every image)
    from utils.device import cpu_model
    assert f"device of the last run: cpu ({cpu_model()}, " in md
    held = f"{s['heldout_loss']:#.3g}"
    assert held != "0.01" and f" {held} |" in md.split("| face |")[1].splitlines()[0]
    assert list(csv.DictReader(open(tmp_path / "summary.csv")))[0]["image"] == "face"


@pytest.mark.parametrize("name", task_names())
def test_help(name):
    r = run(f"{name}.py", "--help")
    assert r.returncode == 0 and "--iters" in r.stdout and "--lambda" in r.stdout


@pytest.mark.parametrize("name", task_names())
def test_every_registered_task_runs_end_to_end(name, small_png, tmp_path):
    """Whatever the registry holds (a new task too): a toy run writes its outputs and a row."""
    task = get_task(name)
    toy = [a for k, v in NETS[task.config["net"]].toy.items()
           for a in (f"--{k.replace('_', '-')}", str(v))]
    r = run(f"{name}.py", "--quick", "--quiet", "--iters", "4", "--log-every", "2", *toy,
            "--image", str(small_png), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    d = tmp_path / "face"
    for f in ("output", "output_ema", "fbc", "psnr_ratio"):
        assert is_png(d / f"{f}.png"), f
    s = json.loads((d / "summary.json").read_text())
    assert s["iterations"] == 4 and s["hyperparameters"]["net"] == task.config["net"]
    if s["inputs"]:  # degraded | output | ground truth (enhancement: its side by side)
        assert is_png(d / "montage.png")
    for k in task.metrics:
        assert np.isfinite(s[k]), k
    assert (tmp_path / "summary.md").read_text().count("| face |") == 1


def test_inpainting_end_to_end(gray_png, tmp_path):
    r = run("inpainting.py", *TINY, "--iters", "6", "--image", str(gray_png), "--out",
            str(tmp_path))
    assert r.returncode == 0, r.stderr
    d = tmp_path / "cam"
    for name in ("masked", "mask", "output"):
        assert is_png(d / f"{name}.png")
    mask = np.array(Image.open(d / "mask.png"))
    assert set(np.unique(mask)) == {0, 255} and 0.4 < (mask > 0).mean() < 0.6


def test_inpainting_with_a_mask_file(small_png, tmp_path):
    m = np.full((80, 80), 255, np.uint8)
    m[30:50, 10:70] = 0
    mp = tmp_path / "holes.png"
    Image.fromarray(m).save(mp)
    r = run("inpainting.py", *TINY, "--iters", "4", "--image", str(small_png), "--mask",
            str(mp), "--observed", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "o" / "face" / "summary.json").read_text())
    assert "psnr" not in s  # no ground truth in observed mode
    assert np.array_equal(np.array(Image.open(tmp_path / "o" / "face" / "mask.png")) > 0, m > 0)


def test_deblocking_end_to_end(small_png, tmp_path):
    r = run("deblocking.py", *TINY, "--iters", "4", "--image", str(small_png), "--out",
            str(tmp_path))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "face" / "summary.json").read_text())
    for k in ("psnr_in", "ssim_in", "psnr_b_in", "psnr", "ssim", "psnr_b"):
        assert np.isfinite(s[k]), k
    with Image.open(tmp_path / "face" / "output.png") as im:
        assert im.mode == "L"  # the Y channel of a colour image
    assert is_png(tmp_path / "face" / "jpeg.png")


def test_super_resolution_end_to_end(small_png, tmp_path):
    r = run("super_resolution.py", "--quick", "--quiet", "--channels-down", "8",
            "--channels-up", "8", "--scales", "3", "--iters", "4", "--image", str(small_png),
            "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "face" / "summary.json").read_text())
    assert np.isfinite(s["y_psnr"]) and np.isfinite(s["y_psnr_bicubic"])
    with Image.open(tmp_path / "face" / "lr.png") as im:
        assert im.size == (20, 20)


def test_super_resolution_observed_is_factor_larger(small_png, tmp_path):
    r = run("super_resolution.py", "--quick", "--quiet", "--channels-down", "8",
            "--channels-up", "8", "--scales", "3", "--iters", "3", "--factor", "2",
            "--observed", "--image", str(small_png), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "face" / "output.png") as im:
        assert im.size == (160, 160)


def test_the_image_line_says_how_the_fit_ended():
    from utils.outputs import image_line
    assert image_line({"psnr_in": 20.123, "psnr": 28.5, "ssim": 0.8, "stop_iteration": None,
                       "iterations": 600, "seconds": 12.34}) == (
        "psnr_in 20.12, psnr 28.50, ssim 0.8000, ran to the end, 600 iterations, seconds 12.3")
    assert image_line({"status": "interrupted", "stop_iteration": None, "iterations": 137,
                       "seconds": 3.0}) == "interrupted after 137 iterations, seconds 3.0"
    # tiled: the tile the interruption came in (iterations: the longest tile's)
    assert image_line({"status": "interrupted", "stop_iteration": None, "iterations": 600,
                       "tile_stops": "320 / interrupted after 40 / not fitted / not fitted"}) == (
        "interrupted in tile 2 of 4 after 40 iterations")
    assert image_line({"status": "interrupted", "stop_iteration": None, "iterations": 600,
                       "tile_stops": "320 / - / not fitted"}) == (
        "interrupted in tile 3 of 3, before it")
    # several members (restarts, --lambda auto): one stop each, and still the interruption
    assert image_line({"status": "interrupted", "stop_iteration": "- / -", "iterations": 12}) \
        == "interrupted after 12 iterations"
    # super-resolution: the bicubic baseline beside the net's Y-PSNR; restarts: one stop each
    assert image_line({"y_psnr_bicubic": 24.2, "psnr": 25.0, "y_psnr": 25.3,
                       "stop_iteration": "410 / -", "iterations": 900, "seconds": 5.0}) == (
        "y_psnr_bicubic 24.20, psnr 25.00, y_psnr 25.30, stop_iteration 410 / -, seconds 5.0")
    # an observed photo has no score: what --sigma auto and --lambda auto chose is its line
    assert image_line({"sigma_estimate": 34.91, "lambda_chosen": "1.4", "stop_iteration": 310,
                       "iterations": 400, "seconds": 9.0}) == (
        "sigma_estimate 34.91, lambda_chosen 1.4, stop_iteration 310, seconds 9.0")


def test_super_resolution_of_a_size_not_a_multiple_of_the_factor_restores_what_lr_covers():
    import warnings

    from skimage import data

    from tasks import restore
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = restore(data.astronaut()[:97, :131], "super_resolution", observed=False, iters=2,
                    channels_down=8, channels_up=8, scales=3, log_every=1)
    # the output is bicubic's size (4 × the 32×24 LR image), so both are scored on it
    assert r.array.shape == (96, 128, 3)
    assert {"psnr", "y_psnr", "y_psnr_bicubic"} <= set(r.metrics)
    assert any("131×97 is not a multiple of ×4: its top-left 128×96 is degraded, restored and "
               "scored" in str(w.message) for w in caught)


def test_an_alpha_channel_is_cut_as_the_pixels_are():
    import warnings

    from PIL import Image
    from skimage import data

    from tasks import restore
    alpha = (np.add.outer(np.arange(97), np.arange(131)) % 256).astype(np.uint8)
    img = Image.fromarray(np.dstack([data.astronaut()[:97, :131], alpha]))
    tiny = dict(observed=False, iters=1, log_every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sr = restore(img, "super_resolution", channels_down=8, channels_up=8, scales=3, **tiny)
        crop = restore(img, "denoising", channels=8, crop=64, **tiny)
        whole = restore(img, "denoising", channels=8, tile=0, **tiny)
        gray = restore(img, "deblocking", channels=8, **tiny)
    np.testing.assert_array_equal(np.asarray(sr.image)[..., 3], alpha[:96, :128])  # top-left
    np.testing.assert_array_equal(np.asarray(crop.image)[..., 3], alpha[16:80, 33:97])  # centre
    np.testing.assert_array_equal(np.asarray(whole.image)[..., 3], alpha)
    assert gray.image.mode == "L"       # deblocking's Y: gray, as its warning says, no alpha
    # enhancement: the image returned is the enhanced one, the net's base is r.fitted
    e = restore(data.astronaut()[:64, :64], "enhancement", channels=8, iters=5)
    from utils.physics import enhance
    np.testing.assert_allclose(e.array, enhance(e.observed, e.fitted), atol=1e-6)


def test_enhancement_end_to_end(small_png, tmp_path):
    r = run("enhancement.py", *TINY, "--iters", "5", "--image", str(small_png), "--out",
            str(tmp_path))
    assert r.returncode == 0, r.stderr
    for name in ("base", "enhanced", "side_by_side"):
        assert is_png(tmp_path / "face" / f"{name}.png")
    # output.png is the result (the enhanced image), not the smooth base the net fitted
    got = {n: (tmp_path / "face" / f"{n}.png").read_bytes() for n in ("output", "enhanced", "base")}
    assert got["output"] == got["enhanced"] != got["base"]


@pytest.mark.skipif(not DATA, reason="DIP_DATA_DIR not set")
def test_the_nine_denoising_images_are_found():
    images, bad, notice = collect_images(get_task("denoising"), None, None)
    names = {i.name for i in images}
    assert notice is None and len(images) == 9 and not bad
    assert {"image_F16_512rgb", "image_House256rgb", "kodim01", "kodim12"} <= names


@pytest.mark.skipif(not DATA, reason="DIP_DATA_DIR not set")
def test_a_paper_image_by_name():
    task = get_task("denoising")
    images, _, _ = collect_images(task, "kodim01", None)
    assert [i.name for i in images] == ["kodim01"]
    with pytest.raises(ImageError, match="no_such_image"):
        collect_images(task, "no_such_image", None)


def test_the_tables_number_format_keeps_a_loss_s_three_digits():
    from utils.tables import fmt
    assert fmt(0.010018, "heldout_loss") == "0.0100"        # it read 0.01
    assert fmt(5e-05, "loss") == "5.00e-05" and fmt(0.00774, "loss") == "0.00774"
    assert fmt(0.81234, "ssim") == "0.8123" and fmt(28.456, "psnr") == "28.46"
    assert fmt(12.34, "seconds") == "12.3" and fmt(600, "iterations") == "600"
    assert fmt(float("nan"), "psnr", missing="—") == "—"
