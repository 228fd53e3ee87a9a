"""baselines.py and utils/classic.py: the classic methods improve their degraded inputs, the
cases follow each task's protocol (its own make_problem), and the tables are well formed."""
import csv
import math
from pathlib import Path

import numpy as np
import pytest

import baselines as B
from dataset import resolve_data_dir, task_images
from tasks import all_tasks, get_task
from utils import classic
from utils.config import resolve_config
from utils.imageio import LoadedImage
from utils.task import score


def _smooth(h=64, w=64):
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.3 * np.sin(2 * np.pi * xx), 0.2 + 0.6 * yy,
                    0.5 + 0.2 * np.cos(np.pi * (xx + yy))], -1)
    return img.astype(np.float32)


def _problem(name, image=None, **given):
    task = get_task(name)
    cfg, _ = resolve_config(task, {"crop32": True, **given}, "full")
    img = LoadedImage(array=_smooth() if image is None else image.astype(np.float32))
    return task.make_problem(img, cfg), cfg


@pytest.mark.parametrize("method", ["nlm", "tv", "cbm3d"])
def test_denoisers_improve_a_smooth_image(method):
    if not classic.available(method):
        pytest.skip("bm3d not installed")
    problem, cfg = _problem("denoising")
    base = score(problem, problem.observed)["psnr"]
    assert 19 < base < 22  # σ 25 on [0, 1] images: ~20.2 dB
    assert base == pytest.approx(problem.baseline["psnr_in"], abs=1e-4)  # one scoring function
    est = classic.METHODS[method][0](problem, cfg)
    assert est.shape == problem.observed.shape and est.dtype == np.float32
    got = score(problem, est)
    assert got["psnr"] > base + 1 and 0 < got["ssim"] <= 1


def test_bicubic_and_richardson_lucy_improve_on_their_inputs():
    sr, cfg = _problem("super_resolution", factor=4)
    est = classic.bicubic(sr, cfg)
    assert est.shape == (64, 64, 3) and math.isfinite(score(sr, est)["y_psnr"])
    # the input's scores are the bicubic upscaling's: RGB (as the montage labels it) and Y
    assert sr.baseline["psnr_in"] == pytest.approx(score(sr, est)["psnr"], abs=1e-4)
    assert sr.baseline["y_psnr_bicubic"] == pytest.approx(score(sr, est)["y_psnr"], abs=1e-4)
    from skimage import data
    blurred, cfg = _problem("deblurring", data.camera()[100:228, 100:228, None] / 255.0)
    before = score(blurred, blurred.observed)["psnr"]
    assert score(blurred, classic.richardson_lucy(blurred, cfg))["psnr"] > before + 1


def test_inpainting_baselines():
    problem, cfg = _problem("inpainting")
    known = problem.inputs["mask"][..., 0] > 0.5
    fill = classic.mean_fill(problem, cfg)
    assert np.array_equal(fill[known], _smooth()[known])  # known pixels kept
    p_fill = score(problem, fill)["psnr"]
    assert p_fill == pytest.approx(problem.baseline["psnr_in"], abs=1e-4)
    assert score(problem, classic.biharmonic(problem, cfg))["psnr"] > p_fill + 5


def test_every_named_method_exists():
    for task in all_tasks().values():
        assert set(task.baselines) <= set(classic.METHODS), task.name


def test_cases_follow_the_protocol():
    d = resolve_data_dir()
    if d is None or not task_images(d, "super_resolution/Set5"):
        pytest.skip("no images (set DIP_DATA_DIR)")
    sr = list(B.cases(get_task("super_resolution"), limit=1))
    assert [(g, s) for g, s, *_ in sr] == [("super_resolution/Set5", "factor=4"),
                                          ("super_resolution/Set5", "factor=8"),
                                          ("super_resolution/Set14", "factor=4"),
                                          ("super_resolution/Set14", "factor=8")]
    for (_, setting, _, problem, cfg) in sr:
        h, w = problem.region
        assert h % 32 == 0 and w % 32 == 0 and cfg["crop32"]
        assert problem.observed.shape[:2] == (h // cfg["factor"], w // cfg["factor"])
    (case,) = list(B.cases(get_task("inpainting"), limit=1))
    assert case[2] == "barbara"  # DIP's Table 1 order
    mask = case[3].inputs["mask"]
    assert abs(mask.mean() - 0.5) < 0.01 and np.all(case[3].observed[mask[..., 0] == 0] == 0)


def test_write_task_tables(tmp_path):
    task = get_task("deblocking")
    rows = [{"group": "deblocking/classic5", "setting": "quality=10", "image": "a",
             "input_psnr": 30.0, "input_ssim": 0.9, "input_psnr_b": None},
            {"group": "deblocking/classic5", "setting": "quality=10", "image": "b|c",
             "input_psnr": 32.0, "input_ssim": 0.7, "input_psnr_b": 29.0}]
    cols = ["input_psnr", "input_ssim", "input_psnr_b"]
    csv_path, md_path = B.write_task(tmp_path, task, rows, cols, [("device", "cpu")],
                                     {"input": 0.0})
    with open(csv_path, newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["group", "setting", "image", *cols]
    assert got[0]["input_psnr"] == "30.0000" and got[0]["input_psnr_b"] == ""
    md = md_path.read_text()
    assert "| mean | 31.00 |" in md and "b\\|c" in md and "n/a" in md and "| device | cpu |" in md
    for block in md.split("\n\n"):  # every Markdown table is rectangular with a separator row
        lines = [line for line in block.splitlines() if line.startswith("|")]
        if lines:
            counts = {line.replace("\\|", "").count("|") for line in lines}
            assert len(counts) == 1 and set(lines[1]) <= set("|-")


def test_main_skips_existing_tables(tmp_path, capsys):
    (tmp_path / "baselines_inpainting.csv").write_text("done\n")
    B.main(["--only", "inpainting", "--out", str(tmp_path)])
    assert "skipped" in capsys.readouterr().out
    assert (tmp_path / "baselines_inpainting.csv").read_text() == "done\n"


def test_main_bad_inputs_are_one_line_and_status_2(tmp_path, capsys, monkeypatch):
    """No data folder, a missing --data-dir, an --out that is a file, --images 0: one error
    line and a non-zero exit, never a traceback; nothing is written."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.delenv("DIP_DATA_DIR", raising=False)
    monkeypatch.setattr(B, "resolve_data_dir", lambda d=None: None if d is None else Path(d))
    for argv, message in ((["--out", str(tmp_path / "o")], "no image folder"),
                          (["--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
                           "no such image folder"),
                          (["--out", str(afile)], "cannot be the output folder")):
        assert B.main(["--only", "super_resolution", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert afile.read_text() == "x" and not list((tmp_path / "o").glob("*"))
    with pytest.raises(SystemExit) as e:
        B.main(["--images", "0"])
    assert e.value.code == 2 and "--images: must be at least 1" in capsys.readouterr().err
