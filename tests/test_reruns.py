"""What is left on disk is the answer to what was asked (issue #25, classes 1-3): a rerun skips
only the same question with every output still there, a refit leaves no stale file, two runs on
one folder keep every row, outputs move into place all or nothing, long names are shortened,
a killed write's leftovers are cleaned, and torchrun reports a bad input without a traceback."""
import csv
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from tasks import get_task
from utils.cli import main
from utils.device import resolve_device

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--quick", "--quiet", "--channels", "8", "--iters", "4", "--log-every", "2"]


def run(task, *argv):
    """A task script in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(get_task(task), [*TINY, *argv])
    return status, out.getvalue(), err.getvalue()


def save(path, a):
    Image.fromarray(a).save(path)
    return path


@pytest.fixture
def face(tmp_path):
    return save(tmp_path / "face.png", data.astronaut()[150:214, 180:244])


def digest(folder):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())
            if f.is_file()}


def rows(out):
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_another_mask_of_the_same_name_is_another_question(tmp_path):
    img = save(tmp_path / "cam.png", data.camera()[200:264, 200:264])
    m = np.full((64, 64), 255, np.uint8)
    m[20:40, 20:40] = 0
    mask = save(tmp_path / "holes.png", m)
    out = tmp_path / "out"
    args = ("inpainting", "--image", str(img), "--mask", str(mask), "--out", str(out))
    assert run(*args)[0] == 0
    assert "already finished" in run(*args)[1]            # the same question: skipped
    m[40:60, 40:60] = 0                                    # the same file name, other holes
    save(mask, m)
    status, text, _ = run(*args)
    assert status == 0 and "already finished" not in text
    rec = json.loads((out / "cam" / "summary.json").read_text())
    assert rec["source"]["reads"] == [{"file": "holes.png",
                                       "sha256": hashlib.sha256(mask.read_bytes()).hexdigest()}]


def test_a_mask_file_leaves_the_bernoulli_options_out_of_the_question(tmp_path):
    img = save(tmp_path / "cam.png", data.camera()[200:264, 200:264])
    m = np.full((64, 64), 255, np.uint8)
    m[20:40, 20:40] = 0
    mask = save(tmp_path / "cam_mask.png", m)          # beside the image: read for it alone
    out = tmp_path / "out"
    assert run("inpainting", "--image", str(img), "--out", str(out))[0] == 0
    h = json.loads((out / "cam" / "summary.json").read_text())["hyperparameters"]
    assert h["drop_rate"] is None and h["mask_seed"] is None      # unused: the file's mask
    status, text, _ = run("inpainting", "--image", str(img), "--out", str(out), "--drop-rate",
                          "0.3", "--mask-seed", "7")
    assert status == 0 and "already finished" in text             # no other question
    mask.unlink()          # the Bernoulli mask now: another question, its options recorded
    status, text, err = run("inpainting", "--image", str(img), "--out", str(out),
                            "--drop-rate", "0.3")
    assert status == 0 and "already finished" not in text and "(another mask)" in err
    h = json.loads((out / "cam" / "summary.json").read_text())["hyperparameters"]
    assert (h["drop_rate"], h["mask_seed"]) == (0.3, 100)
    # --mask for every image: a Bernoulli option given is said to be unused
    status, text, err = run("inpainting", "--image", str(img), "--out", str(out), "--mask",
                            str(save(tmp_path / "holes.png", m)), "--mask-seed", "3")
    assert status == 0 and "--mask-seed 3 not used: the mask given (--mask) replaces the " \
        "synthetic one" in text + err
    from tasks import restore                              # and restore() warns so
    with pytest.warns(UserWarning, match=r"mask_seed=3 not used: the mask given \(mask\)"):
        restore(data.camera()[:64, :64], task="inpainting", mask=m > 0, observed=False, iters=2,
                mask_seed=3, channels=8, preset="quick")


def test_a_folder_of_masked_and_bernoulli_images_differs_in_no_bernoulli_option(tmp_path):
    save(tmp_path / "a.png", data.camera()[200:264, 200:264])
    save(tmp_path / "b.png", data.camera()[300:364, 200:264])
    m = np.full((64, 64), 255, np.uint8)
    m[20:40, 20:40] = 0
    save(tmp_path / "a_mask.png", m)              # a's mask; b takes the Bernoulli mask
    out = tmp_path / "out"
    assert run("inpainting", "--image", str(tmp_path), "--out", str(out))[0] == 0
    md = (out / "summary.md").read_text()
    assert "| mean | 2 ok images |" in md and "different" not in md


def test_one_net_either_way_reads_the_record_s_grid():
    from utils.outputs import one_net_either_way
    fell_back = {"grid": [256, 256], "hyperparameters": {"tile": 128}}   # a hole too wide
    assert one_net_either_way(fell_back, {"tile": 0})
    assert one_net_either_way(fell_back, {"tile": 256})
    assert not one_net_either_way(fell_back, {"tile": 128})     # its tiles may fit now
    assert not one_net_either_way({**fell_back, "tiles": 9}, {"tile": 0})
    older = {"hyperparameters": {"tile": 128}}                    # no grid: exact questions
    assert not one_net_either_way(older, {"tile": 0})
    assert one_net_either_way({"hyperparameters": {"tile": 0}}, {"tile": 0})


def test_the_tiles_of_an_image_no_larger_than_a_tile_are_no_other_question(tmp_path):
    img = save(tmp_path / "cam.png", data.camera()[200:296, 200:296])     # 96×96
    out = tmp_path / "out"
    fit = lambda *a: run("denoising", "--image", str(img), "--out", str(out), *a)  # noqa: E731
    assert fit()[0] == 0                                         # the preset's 128² tiles
    rec = json.loads((out / "cam" / "summary.json").read_text())
    assert rec["grid"] == [96, 96] and "tiles" not in rec and rec["hyperparameters"]["tile"] == 128
    status, text, _ = fit("--tile", "0")                         # one net either way
    assert status == 0 and "already finished, skipped (fitted with --tile 128: one net either " \
        "way, as the image is no larger than a tile)" in text
    assert "already finished" in fit("--tile", "96", "--tile-overlap", "16")[1]
    status, text, _ = fit("--tile", "64")                        # 4 tiles: another fit
    assert status == 0 and "already finished" not in text
    assert json.loads((out / "cam" / "summary.json").read_text())["tiles"] == 4
    assert "already finished" not in fit("--tile", "0")[1]       # and back to one net
    assert "(fitted with --tile-overlap 32: one net either way, without tiles)" in fit(
        "--tile", "0", "--tile-overlap", "16")[1]


def test_a_record_of_an_older_format_is_fitted_again_where_its_outputs_changed(face, tmp_path):
    """Enhancement's output.png was its base before format 2: such a result is no answer."""
    for task, again in (("enhancement", True), ("denoising", False)):
        out = tmp_path / task
        args = (task, "--image", str(face), "--out", str(out))
        assert run(*args)[0] == 0
        rec_path = out / "face" / "summary.json"
        rec = json.loads(rec_path.read_text())
        assert rec["format"] == 2
        del rec["format"]                                   # as written before 2026-12-07
        rec_path.write_text(json.dumps(rec))
        status, text, _ = run(*args)
        assert status == 0 and ("already finished" not in text) == again, task


