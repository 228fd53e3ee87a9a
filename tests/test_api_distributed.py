"""The Python API on every input type, and torchrun sharding: two gloo ranks on CPU give one
summary with the numbers of a single-process run; a rerun skips finished images."""
import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from tasks import restore

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(channels=8, iters=4, log_every=1)


@pytest.fixture(scope="module")
def face():
    return data.astronaut()[150:214, 180:244]  # 64×64×3 uint8


def test_restore_numpy_keeps_type_and_shape(face):
    r = restore(face, task="denoising", observed=False, **TINY)
    assert isinstance(r.image, np.ndarray) and r.image.dtype == np.uint8
    assert r.image.shape == face.shape
    assert np.isfinite(r.metrics["psnr"]) and len(r.history["iteration"]) == 4
    gray = restore(face[..., 0].astype(np.float32) / 255, task="denoising", **TINY)
    assert gray.image.shape == (64, 64) and gray.image.dtype == np.float32
    # observed: no ground truth, only the held-out loss of the default validation stop
    assert set(gray.metrics) == {"heldout_loss"}


def test_restore_pil_tensor_and_path(face, tmp_path):
    pil = restore(Image.fromarray(face), task="deblocking", **TINY)
    assert isinstance(pil.image, Image.Image) and pil.image.size == (64, 64)
    t = torch.from_numpy(face).permute(2, 0, 1).float()[None] / 255
    tt = restore(t, task="enhancement", **TINY)
    assert isinstance(tt.image, torch.Tensor) and tt.image.shape == (1, 3, 64, 64)
    p = tmp_path / "face.png"
    Image.fromarray(face).save(p)
    pp = restore(p, task="super_resolution", factor=2, channels_down=8, channels_up=8,
                 scales=3, iters=3)
    assert isinstance(pp.image, Image.Image) and pp.image.size == (128, 128)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        restore(face, task="denoising", nonsense=1)


def test_restore_scores_like_the_command_line_and_takes_presets(face):
    sr = restore(face, task="super_resolution", observed=False, factor=2, channels_down=8,
                 channels_up=8, scales=3, iters=2)
    assert {"psnr", "ssim", "y_psnr", "y_psnr_bicubic"} <= set(sr.metrics)  # utils.task.score
    quick = restore(face, task="denoising", preset="quick", channels=8, iters=2)
    assert quick.fit.iterations == 2 and len(quick.history["iteration"]) == 1  # quick: every 10
    full = restore(face, task="denoising", full=True, channels=8, iters=2)   # the older spelling
    assert len(full.history["iteration"]) == 2                               # full: every one
    with pytest.raises(ValueError, match="preset"):
        restore(face, task="denoising", preset="fast")


def test_restore_returns_the_observation_it_fitted(face):
    """r.observed is the degraded image the fit saw, after the ``crop`` entry's centre crop."""
    r = restore(face, task="enhancement", crop=32, **TINY)
    assert r.observed.shape == (32, 32, 3) == r.array.shape
    np.testing.assert_allclose(r.observed, face[16:48, 16:48] / 255, atol=1e-6)


def test_restore_takes_a_mask_in_memory_as_it_takes_its_file(face, tmp_path):
    """mask= takes a bool array (True = known), an 8-bit array, a tensor or a PIL image, and
    fits what the same mask saved as a PNG fits; it is checked as a file is."""
    known = np.ones((64, 64), bool)
    known[20:40, 24:44] = False
    Image.fromarray(known.astype(np.uint8) * 255).save(tmp_path / "known.png")
    base = restore(face, task="inpainting", mask=tmp_path / "known.png", **TINY)
    for m in (known, known.astype(np.uint8) * 255, torch.from_numpy(known),
              Image.fromarray(known.astype(np.uint8) * 255)):
        r = restore(face, task="inpainting", mask=m, **TINY)
        np.testing.assert_array_equal(r.observed, base.observed)
        np.testing.assert_array_equal(r.array, base.array)
    assert r.config["mask"] == "mask= (Image)"
    with pytest.raises(ValueError, match=r"^mask= \(ndarray\): mask is 32x32 but the image "):
        restore(face, task="inpainting", mask=known[:32, :32], **TINY)
    with pytest.raises(ValueError, match=r"mask= \(ndarray\): the mask marks no pixel"):
        restore(face, task="inpainting", mask=~np.ones_like(known), **TINY)


