import csv
import math

import numpy as np
import pytest

import baselines as B
from dataset import resolve_data_dir, task_images


def _smooth(h=64, w=64):
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.3 * np.sin(2 * np.pi * xx), 0.2 + 0.6 * yy, 0.5 + 0.2 * np.cos(np.pi * (xx + yy))], -1)
    return img.astype(np.float32)


def _crop(group, size=64):
    d = resolve_data_dir()
    paths = task_images(d, group) if d is not None else []
    if not paths:
        pytest.skip(f"no {group} images (set DIP_DATA_DIR)")
    x = B.load_cropped(paths[0])
    return np.ascontiguousarray(x[:size, :size]), paths[0].stem


def _psnr(case, est):
    return B.score(case, est)["psnr"]


@pytest.mark.parametrize("method", ["nlm", "tv", "cbm3d"])
def test_denoisers_improve_a_smooth_image(method):
    if method == "cbm3d" and B.bm3d is None:
        pytest.skip("bm3d not installed")
    x = _smooth()
    case = B.Case("denoising", "s", "sigma=25", "smooth", x, B.noisy_image(x))
    base = _psnr(case, case.observed)
    assert 19 < base < 22  # sigma 25 on [0, 1] images: ~20.2 dB
    est = B.BASELINES["denoising"][method][0](case)
    assert est.shape == x.shape and est.dtype == np.float32
    assert _psnr(case, est) > base + 1
    assert 0 < B.score(case, est)["ssim"] <= 1


def test_noise_is_seeded_and_in_the_authors_layout():
    x = _smooth(32, 32)
    n1, n2 = B.noisy_image(x), B.noisy_image(x)
    assert np.array_equal(n1, n2)
    ref = np.clip(x.transpose(2, 0, 1) + np.random.RandomState(0).normal(scale=25 / 255, size=(3, 32, 32)), 0, 1)
    np.testing.assert_allclose(n1, ref.transpose(1, 2, 0), atol=1e-6)


def test_bicubic_ypsnr_finite():
    x, name = _crop("super_resolution/Set5")
    from utils.physics import pil_downscale
    for f in (4, 8):
        case = B.Case("super_resolution", "Set5", f"x{f}", name, x,
                      B.from_u8(pil_downscale(B.to_u8(x), f)), factor=f)
        est = B.bicubic(case)
        assert est.shape == x.shape
        v = B.score(case, est)["ypsnr"]
        assert math.isfinite(v) and 10 < v < 100


def test_jpeg_input_scores():
    x, name = _crop("deblocking/classic5")
    from utils.physics import jpeg_compress
    case = B.Case("deblocking", "classic5", "q=10", name, x, B.from_u8(jpeg_compress(B.to_u8(x), 10)))
    s = B.score(case, B.identity(case))
    assert set(s) == {"psnr", "ssim", "psnr_b"}
    assert 15 < s["psnr"] < 45 and s["psnr_b"] <= s["psnr"] + 1e-9 and 0 < s["ssim"] < 1


def test_inpainting_baselines():
    x, name = _crop("inpainting/bernoulli")
    m = B.bernoulli_mask(64, 64, rate=0.5, seed=100).transpose(1, 2, 0)
    case = B.Case("inpainting", "bernoulli", "p=0.5", name, x, x * m, mask=m)
    fill = B.mean_fill(case)
    assert np.array_equal(fill[m], x[m])  # known pixels kept
    p_fill, p_bih = _psnr(case, fill), _psnr(case, B.biharmonic(case))
    assert math.isfinite(p_fill) and math.isfinite(p_bih) and p_bih > p_fill


def test_cases_follow_the_protocol():
    if resolve_data_dir() is None or not task_images(resolve_data_dir(), "inpainting/bernoulli"):
        pytest.skip("no images (set DIP_DATA_DIR)")
    stems = {p.stem for p in task_images(resolve_data_dir(), "inpainting/bernoulli")}
    assert stems <= set(B.INPAINT_NAMES)  # every file has its Table 1 name
    (c,) = list(B.cases("inpainting", limit=1))
    assert c.image in B.DIP_INPAINT and c.mask.shape == c.clean.shape[:2] + (1,)
    assert abs(c.mask.mean() - 0.5) < 0.01 and np.all(c.observed[~c.mask[..., 0]] == 0)
    sr = list(B.cases("super_resolution", limit=1))
    assert [(c.set, c.setting) for c in sr] == [("Set5", "x4"), ("Set5", "x8"), ("Set14", "x4"), ("Set14", "x8")]
    for c in sr:
        assert c.clean.shape[0] % 32 == 0 and c.clean.shape[1] % 32 == 0
        assert c.observed.shape[:2] == (c.clean.shape[0] // c.factor, c.clean.shape[1] // c.factor)


def test_write_table(tmp_path):
    rows = [{"set": "S", "setting": "q=10", "image": "a", "m_psnr": 30.0, "m_ssim": 0.9, "x_psnr": None},
            {"set": "S", "setting": "q=10", "image": "b", "m_psnr": 32.0, "m_ssim": 0.7, "x_psnr": None},
            {"set": "T", "setting": "q=20", "image": "c", "m_psnr": 20.0, "m_ssim": 0.5, "x_psnr": None}]
    cols = ["m_psnr", "m_ssim", "x_psnr"]
    csv_path, md_path = B.write_table(tmp_path, "demo", rows, cols, {"device": "cpu", "date": "today"},
                                      labels={"m_psnr": "M PSNR"}, published={("S", "q=10"): [("paper", 31.5)]},
                                      notes=["a note"])
    assert csv_path.name == "baselines_demo.csv" and md_path.name == "baselines_demo.md"
    with open(csv_path, newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["set", "setting", "image", *cols]
    assert [r["image"] for r in got] == ["a", "b", "c", "mean", "mean"]
    assert float(got[3]["m_psnr"]) == 31.0 and float(got[3]["m_ssim"]) == pytest.approx(0.8)
    assert got[0]["x_psnr"] == "" and got[3]["x_psnr"] == ""
    md = md_path.read_text()
    assert "M PSNR" in md and "paper 31.50" in md and "not available" in md and "a note" in md
    for block in md.split("\n\n"):  # every Markdown table is rectangular with a separator row
        lines = [l for l in block.splitlines() if l.startswith("|")]
        if lines:
            assert len({l.count("|") for l in lines}) == 1 and set(lines[1]) <= set("|-")


def test_main_skips_existing_tables(tmp_path, capsys):
    (tmp_path / "baselines_inpainting.csv").write_text("done\n")
    B.main(["--only", "inpainting", "--out", str(tmp_path)])
    assert "skipped" in capsys.readouterr().out
    assert (tmp_path / "baselines_inpainting.csv").read_text() == "done\n"