def test_a_missing_output_is_fitted_again(face, tmp_path):
    out = tmp_path / "out"
    assert run("denoising", "--image", str(face), "--out", str(out))[0] == 0
    (out / "face" / "output.png").unlink()
    status, text, _ = run("denoising", "--image", str(face), "--out", str(out))
    assert status == 0 and "already finished" not in text
    assert (out / "face" / "output.png").is_file()
    assert "already finished" in run("denoising", "--image", str(face), "--out", str(out))[1]
    f = out / "face" / "output_ema.png"                # cut short (a copy that failed)
    f.write_bytes(f.read_bytes()[:-20])
    status, text, err = run("denoising", "--image", str(face), "--out", str(out))
    assert status == 0 and "already finished" not in text and "cut short" in err
    assert Image.open(f).load() is not None and f.read_bytes()[-8:-4] == b"IEND"


def test_the_device_auto_chose_is_the_device_asked(face, tmp_path):
    """A rerun naming the device that ``auto`` chose asks the same question (skipped); another
    kind of device asks another (a cuda:N is a cuda)."""
    from utils.config import asked
    assert asked({"device": "auto", "iters": 4}, "cpu") == asked({"device": "cpu", "iters": 4},
                                                                 "cpu")
    assert asked({"device": "cuda:1"}, "cuda:1") == asked({"device": "auto"}, "cuda") \
        == {"device": "cuda"} != asked({"device": "auto"}, "cpu")
    # a GPU's record names its card (utils.device.device_name): the kind asked is cuda
    assert asked({"device": "auto"}, "NVIDIA H100 80GB HBM3") == {"device": "cuda"}
    out, chosen = tmp_path / "out", str(resolve_device("auto"))
    assert run("denoising", "--image", str(face), "--out", str(out))[0] == 0
    status, text, _ = run("denoising", "--image", str(face), "--out", str(out), "--device", chosen)
    assert status == 0 and "already finished" in text
    assert asked(json.loads((out / "face" / "summary.json").read_text())["hyperparameters"],
                 chosen)["device"] == chosen


