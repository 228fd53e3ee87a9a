"""Inputs are sacred (issue #14): no input is overwritten, no two inputs share an output folder,
one bad file does not stop a folder run, every option is checked before anything is written,
masks that make no sense are refused, an interrupted image is not "finished", the Python API
scales every dtype or refuses it, and no error leaves a traceback or a partial output behind."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import launcher
import utils.outputs
from tasks import get_task, restore
from utils.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--quick", "--quiet", "--channels", "8", "--iters", "2", "--log-every", "1"]


def png(path, size=(40, 40), seed=0, value=None, mode="RGB"):
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    a = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8) if value is None \
        else np.full(shape, value, np.uint8)
    Image.fromarray(a).save(path, format="PNG")
    return path


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def one_line(err):
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def run(task, *args, capsys=None):
    status = main(get_task(task), [*FAST, *map(str, args)])
    out = capsys.readouterr() if capsys else None
    return status, out


# ---------------------------------------------------------------- 1. no input is overwritten
def test_a_mask_inside_the_output_folder_is_refused(tmp_path, capsys):
    img = png(tmp_path / "a.png")
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    mask = out / "a" / "mask.png"
    m = np.zeros((40, 40), np.uint8)
    m[:, :20] = 255
    Image.fromarray(m).save(mask)
    before = mask.read_bytes()
    status, cap = run("inpainting", "--image", img, "--mask", mask, "--out", out, capsys=capsys)
    assert status == 2 and "mask.png" in one_line(cap.err) and "--out" in cap.err
    assert mask.read_bytes() == before and files(out) == ["a", "a/mask.png"]


def test_an_input_named_like_the_summary_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    img = out / "summary.md"
    img.write_bytes(png(tmp_path / "x.png").read_bytes())
    before = img.read_bytes()
    status, cap = run("denoising", "--image", img, "--out", out, capsys=capsys)
    assert status == 2 and "summary" in one_line(cap.err)
    assert img.read_bytes() == before and files(out) == ["summary.md"]


def test_an_input_hard_linked_to_an_output_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert run("denoising", "--image", png(tmp_path / "a.png"), "--out", out)[0] == 0
    src = tmp_path / "again"
    src.mkdir()
    os.link(out / "a" / "output.png", src / "a.png")   # the last output as the next input
    before = (src / "a.png").read_bytes()
    capsys.readouterr()
    status, cap = run("denoising", "--image", src / "a.png", "--out", out, "--seed", 1,
                      capsys=capsys)
    assert status == 2 and "same file" in one_line(cap.err)
    assert (src / "a.png").read_bytes() == before


# ---------------------------------------------------------------- 2. one folder per input
def test_two_inputs_with_one_stem_get_two_folders(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    png(src / "a.png", seed=1)
    Image.open(png(tmp_path / "b.png", seed=2)).save(src / "a.jpg", quality=90)
    out = tmp_path / "out"
    status, cap = run("denoising", "--image", src, "--out", out, capsys=capsys)
    assert status == 0 and "skipped" not in cap.out
    assert (out / "a_png" / "output.png").exists() and (out / "a_jpg" / "output.png").exists()
    rows = (out / "summary.csv").read_text().splitlines()
    psnr_in = [json.loads((out / d / "summary.json").read_text())["psnr_in"]
               for d in ("a_png", "a_jpg")]
    assert len(rows) == 4 and psnr_in[0] != psnr_in[1]   # header, 2 images, mean


# ---------------------------------------------------------------- 3. one bad file
def test_a_bad_file_does_not_stop_a_folder_run(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    png(src / "good1.png", seed=1)
    png(src / "good2.png", seed=2)
    (src / "broken.png").write_bytes(png(tmp_path / "x.png").read_bytes()[:150])
    out = tmp_path / "out"
    status, cap = run("denoising", "--image", src, "--out", out, capsys=capsys)
    assert status == 2
    errors = [ln for ln in cap.err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "broken.png" in errors[0] and "Traceback" not in cap.err
    assert (out / "good1" / "output.png").exists() and (out / "good2" / "output.png").exists()
    table = (out / "summary.md").read_text()
    assert "| broken.png | bad input |" in table and table.count("| ok |") == 2
    assert not (out / "broken").exists()


def test_only_bad_files_write_nothing(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    out = tmp_path / "new" / "out"
    status, cap = run("denoising", "--image", src, "--out", out, capsys=capsys)
    assert status == 2 and "broken.png" in one_line(cap.err)
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------- 4. options checked up front
BAD_OPTIONS = [
    ("denoising", ["--iters", "0"], "--iters"), ("denoising", ["--iters", "-5"], "--iters"),
    ("denoising", ["--lr", "nan"], "--lr"), ("denoising", ["--lr", "0"], "--lr"),
    ("denoising", ["--sigma", "nan"], "--sigma"), ("denoising", ["--sigma", "inf"], "--sigma"),
    ("denoising", ["--log-every", "0"], "--log-every"), ("denoising", ["--crop", "-1"], "--crop"),
    ("denoising", ["--crop", "5"], "--crop"),
    ("denoising", ["--restarts", "0"], "--restarts"), ("inpainting", ["--lambda", "-1"],
                                                       "--lambda"),
    ("denoising", ["--exp-weight", "1.5"], "--exp-weight"),
    ("denoising", ["--device", "tpu9"], "--device"), ("denoising", ["--device", "cuda:99"],
                                                      "--device"),
    ("deblurring", ["--blur-sigma", "0"], "--blur-sigma"),
    ("denoising", ["--gaussian-sigmas", "0.1", "-1"], "--gaussian-sigmas"),
    ("denoising", ["--oracle", "--observed"], "--oracle returns the output closest to the "
                                              "ground truth, and an observed image has none"),
]


@pytest.mark.parametrize("task,args,needle", BAD_OPTIONS)
def test_a_bad_option_is_one_line_before_anything_is_written(task, args, needle, tmp_path,
                                                              capsys):
    out = tmp_path / "new" / "out"
    status, cap = run(task, "--image", png(tmp_path / "a.png"), "--out", out, *args,
                      capsys=capsys)
    assert status == 2 and needle in one_line(cap.err) and not (tmp_path / "new").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu(tmp_path, capsys):
    status, cap = run("denoising", "--image", png(tmp_path / "a.png"), "--out", tmp_path / "o",
                      "--device", "cuda", capsys=capsys)
    assert status == 2 and "no CUDA GPU" in one_line(cap.err)


@pytest.mark.parametrize("flag", ["--net", "--upsample", "--norm", "--stop"])
def test_an_unknown_choice_is_one_line(flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run("denoising", "--image", png(tmp_path / "a.png"), "--out", tmp_path / "o", flag,
            "nope")
    err = capsys.readouterr().err
    assert e.value.code == 2 and flag in one_line(err) and "choose from" in err
    assert not (tmp_path / "o").exists()


def test_restore_checks_options_like_the_command_line():
    # the command line's checks, the options named as restore() takes them
    with pytest.raises(ValueError, match="^iters must be an integer >= 1, got 0"):
        restore(np.zeros((32, 32)), "denoising", iters=0)
    with pytest.raises(ValueError, match="^upsample"):
        restore(np.zeros((32, 32)), "denoising", upsample="cubic")
    with pytest.raises(ValueError, match="^lr"):
        restore(np.zeros((32, 32)), "denoising", lr=float("nan"))
    with pytest.raises(ValueError, match="^ln_lambda must be"):
        restore(np.zeros((32, 32)), "denoising", ln_lambda=-1)


# ---------------------------------------------------------------- 5. masks
def test_an_all_black_mask_is_refused_and_an_all_white_one_warns(tmp_path, capsys):
    img = png(tmp_path / "a.png")
    black = png(tmp_path / "black.png", value=0, mode="L")
    white = png(tmp_path / "white.png", value=255, mode="L")
    out = tmp_path / "out"
    status, cap = run("inpainting", "--image", img, "--mask", black, "--out", out, capsys=capsys)
    assert status == 2 and "no pixel" in one_line(cap.err) and not out.exists()
    status, cap = run("inpainting", "--image", img, "--mask", white, "--out", out, capsys=capsys)
    assert status == 0 and "nothing to fill" in cap.err
    # holes painted white: 10 % known is fitted (a user may mean it) but the run says so; a
    # quarter known is not warned of
    for rows, said in ((4, "marks only 10 % of the pixels as known (white = known"), (10, None)):
        known = np.zeros((40, 40), np.uint8)
        known[:rows] = 255
        Image.fromarray(known).save(tmp_path / f"known{rows}.png")
        status, cap = run("inpainting", "--image", img, "--mask", tmp_path / f"known{rows}.png",
                          "--out", tmp_path / f"out{rows}", capsys=capsys)
        assert status == 0 and (said in cap.err if said else "as known" not in cap.err)


def test_a_jpeg_mask_is_refused_unless_a_threshold_is_given(tmp_path, capsys):
    img = png(tmp_path / "a.png")
    hole = np.full((40, 40), 255, np.uint8)
    hole[10:30, 10:30] = 0
    Image.fromarray(hole).save(tmp_path / "hole.jpg", quality=50)
    args = ("inpainting", "--image", img, "--mask", tmp_path / "hole.jpg")
    status, cap = run(*args, "--out", tmp_path / "o", capsys=capsys)
    assert status == 2 and "--mask-threshold 0.5" in one_line(cap.err)
    assert not (tmp_path / "o").exists()
    status, cap = run(*args, "--mask-threshold", "1.5", "--out", tmp_path / "o", capsys=capsys)
    assert status == 2 and "--mask-threshold must be in [0, 1]" in one_line(cap.err)
    status, cap = run(*args, "--mask-threshold", "0.5", "--out", tmp_path / "o", capsys=capsys)
    assert status == 0 and (tmp_path / "o" / "a" / "output.png").exists()
    # a threshold with no mask to apply it to is not silently dropped
    status, cap = run("inpainting", "--image", img, "--mask-threshold", "0.5", "--out",
                      tmp_path / "b", capsys=capsys)
    assert status == 0 and "no mask file, so the Bernoulli mask is used" in cap.err


def test_a_drop_rate_that_leaves_nothing_to_fill_is_refused(tmp_path, capsys):
    img = png(tmp_path / "a.png")
    for rate in ("0", "1"):
        status, cap = run("inpainting", "--image", img, "--drop-rate", rate, "--out",
                          tmp_path / "o", capsys=capsys)
        assert status == 2 and "--drop-rate must be in (0, 1)" in one_line(cap.err)
        assert not (tmp_path / "o").exists()
    # in range, yet on this 40×40 image no pixel is known, or every one is
    status, cap = run("inpainting", "--image", img, "--drop-rate", "0.99999", "--out",
                      tmp_path / "o", capsys=capsys)
    assert status == 2 and "--drop-rate 0.99999 drops every pixel of this 40x40 image" in \
        one_line(cap.err)
    status, cap = run("inpainting", "--image", img, "--drop-rate", "0.00001", "--out",
                      tmp_path / "o", capsys=capsys)
    assert status == 0 and "warning: --drop-rate 1e-05 drops no pixel of this 40x40 image: " \
        "nothing to fill" in cap.err


# ---------------------------------------------------------------- 6. interrupted is not finished
def test_sigterm_saves_the_last_output_and_marks_the_image_interrupted(tmp_path):
    img = png(tmp_path / "a.png")
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "denoising.py"), "--quick", "--channels", "8",
           "--iters", "1000000", "--image", str(img), "--out", str(out)]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1"))
    try:
        assert os.read(p.stderr.fileno(), 64)          # the progress bar: the fit has begun
        time.sleep(1.0)
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130 and "Traceback" not in stderr.decode()
    rec = json.loads((out / "a" / "summary.json").read_text())
    assert rec["interrupted"] and rec["status"] == "interrupted" and rec["iterations"] >= 1
    assert (out / "a" / "output.png").exists()
    assert "| interrupted |" in (out / "summary.md").read_text()


def test_an_interrupt_before_the_first_iteration_saves_the_initial_output(tmp_path, capsys,
                                                                          monkeypatch):
    import utils.fit

    def interrupted(self, i):
        raise KeyboardInterrupt

    monkeypatch.setattr(utils.fit.Fit, "step", interrupted)
    out = tmp_path / "out"
    status, cap = run("denoising", "--image", png(tmp_path / "a.png"), "--out", out,
                      capsys=capsys)
    assert status == 130 and "Traceback" not in cap.err
    assert json.loads((out / "a" / "summary.json").read_text())["status"] == "interrupted"
    assert Image.open(out / "a" / "output.png").size == (40, 40)


def test_an_interrupted_image_is_fitted_again(tmp_path, capsys):
    img, out = png(tmp_path / "a.png"), tmp_path / "out"
    assert run("denoising", "--image", img, "--out", out)[0] == 0
    capsys.readouterr()
    assert run("denoising", "--image", img, "--out", out, capsys=capsys)[1].out.count(
        "already finished") == 1
    f = out / "a" / "summary.json"
    rec = json.loads(f.read_text())
    f.write_text(json.dumps(dict(rec, interrupted=True, status="interrupted")))
    status, cap = run("denoising", "--image", img, "--out", out, capsys=capsys)
    assert status == 0 and "already finished" not in cap.out
    assert json.loads(f.read_text())["status"] == "ok"


def test_an_interrupted_fit_of_another_question_keeps_the_finished_result(tmp_path, capsys,
                                                                          monkeypatch):
    """A refit with another seed says which result it will replace; stopped before its end, it
    is not saved: the finished result of seed 0 stays, byte for byte, and so does its summary
    row (another image's fit in that command lists it as not of the command)."""
    import hashlib
    import utils.fit
    img, out = png(tmp_path / "a.png"), tmp_path / "out"
    assert run("denoising", "--image", img, "--out", out)[0] == 0
    capsys.readouterr()
    before = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in (out / "a").iterdir()}
    real = utils.fit.Fit.step

    def stopped(self, i):
        if i == 1:
            raise KeyboardInterrupt
        return real(self, i)
    monkeypatch.setattr(utils.fit.Fit, "step", stopped)
    status, cap = run("denoising", "--image", img, "--out", out, "--seed", "1", capsys=capsys)
    assert status == 130 and "Traceback" not in cap.err
    assert "note: a: its finished result in a/ (--seed 0 → 1) is replaced when this fit ends" \
        in cap.err
    assert "a: interrupted after 1 iterations, not saved: its folder keeps its finished " \
        "result, and summary.md its row\n" in cap.err
    after = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in (out / "a").iterdir()}
    assert after == before
    # with an image fitted before it in the same command: a's row is its finished result's
    png(tmp_path / "0.png", seed=1)
    fits = []

    def second_stopped(self, i):        # the command's second fit (a's) is stopped
        fits.extend([i] * (i == 0))
        return stopped(self, i) if len(fits) == 2 else real(self, i)
    monkeypatch.setattr(utils.fit.Fit, "step", second_stopped)
    status, cap = run("denoising", "--image", tmp_path, "--out", out, "--seed", "1",
                      capsys=capsys)
    md = (out / "summary.md").read_text()
    assert status == 130 and "| a | ok |" in md and "| 0 | ok |" in md
    assert "interrupted" not in md.split("last command")[1].split("\n", 1)[1]
    assert "Not of the last command: 1 row kept from earlier runs on this folder (a)" in md
    monkeypatch.setattr(utils.fit.Fit, "step", real)
    # stopped while its outputs are written (its figures drawn): the same, a's row stands
    import utils.cli

    def stopped_writing(*a, **k):
        raise KeyboardInterrupt
    write_outputs = utils.cli.write_outputs
    monkeypatch.setattr(utils.cli, "write_outputs", stopped_writing)
    status, cap = run("denoising", "--image", tmp_path, "--out", out, "--seed", "2",
                      capsys=capsys)
    md = (out / "summary.md").read_text()
    assert status == 130 and "interrupted: 0 was not saved" in cap.err
    assert "| a | ok |" in md and "| 0 | ok |" in md and "| interrupted |" not in md
    monkeypatch.setattr(utils.cli, "write_outputs", write_outputs)
    monkeypatch.setattr(utils.fit.Fit, "step", stopped)
    # another task's fit of an image of that name says whose result it replaces
    status, cap = run("deblurring", "--image", img, "--out", out, capsys=capsys)
    assert "note: a: its finished result in a/ (of denoising) is replaced" in cap.err
    assert status == 130        # stopped too: the denoising result stays
    assert json.loads((out / "a" / "summary.json").read_text())["task"] == "denoising"
    # run to its end, the refit replaces it
    monkeypatch.setattr(utils.fit.Fit, "step", real)
    assert run("denoising", "--image", img, "--out", out, "--seed", "1")[0] == 0
    assert json.loads((out / "a" / "summary.json").read_text())["hyperparameters"]["seed"] == 1