def test_restore_words_its_errors_as_keywords(face):
    """restore()'s refusals name keywords, not the command line's flags: an observed image
    without a mask, an unknown keyword (with the nearest one), a GPU that is not there."""
    with pytest.raises(ValueError, match=r"^array image: observed inpainting needs a mask: "
                                         r"mask=FILE$"):
        restore(face, task="inpainting", **TINY)
    with pytest.raises(ValueError, match=r"\['sead'\] \(did you mean seed\?\)$"):
        restore(face, task="denoising", sead=1, **TINY)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r'^device="cuda": no CUDA GPU is available here '
                                             r'\(use device="auto" or device="cpu"\)$'):
            restore(face, task="denoising", device="cuda", **TINY)


def _run(args, env):
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def test_torchrun_two_ranks_equals_one_process(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    a = data.astronaut()
    for k in range(4):
        Image.fromarray(a[64 * k:64 * k + 64, 100:164]).save(imgs / f"im{k}.png")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    common = ["denoising.py", "--quick", "--quiet", "--channels", "8", "--iters", "6",
              "--image", str(imgs)]
    single = _run([sys.executable, *common, "--out", str(tmp_path / "one")], env)
    assert single.returncode == 0, single.stderr
    with socket.socket() as sock:  # a free port: another run on this machine may hold any fixed one
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    multi = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                  f"--master_port={port}", *common, "--out", str(tmp_path / "two")], env)
    assert multi.returncode == 0, multi.stderr
    rows = {}
    for name in ("one", "two"):
        with open(tmp_path / name / "summary.csv") as f:
            rows[name] = list(csv.DictReader(f))
    assert [r["image"] for r in rows["two"]] == ["im0", "im1", "im2", "im3", "mean"]
    for r1, r2 in zip(rows["one"], rows["two"]):
        assert (r1["psnr"], r1["ssim"]) == (r2["psnr"], r2["ssim"])
    # a rerun skips every finished image and rewrites the same summary
    again = _run([sys.executable, *common, "--out", str(tmp_path / "two")], env)
    assert again.returncode == 0 and again.stdout.count("already finished") == 4
    with open(tmp_path / "two" / "summary.csv") as f:
        assert [r["psnr"] for r in csv.DictReader(f)] == [r["psnr"] for r in rows["two"]]


@pytest.mark.parametrize("rank", ["0", "1"])
def test_under_torchrun_a_bad_input_is_said_by_rank_0_only(tmp_path, monkeypatch, capsys, rank):
    """Every rank stops with status 2; only rank 0 prints the line (two ranks printed it
    twice, before the launcher's own traceback)."""
    from tasks import get_task
    from utils.cli import main
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for argv in (["--image", str(tmp_path / "none.png")], ["--iters", "0"]):
        assert main(get_task("denoising"), ["--quiet", "--out", str(tmp_path / "o"), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == (1 if rank == "0" else 0), err
    with pytest.raises(SystemExit) as stop:     # argparse's own refusal, likewise
        main(get_task("denoising"), ["--iters", "many"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == (1 if rank == "0" else 0), err
    assert rank != "0" or "--iters" in err[0], err
    # RANK left behind without WORLD_SIZE, or not a number: a plain process, which speaks
    monkeypatch.delenv("WORLD_SIZE")
    from utils.cli import speaks_for_all
    assert speaks_for_all()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "x")
    assert speaks_for_all()


@pytest.mark.parametrize("on_gpu", [True, False])
def test_each_torchrun_rank_takes_its_own_gpu_before_nccl(monkeypatch, on_gpu):
    """NCCL's object collectives run on the current CUDA device, so a GPU rank sets its own
    (LOCAL_RANK) first, else every rank gathers on cuda:0; CPU fits (--device cpu on a GPU node
    too) take gloo and leave the device alone."""
    import torch.distributed as dist
    from utils.cli import _distributed
    said = []
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: said.append(backend))
    monkeypatch.setattr(dist, "get_rank", lambda: 3)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: said.append(f"cuda:{d}"))
    assert _distributed(on_gpu) == (3, 4)
    assert said == (["cuda:3", "nccl"] if on_gpu else ["gloo"])