def test_a_refit_leaves_no_file_of_the_earlier_run(face, tmp_path):
    out = tmp_path / "out"
    assert run("denoising", "--image", str(face), "--out", str(out), "--restarts", "2")[0] == 0
    assert (out / "face" / "uncertainty.png").is_file()
    (out / "face" / "my_notes.txt").write_text("mine")    # not a file a run writes: kept
    assert run("denoising", "--image", str(face), "--out", str(out), "--restarts", "1")[0] == 0
    rec = json.loads((out / "face" / "summary.json").read_text())
    files = {f.name for f in (out / "face").iterdir()}
    assert "uncertainty.png" not in files and files == set(rec["outputs"]) | {"my_notes.txt"}
    assert not [p for p in out.iterdir() if p.name.startswith(".face.")]


def test_two_runs_at_once_on_one_folder_keep_both_rows(tmp_path):
    a = save(tmp_path / "a.png", data.astronaut()[150:214, 180:244])
    b = save(tmp_path / "b.png", data.chelsea()[50:114, 100:164])
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "denoising.py", *TINY, "--image", str(p),
                               "--out", str(out)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in (a, b)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert sorted(r["image"] for r in rows(out)) == ["a", "b", "mean"]
    assert "| a |" in (out / "summary.md").read_text() and "| b |" in (
        out / "summary.md").read_text()
    # a later run on one of them keeps the other's row, and the table says it is not its own
    assert run("denoising", "--image", str(a), "--out", str(out), "--seed", "5")[0] == 0
    assert sorted(r["image"] for r in rows(out)) == ["a", "b", "mean"]
    said = "Not of the last command: 1 row kept from earlier runs on this folder (b)."
    assert said in (out / "summary.md").read_text()
    assert run("denoising", "--image", str(tmp_path), "--out", str(out))[0] == 0   # both: own
    assert "Not of the last command" not in (out / "summary.md").read_text()


def test_another_task_on_the_same_folder_is_not_averaged_into_its_summary(tmp_path):
    a = save(tmp_path / "a.png", data.astronaut()[150:214, 180:244])
    b = save(tmp_path / "b.png", data.chelsea()[50:114, 100:164])
    out = tmp_path / "out"
    assert run("deblocking", "--image", str(a), "--out", str(out))[0] == 0
    assert run("inpainting", "--image", str(b), "--out", str(out))[0] == 0
    assert [r["image"] for r in rows(out)] == ["b"]            # inpainting's own rows only
    assert json.loads((out / "a" / "summary.json").read_text())["task"] == "deblocking"
    (out / ".summary-rows.json").unlink()                      # rebuilt from the folders alike
    assert run("deblocking", "--image", str(a), "--out", str(out), "--seed", "3")[0] == 0
    assert [r["image"] for r in rows(out)] == ["a"]
    assert "task" not in (out / "summary.csv").read_text().splitlines()[0].split(",")


def test_a_failed_move_keeps_every_earlier_file(face, tmp_path):
    out = tmp_path / "out"
    assert run("denoising", "--image", str(face), "--out", str(out))[0] == 0
    folder = out / "face"
    (folder / "output.png").unlink()
    (folder / "output.png").mkdir()                         # a folder where a file must go
    before = digest(folder)
    status, _, err = run("denoising", "--image", str(face), "--out", str(out), "--seed", "7")
    assert status == 1 and "nothing of this image was kept" in err
    assert digest(folder) == before and (folder / "output.png").is_dir()
    assert not [p for p in out.iterdir() if p.name.startswith(".face.")]
    # nothing of this run was kept: the summary still shows the earlier result, on disk
    first, rec = rows(out)[0], json.loads((folder / "summary.json").read_text())
    assert first["status"] == "ok" and float(first["psnr"]) == pytest.approx(rec["psnr"])
    assert rec["hyperparameters"]["seed"] == 0