# ---------------------------------------------------------------- 7. restore() and dtypes
BASE = (np.random.default_rng(3).random((32, 40)) * 0.6 + 0.2).astype(np.float32)
QUICK = dict(iters=2, channels=8, log_every=1, preset="quick")


@pytest.mark.parametrize("make,white,check", [
    (lambda: Image.fromarray((BASE * 65535).astype(np.uint16)), 65535,
     lambda o: isinstance(o, Image.Image) and o.mode == "I;16" and np.asarray(o).max() > 255),
    (lambda: Image.fromarray(BASE, "F"), 1.0,
     lambda o: o.mode == "F" and 0 < np.asarray(o).max() <= 1),
    (lambda: Image.fromarray((BASE * 65535).astype(np.int32), "I"), 65535,
     lambda o: o.mode == "I" and np.asarray(o).max() > 255),
    (lambda: (BASE * 255).round().astype(np.int64), 255,
     lambda o: o.dtype == np.int64 and o.shape == (32, 40) and 0 < o.max() <= 255),
    (lambda: (BASE * 65535).astype(np.uint16), 65535,
     lambda o: o.dtype == np.uint16 and o.max() > 255),
    (lambda: BASE.astype(np.float64)[..., None].repeat(3, -1), 1.0,
     lambda o: o.dtype == np.float64 and o.shape == (32, 40, 3) and 0 < o.max() <= 1),
    (lambda: torch.from_numpy((BASE * 255).astype(np.uint8))[None], 255,
     lambda o: o.dtype == torch.uint8 and tuple(o.shape) == (1, 32, 40) and 0 < int(o.max())),
], ids=["pil-I;16", "pil-F", "pil-I", "int64", "uint16", "float64", "tensor-uint8"])
def test_restore_scales_every_dtype_and_gives_it_back(make, white, check):
    r = restore(make(), "denoising", **QUICK)
    assert abs(float(r.observed.mean()) - float(BASE.mean())) < 2 / 255   # scaled by `white`
    assert check(r.image)


@pytest.mark.parametrize("image,error,needle", [
    (BASE * 255, ValueError, "divide"), (np.full((32, 32), np.nan), ValueError, "NaN"),
    (np.full((32, 32), np.inf), ValueError, "NaN or infinite"),
    (np.zeros((0, 0)), ValueError, "empty"), (np.zeros((1, 32, 32, 3)), ValueError, "one image"),
    (np.zeros((8, 8)), ValueError, "minimum 16x16"), (BASE > 0.5, TypeError, "mask"),
    (np.full((32, 32), -3, np.int64), ValueError, "negative"),
    (np.full((32, 32), 70000, np.int64), ValueError, "0..65535"),
    (np.zeros((32, 32, 5)), ValueError, "channels"), (torch.zeros(2, 3, 32, 32), ValueError,
                                                      "one image"),
    ("not an image at all", ValueError, "no such file"), (object(), TypeError, "numpy"),
    (torch.zeros(32, 40, 3), ValueError, r"got shape \(32, 40, 3\) \(an \(H, W, C\) tensor: "
                                         r"pass t\.permute\(2, 0, 1\)\)$"),
    (torch.zeros(1, 32, 32, 5), ValueError, r"\(C, H, W\) or \(1, C, H, W\) with 1 to 4 "
                                            r"channels, got shape \(1, 32, 32, 5\)$"),
])
def test_restore_refuses_what_it_cannot_scale(image, error, needle):
    with pytest.raises(error, match=needle):
        restore(image, "denoising", **QUICK)