def test_a_long_name_is_shortened_and_written(tmp_path):
    name = "n" * 250
    img = save(tmp_path / f"{name}.png", data.astronaut()[150:214, 180:244])
    out = tmp_path / "out"
    status, text, _ = run("denoising", "--image", str(img), "--out", str(out))
    assert status == 0 and "too long for a folder" in text
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    assert len(folder.name.encode()) <= 200 and folder.name.startswith("nnnn")
    assert (folder / "output.png").is_file() and (folder / "summary.json").is_file()


def test_the_leftovers_of_a_killed_write_are_removed(face, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    out = tmp_path / "out"
    out.mkdir()
    for kind in ("partial", "old"):
        d = out / f".face.{kind}-{dead}"
        d.mkdir()
        (d / "output.png").write_bytes(b"half")
    alive = out / f".other.partial-{os.getppid()}"          # a live process's: left alone
    alive.mkdir()
    status, text, _ = run("denoising", "--image", str(face), "--out", str(out))
    assert status == 0 and text.count("left by a write that was killed") == 2
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == sorted(
        [alive.name, ".summary-rows.json", ".summary.lock"])


def test_torchrun_reports_a_bad_input_in_one_line(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for k in range(2):
        save(imgs / f"im{k}.png", data.astronaut()[64 * k:64 * k + 64, 100:164])
    (imgs / "broken.png").write_bytes(b"not a png")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                        f"--master_port={port}", "denoising.py", *TINY, "--image", str(imgs),
                        "--out", str(tmp_path / "out")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and p.stderr.count("broken.png: not an image") == 1
    assert [r["status"] for r in rows(tmp_path / "out")] == ["ok", "ok", "bad input",
                                                              "2 ok images"]


def test_the_mean_is_over_finished_images_and_says_which_settings_differ(tmp_path):
    """Two runs on one folder at two noise levels: the mean's status cell (and its printed line)
    names the setting that differs; an interrupted image's partial fit is left out of it."""
    from utils.outputs import ROWS_FILE
    a = save(tmp_path / "a.png", data.astronaut()[150:214, 180:244])
    b = save(tmp_path / "b.png", data.chelsea()[50:114, 100:164])
    out = tmp_path / "out"
    assert run("denoising", "--image", str(a), "--out", str(out))[0] == 0
    status, printed, _ = run("denoising", "--image", str(b), "--out", str(out), "--sigma", "50")
    assert status == 0
    mean = rows(out)[-1]
    assert mean["image"] == "mean" and mean["status"] == "2 ok images, fitted with different sigma"
    assert "(2 ok images, fitted with different sigma)" in printed
    both = {r["image"]: float(r["psnr"]) for r in rows(out)}
    assert float(mean["psnr"]) == pytest.approx((both["a"] + both["b"]) / 2, abs=0.01)
    # b marked interrupted (as a Ctrl-C leaves it): a's refit averages a alone
    kept = json.loads((out / ROWS_FILE).read_text())
    (out / ROWS_FILE).write_text(json.dumps([dict(r, status="interrupted") if r["image"] == "b"
                                             else r for r in kept]))
    rec = json.loads((out / "b" / "summary.json").read_text())
    (out / "b" / "summary.json").write_text(json.dumps(dict(rec, status="interrupted")))
    status, printed, _ = run("denoising", "--image", str(a), "--out", str(out), "--seed", "1")
    assert status == 0
    table = {r["image"]: r for r in rows(out)}
    assert table["mean"]["status"] == "1 ok image" and "(1 ok image)" in printed
    assert table["mean"]["psnr"] == table["a"]["psnr"] != table["b"]["psnr"]


def test_the_mean_leaves_the_fitting_s_settings_and_counts_empty(tmp_path):
    from utils.outputs import write_summary
    rows = [dict(image=n, status="ok", psnr=p, tiles=t, tile_overlap=32, iterations=600,
                 seconds=s) for n, p, t, s in [("a", 20.0, 4, 10.0), ("b", 22.0, 9, 30.0)]]
    mean = write_summary(tmp_path, "denoising", rows, "cpu", "python denoising.py")
    assert mean["psnr"] == 21.0 and mean["seconds"] == 20.0
    assert not {"tiles", "tile_overlap", "iterations"} & set(mean)
    csv_mean = (tmp_path / "summary.csv").read_text().splitlines()[-1].split(",")
    assert csv_mean[0] == "mean" and csv_mean[3:6] == ["", "", ""]   # tiles, overlap, iterations