def test_restore_clips_slightly_out_of_range_floats_with_a_warning():
    noisy = BASE + np.random.default_rng(0).normal(0, 0.2, BASE.shape).astype(np.float32)
    with pytest.warns(UserWarning, match="clipped") as said:
        r = restore(noisy, "denoising", **QUICK)
    assert r.image.dtype == np.float32 and 0 <= r.image.min() and r.image.max() <= 1
    assert [w.filename for w in said] == [__file__]     # at the caller's line, once
    known = np.ones(BASE.shape[:2], np.float32)
    known[4:12, 4:12] = -0.1          # a mask in memory: its clip is said, named as the mask
    with pytest.warns(UserWarning, match=r"^mask= \(ndarray\): array image: float pixels"):
        restore((BASE * 255).astype(np.uint8), "inpainting", mask=known, **QUICK)


# ---------------------------------------------------------------- 8. no traceback, ever
def test_a_full_disk_removes_the_partial_outputs(tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    png(src / "a.png", seed=1)
    png(src / "b.png", seed=2)
    calls = []

    def full_disk(path, *a, **k):
        calls.append(path)
        if "b" in Path(path).parent.name:   # b's outputs: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *a, **k)

    real = utils.outputs.write_log
    monkeypatch.setattr(utils.outputs, "write_log", full_disk)
    out = tmp_path / "out"
    status, cap = run("denoising", "--image", src, "--out", out, capsys=capsys)
    assert status == 1 and "No space left" in one_line(cap.err)
    assert files(out / "a") and not (out / "b").exists()
    assert not [f for f in files(out) if "partial" in f]     # the staging folder is gone
    assert "| b | not written |" in (out / "summary.md").read_text()


def test_dataset_fetch_dest_that_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = launcher.run(["-m", "dataset.fetch", "denoising", "--dest", blocker / "sub"],
                     timeout=120)
    assert r.returncode == 2 and "file" in one_line(r.stderr)


# ---------------------------------------------------------------- 9. nothing left behind
def test_summary_json_is_strict_and_markdown_cells_are_escaped(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    img = png(src / "a|b.png")
    white = png(tmp_path / "white.png", value=255, mode="L")      # PSNR of the input: +inf
    out = tmp_path / "out"
    status, _ = run("inpainting", "--image", img, "--mask", white, "--out", out, capsys=capsys)
    assert status == 0

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    rec = json.loads((out / "a|b" / "summary.json").read_text(), parse_constant=refuse)
    assert rec["psnr_in"] is None
    table = [ln for ln in (out / "summary.md").read_text().splitlines() if ln.startswith("|")]
    header, row = table[0], table[2]
    assert row.startswith("| a\\|b |") and row.count(" | ") == header.count(" | ")


@pytest.mark.parametrize("kind", ["gif", "tiff"])
def test_a_multi_frame_file_says_first_frame_only(kind, tmp_path, capsys):
    frames = [Image.fromarray(np.full((40, 40), v, np.uint8)) for v in (60, 200)]
    path = tmp_path / f"anim.{kind}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = tmp_path / "out"
    status, cap = run("denoising", "--image", path, "--out", out, capsys=capsys)
    assert status == 0 and "first frame only" in cap.err
    r = json.loads((out / "anim" / "summary.json").read_text())
    assert r["status"] == "ok"


# ---------------------------------------------------------------- found by a hostile review
def test_names_stay_distinct_safe_and_inside_the_output_folder(tmp_path, capsys):
    src = tmp_path / "in"
    for sub in ("p/d", "q/d"):
        (src / sub).mkdir(parents=True)
        png(src / sub / "a.png", seed=len(sub))
    png(src / "d_a_png_1.png", seed=5)       # the name a renaming scheme might hand out
    png(src / "summary.csv.png", seed=7)     # stem "summary.csv": must not take the table's name
    out = tmp_path / "deep" / "out"
    status, cap = run("denoising", "--image", f"{src}/**/*.png", "--out", out, capsys=capsys)
    assert status == 0 and "skipped" not in cap.out
    folders = [p.name for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 4 and all((out / f / "output.png").exists() for f in folders)
    assert (out / "summary.csv").is_file()
    status, _ = run("denoising", "--image", png(src / "...png", seed=6), "--out", out)
    assert status == 0 and (out / "image" / "output.png").exists()   # stem "..": stays inside
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]


def test_a_different_image_with_the_same_name_is_not_skipped(tmp_path, capsys):
    out = tmp_path / "out"
    for seed, folder in ((1, "x"), (2, "y")):
        (tmp_path / folder).mkdir()
        status, cap = run("denoising", "--image", png(tmp_path / folder / "a.png", seed=seed),
                          "--out", out, capsys=capsys)
        assert status == 0 and "skipped" not in cap.out
    rec = json.loads((out / "a" / "summary.json").read_text())
    assert rec["source"]["path"].endswith(str(Path("y") / "a.png"))


def test_a_file_where_an_image_folder_would_go_is_refused_up_front(tmp_path, capsys):
    img = tmp_path / "a"                      # an image file without an extension, in --out
    img.write_bytes(png(tmp_path / "x.png").read_bytes())
    status, cap = run("denoising", "--image", img, "--out", tmp_path, capsys=capsys)
    assert status == 2 and "choose another --out" in one_line(cap.err) and "a:" in cap.err


def test_every_bad_file_is_named_when_none_can_be_used(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    png(src / "tiny.png", size=(8, 8))
    (src / "text.png").write_text("hello")
    status, cap = run("denoising", "--image", src, "--out", tmp_path / "out", capsys=capsys)
    assert status == 2 and "tiny.png" in cap.err and "text.png" in cap.err
    assert not (tmp_path / "out").exists()


def test_a_sibling_mask_is_not_fitted_as_an_image(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    png(src / "a.png")
    m = np.zeros((40, 40), np.uint8)
    m[::2] = 255
    Image.fromarray(m).save(src / "a_mask.png")
    out = tmp_path / "out"
    status, cap = run("inpainting", "--image", src, "--out", out, capsys=capsys)
    assert status == 0 and sorted(p.name for p in out.iterdir() if p.is_dir()) == ["a"]
    assert "note: a: reads a_mask.png too (found beside it)" in cap.out     # said, once
    assert cap.out.count("a_mask.png") == 1
    status, cap = run("inpainting", "--image", src / "a.png", "--mask", src / "a_mask.png",
                      "--out", tmp_path / "out2", capsys=capsys)
    assert status == 0 and "a_mask.png" not in cap.out      # named: nothing to say


def test_a_glob_reaching_one_file_twice_fits_it_once(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    png(src / "a.png")
    (src / "loop").symlink_to(src)
    status, cap = run("denoising", "--image", f"{src}/**/*.png", "--out", tmp_path / "out",
                      capsys=capsys)
    assert status == 0 and cap.out.count("psnr_in") == 1


@pytest.mark.parametrize("image,kw,error,needle", [
    (np.full((32, 32), 100, np.int8), {}, TypeError, "int8"),
    (np.full((32, 32), 1000, np.int16), {}, TypeError, "uint16"),
    ((BASE * 255).astype(np.uint8), {"mask": [[1, 0]]}, TypeError, r"^mask= \(list\): "),
    ((BASE * 255).astype(np.uint8), {"plots": False}, ValueError, "restore.. draws no figures"),
])
def test_restore_refuses_what_it_cannot_give_back(image, kw, error, needle):
    task = "inpainting" if "mask" in kw else "denoising"
    with pytest.raises(error, match=needle):
        restore(image, task, **QUICK, **kw)


def test_an_option_of_the_synthetic_degradation_is_not_used_on_an_observed_image(tmp_path,
                                                                                capsys):
    """--sigma with --observed: said to be unused, recorded as None, and no other question
    (a rerun without it is skipped); restore() warns in its own words."""
    img, out = png(tmp_path / "a.png"), tmp_path / "out"
    status, cap = run("denoising", "--image", img, "--out", out, "--observed", "--sigma", "50",
                      capsys=capsys)
    assert status == 0 and "note: --sigma 50.0 not used: the image is observed" in cap.out
    assert json.loads((out / "a" / "summary.json").read_text())["hyperparameters"]["sigma"] \
        is None
    status, cap = run("denoising", "--image", img, "--out", out, "--observed", capsys=capsys)
    assert status == 0 and "already finished" in cap.out and "not used" not in cap.out
    # a record written before (its σ a number) asks the same question: still finished
    f = out / "a" / "summary.json"
    rec = json.loads(f.read_text())
    f.write_text(json.dumps(dict(rec, hyperparameters=dict(rec["hyperparameters"], sigma=25.0))))
    status, cap = run("denoising", "--image", img, "--out", out, "--observed", capsys=capsys)
    assert status == 0 and "already finished" in cap.out
    status, cap = run("denoising", "--image", img, "--out", out, "--observed", "--sigma", "auto",
                      capsys=capsys)      # another question, said as the record holds it
    assert status == 0 and "(--sigma none → auto) is replaced" in cap.err
    status, cap = run("deblocking", "--image", img, "--out", tmp_path / "d", "--observed",
                      "--quality", "30", capsys=capsys)
    assert status == 0 and "note: --quality 30 not used" in cap.out
    status, cap = run("deblocking", "--image", img, "--out", tmp_path / "d", "--observed",
                      "--quality", "0", capsys=capsys)      # unused, yet still checked
    assert status == 2 and "--quality must be in 1..100" in cap.err
    Image.fromarray(np.where(np.eye(40, dtype=bool), 0, 255).astype(np.uint8)).save(
        tmp_path / "a_mask.png")      # observed inpainting: the mask file sets the holes
    status, cap = run("inpainting", "--image", img, "--out", tmp_path / "i", "--observed",
                      "--drop-rate", "0.3", capsys=capsys)
    rec = json.loads((tmp_path / "i" / "a" / "summary.json").read_text())["hyperparameters"]
    assert status == 0 and "note: --drop-rate 0.3 not used" in cap.out
    assert rec["drop_rate"] is None and rec["mask_seed"] is None
    with pytest.warns(UserWarning, match=r"^sigma=50 not used: the image is observed"):
        restore(np.asarray(Image.open(img)), task="denoising", sigma=50, **QUICK)
    # a synthetic fit uses it, and auto still estimates σ of an observed photo
    status, cap = run("denoising", "--image", img, "--out", tmp_path / "s", "--sigma", "50",
                      capsys=capsys)
    assert status == 0 and "not used" not in cap.out
    assert json.loads((tmp_path / "s" / "a" / "summary.json").read_text())[
        "hyperparameters"]["sigma"] == 50
    status, cap = run("denoising", "--image", img, "--out", tmp_path / "auto", "--observed",
                      "--sigma", "auto", capsys=capsys)
    rec = json.loads((tmp_path / "auto" / "a" / "summary.json").read_text())
    assert status == 0 and rec["hyperparameters"]["sigma"] == "auto" and rec["sigma_estimate"] > 0


def test_a_short_fit_whose_result_is_the_unwarmed_average_says_so(tmp_path, capsys):
    """A moving average without warm-up starts at the untrained net's output: 100 iterations of
    deblocking's preset returned 17.3 dB where the net's own output had 24.6 (a new user's
    trial); the note says how much of that first output is left and what to do."""
    from deblocking import TASK as DEBLOCKING
    from denoising import TASK as DENOISING
    from utils.config import resolve_config
    _, notice = resolve_config(DEBLOCKING, {"iters": 100}, "quick", whole=True)
    assert ("note: --iters 100: the result, the moving average of outputs (--exp-weight 0.99), "
            "still holds 37% of the untrained net's first output") in notice
    assert "--ema-warmup lets it go early" in notice
    for task, given in [(DEBLOCKING, {"iters": 400}), (DEBLOCKING, {}),      # long enough
                        (DEBLOCKING, {"iters": 100, "ema_warmup": True}),    # warmed up
                        (DEBLOCKING, {"iters": 100, "use_ema": False}),      # not the result
                        (DENOISING, {"iters": 100})]:                        # its preset warms up
        _, notice = resolve_config(task, given, "quick", whole=True)
        assert "moving average" not in (notice or ""), (task.name, given)
    # the command line says it once more after the fits, whose lines may have scrolled it away
    img = png(tmp_path / "a.png")
    status, cap = run("deblocking", "--image", img, "--iters", "3", "--out", tmp_path / "o",
                      capsys=capsys)
    said = [ln for ln in cap.out.splitlines() if "of the untrained net's first output" in ln]
    assert status == 0 and len(said) == 2 and cap.out.splitlines()[-2] == said[0]


def test_no_plots_leaves_the_figures_out_and_a_rerun_finds_the_result(tmp_path, capsys):
    """--no-plots (reproduce.py --pack passes it): no fbc / psnr_ratio / montage figure, the
    images and the record as ever; plots are presentation, so a rerun with them is done."""
    img, out = png(tmp_path / "a.png"), tmp_path / "out"
    status, cap = run("denoising", "--image", img, "--out", out, "--no-plots", capsys=capsys)
    assert status == 0
    assert files(out / "a") == ["log.csv", "noisy.png", "output.png", "output_ema.png",
                                "summary.json"]
    rec = json.loads((out / "a" / "summary.json").read_text())
    assert "plots" not in rec["hyperparameters"] and "fbc.png" not in rec["outputs"]
    status, cap = run("denoising", "--image", img, "--out", out, capsys=capsys)
    assert status == 0 and "a: already finished, skipped (fitted with --no-plots: no figures " \
        "drawn)" in cap.out
    status, cap = run("denoising", "--image", img, "--out", tmp_path / "p", capsys=capsys)
    assert status == 0 and {"fbc.png", "psnr_ratio.png", "montage.png"} <= set(
        files(tmp_path / "p" / "a"))
    status, cap = run("denoising", "--image", img, "--out", tmp_path / "p", capsys=capsys)
    assert "a: already finished, skipped\n" in cap.out
