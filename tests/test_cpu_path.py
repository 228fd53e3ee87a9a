"""A CPU user's path (#26): the numeric mode chosen per CPU and recorded as used, their own image
restored whole, the estimate line, and the classic baselines beside the quick presets."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

import launcher
import utils.config as config
import utils.device as device
import utils.task
from denoising import TASK as DENOISING
from utils.config import resolve_config
from utils.device import resolve_amp
from utils.estimate import duration, estimate_line, fitted_pixels

ROOT = Path(__file__).resolve().parents[1]
CPU, CUDA = torch.device("cpu"), torch.device("cuda")
TINY = dict(channels=8, iters=12, log_every=2)


def fake_cpu(monkeypatch, native, probe=None):
    """This CPU as another: native bf16 or not, and the probe's seconds per mode."""
    monkeypatch.setattr(device, "native_bf16", lambda: native)
    monkeypatch.setattr(config, "native_bf16", lambda: native)
    monkeypatch.setattr(utils.task, "native_bf16", lambda: native)
    if probe is not None:
        monkeypatch.setattr(device, "cpu_mode_probe", lambda: dict(probe))


def tiny_net():
    """A 4-channel decoder and its code for a 64×64 output."""
    from models import build_net, code_shape, make_input
    net = build_net("decoder", 4, 1, channels=4)
    return net, make_input("noise", 4, *code_shape(net, 64, 64))


# ---------------------------------------------------------------- the mode, per CPU
def test_an_explicit_mode_is_kept_on_every_device():
    assert resolve_amp("none", CPU)[:2] == ("none", None)
    assert resolve_amp("bf16", CUDA)[:2] == ("bf16", None)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_asked_for_on_an_emulated_bf16_cpu_is_said(monkeypatch, native):
    """--amp bf16 where oneDNN emulates bf16 runs (it was asked for), with a line saying it is
    10-185× slower; on a native-bf16 CPU nothing is said."""
    import warnings
    from tasks import restore
    fake_cpu(monkeypatch, native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restore(data.camera()[:64, :64], observed=False, amp="bf16", device="cpu",
                **{**TINY, "iters": 2})
    said = [str(w.message) for w in caught if "no native bf16" in str(w.message)]
    assert said == ([] if native else [said[0]]) and (native or 'amp="auto" runs fp32' in said[0])


def test_auto_on_cuda_is_fp32_with_tf32_as_before(monkeypatch):
    fake_cpu(monkeypatch, True, {("none", False): 1, ("bf16", False): 0.1,
                                 ("none", True): 1, ("bf16", True): 0.1})
    amp, cl, why = resolve_amp("auto", CUDA)
    assert (amp, cl) == ("none", None) and "TF32" in why


def test_auto_on_an_emulated_bf16_cpu_changes_nothing(monkeypatch):
    fake_cpu(monkeypatch, False)
    monkeypatch.setattr(device, "cpu_mode_probe", lambda: pytest.fail("probed on AVX2"))
    assert resolve_amp("auto", CPU)[:2] == ("none", None)
    cfg, notice = resolve_config(DENOISING, {"device": "cpu"})
    assert cfg["amp"] == "none" and cfg["channels_last"] is False
    assert "--amp" not in (notice or "")          # nothing changed: nothing said


def test_auto_on_a_native_bf16_cpu(monkeypatch):
    probe = {("none", False): 1.0, ("none", True): 0.9, ("bf16", False): 0.6,
             ("bf16", True): 0.5}
    fake_cpu(monkeypatch, True, probe)
    assert resolve_amp("auto", CPU, verified=True)[:2] == ("bf16", True)
    probe[("bf16", False)] = 0.4                   # the contiguous layout is faster
    assert resolve_amp("auto", CPU, verified=True)[:2] == ("bf16", False)
    # not verified for the task: fp32 in the configured layout, and it says how to use bf16
    # anyway; with FP32_CHANNELS_LAST, channels-last whatever the probe says (a layout chosen by
    # timing would make a run's numbers depend on the machine's load)
    monkeypatch.setattr(device, "cpu_mode_probe", lambda: pytest.fail("timed for fp32"))
    amp, cl, why = resolve_amp("auto", CPU, verified=False)
    assert (amp, cl) == ("none", None) and "--amp bf16" in why
    monkeypatch.setattr(device, "FP32_CHANNELS_LAST", True)
    amp, cl, why = resolve_amp("auto", CPU, verified=False)
    assert (amp, cl) == ("none", True) and "channels-last" in why and "--amp bf16" in why
    assert resolve_amp("none", CPU)[:2] == ("none", None)   # --amp none: the layout configured
    # bf16 must beat fp32 in its layout (channels-last), not the contiguous one
    fake_cpu(monkeypatch, True, {**probe, ("none", True): 0.7, ("bf16", False): 0.66,
                                 ("bf16", True): 0.68})
    assert resolve_amp("auto", CPU, verified=True)[:2] == ("none", True)
    # fp32 channels-last the fastest of all, but fp32 runs contiguous: bf16 is judged against that
    monkeypatch.setattr(device, "FP32_CHANNELS_LAST", False)
    fake_cpu(monkeypatch, True, {("none", False): 1.0, ("none", True): 0.5,
                                 ("bf16", False): 0.8, ("bf16", True): 0.6})
    assert resolve_amp("auto", CPU, verified=True)[:2] == ("bf16", True)
    # bf16 barely faster: fp32
    fake_cpu(monkeypatch, True, {("none", False): 1.0, ("none", True): 1.0,
                                 ("bf16", False): 0.95, ("bf16", True): 0.97})
    assert resolve_amp("auto", CPU, verified=True)[0] == "none"


def test_the_configuration_records_the_mode_used_never_auto(monkeypatch):
    fake_cpu(monkeypatch, True, {("none", False): 1.0, ("none", True): 1.0,
                                 ("bf16", False): 0.7, ("bf16", True): 0.5})
    monkeypatch.setattr(config, "BF16_PARITY", {"denoising": "test"})
    cfg, notice = resolve_config(DENOISING, {"device": "cpu"})
    assert (cfg["amp"], cfg["channels_last"]) == ("bf16", True)
    assert "--amp auto: bf16 convolutions, channels-last" in notice
    cfg, _ = resolve_config(DENOISING, {"device": "cpu", "channels_last": False})
    assert (cfg["amp"], cfg["channels_last"]) == ("bf16", False)   # the user's layout stays
    monkeypatch.setattr(config, "BF16_PARITY", {})
    cfg, notice = resolve_config(DENOISING, {"device": "cpu"})
    assert cfg["amp"] == "none" and "not verified as good as fp32's for this task" in notice
    assert cfg["channels_last"] is False                      # FP32_CHANNELS_LAST off
    # fp32 in the channels-last layout where the switch is on: recorded; the user's layout wins
    monkeypatch.setattr(device, "FP32_CHANNELS_LAST", True)
    cfg, notice = resolve_config(DENOISING, {"device": "cpu"})
    assert (cfg["amp"], cfg["channels_last"]) == ("none", True)
    assert "--amp auto: fp32 in the channels-last layout" in notice
    cfg, _ = resolve_config(DENOISING, {"device": "cpu", "channels_last": False})
    assert (cfg["amp"], cfg["channels_last"]) == ("none", False)
    cfg, _ = resolve_config(DENOISING, {"device": "cpu", "amp": "none"})
    assert (cfg["amp"], cfg["channels_last"]) == ("none", False)   # --amp none: as configured


def test_a_bf16_cpu_fit_takes_the_bf16_quick_preset(monkeypatch):
    """quick_bf16 replaces the quick preset's values where the fit runs in bf16 on a CPU (auto on
    a native-bf16 CPU, or --amp bf16), and nowhere else; what the user gives still wins."""
    from dataclasses import replace
    task = replace(DENOISING, quick_bf16={"iters": 700, "lr": 0.003})
    fake_cpu(monkeypatch, True, {("none", False): 1.0, ("none", True): 1.0,
                                 ("bf16", False): 0.7, ("bf16", True): 0.5})
    monkeypatch.setattr(config, "BF16_PARITY", {"denoising": "test"})
    cfg, notice = resolve_config(task, {"device": "cpu"})
    assert (cfg["amp"], cfg["iters"], cfg["lr"]) == ("bf16", 700, 0.003)
    assert "quick preset (bf16)" in notice and "iters=700" in notice
    cfg, notice = resolve_config(task, {"device": "cpu", "iters": 9})
    assert cfg["iters"] == 9 and "iters=9 (yours)" in notice and "iters=700" not in notice
    def today(cfg, notice):
        assert cfg["amp"] == "none" and cfg["iters"] == DENOISING.quick["iters"]
        assert cfg["lr"] == DENOISING.quick["lr"] and "(bf16)" not in notice
    today(*resolve_config(task, {"device": "cpu", "amp": "none"}))   # fp32 asked for
    monkeypatch.setattr(config, "BF16_PARITY", {})
    today(*resolve_config(task, {"device": "cpu"}))                  # parity not measured
    cfg, _ = resolve_config(task, {"device": "cpu", "amp": "bf16"})  # asked for, any CPU
    assert cfg["iters"] == 700
    fake_cpu(monkeypatch, False)                                     # emulated bf16: unchanged
    monkeypatch.setattr(config, "BF16_PARITY", {"denoising": "test"})
    cfg, _ = resolve_config(task, {"device": "cpu"})
    assert cfg["amp"] == "none" and cfg["iters"] == DENOISING.quick["iters"]


def test_the_probe_times_every_mode_once():
    device._PROBED.clear()
    old = dict(device.PROBE)
    device.PROBE.update(channels=4, size=32, repeats=1, rounds=1)
    try:
        t = device.cpu_mode_probe()
        assert set(t) == {(a, c) for a in ("none", "bf16") for c in (False, True)}
        assert all(v > 0 for v in t.values()) and device.cpu_mode_probe() == t
    finally:
        device.PROBE.update(old)
        device._PROBED.clear()


def test_a_fit_given_auto_directly_resolves_it():
    from utils.fit import Fit, FitConfig
    from utils.physics import IdentityTerm
    net, z = tiny_net()
    f = Fit(net, z, IdentityTerm(torch.rand(1, 1, 64, 64)), FitConfig(iters=1, device="cpu",
                                                                     quiet=True))
    assert f.cfg.amp in ("none", "bf16")


# ---------------------------------------------------------------- the whole image
def test_the_clean_notice_names_the_synthetic_degradation_of_own_images_only(tmp_path):
    from tasks import all_tasks
    from utils.cli import clean_notice, names_files
    own = str(tmp_path / "photo.png")
    Image.fromarray(data.camera()[:64, :64]).save(own)
    own = names_files(own)
    tasks = all_tasks()
    for name, task in tasks.items():
        line = clean_notice(task, {"observed": False}, own)
        assert (line is None) == (name == "enhancement"), name      # enhancement degrades nothing
        assert clean_notice(task, {"observed": True}, own) is None
        assert clean_notice(task, {"observed": False}, names_files(None)) is None  # the demo
    assert "--observed" in clean_notice(tasks["deblocking"], {"observed": False}, own)



def test_restore_gives_back_a_whole_image_at_its_size():
    from tasks import restore
    big = np.tile(data.camera()[100:190, 50:210], (2, 1))  # 160×180: past the quick crop of 128
    r = restore(big, task="denoising", observed=False, **TINY)
    assert r.array.shape == (180, 160, 1) and r.image.shape == big.shape
    assert r.config["crop"] == 0 and r.config["amp"] in ("none", "bf16")
    c = restore(data.astronaut(), task="denoising", observed=False, crop=64, **TINY)
    assert c.array.shape == (64, 64, 3)                   # a crop the user gives applies
    # a crop past the image's sides fits it whole, and says so (one side cut is no such case)
    with pytest.warns(UserWarning, match="^crop=256: the image is 160x180, no larger, so it is "
                                         "fitted whole$"):
        w = restore(big, task="denoising", observed=False, crop=256, **TINY)
    assert w.array.shape == (180, 160, 1)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert restore(big, "denoising", observed=False, crop=170, **TINY).array.shape[:2] \
            == (170, 160)


def run_script(*args, quiet=True):
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    e.pop("DIP_DATA_DIR", None)
    flags = ["--quiet"] if quiet else []
    return launcher.run([ROOT / "denoising.py", *flags, "--channels", "8", "--iters", "12",
                         "--log-every", "2", *args], env=e)


def test_the_command_line_restores_a_named_image_whole_and_the_demo_quick(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(data.astronaut()[:150, :200]).save(src / "wide.png")
    Image.fromarray(data.camera()[:140, :130]).save(src / "gray.png")
    r = run_script("--image", str(src), "--out", str(tmp_path / "own"), quiet=False)
    assert r.returncode == 0, r.stderr
    assert "on your whole image" in r.stdout
    assert "your images are taken as clean: denoising degrades" in r.stdout   # not --observed
    for name, size in (("wide", (200, 150)), ("gray", (130, 140))):
        with Image.open(tmp_path / "own" / name / "output.png") as im:
            assert im.size == size
        rec = json.loads((tmp_path / "own" / name / "summary.json").read_text())
        assert rec["fit"]["amp"] in ("none", "bf16") and rec["hyperparameters"]["amp"] != "auto"
        assert isinstance(rec["fit"]["channels_last"], bool)
    # the estimate line, on stderr above the bar: the first image's, with the folder's total
    lines = [ln for ln in r.stderr.replace("\r", "\n").splitlines() if "estimate:" in ln]
    assert len(lines) == 2, r.stderr
    assert "s per iteration of a tile" in lines[0] and "the 1 image after it" in lines[0]
    assert "for this image's 4 tiles, 12 iterations each" in lines[0]       # 200×150 in 128²
    assert "after it" not in lines[1]
    demo = run_script("--out", str(tmp_path / "demo"))
    assert demo.returncode == 0, demo.stderr
    assert "128×128 centre, a quick check" in demo.stdout
    assert "taken as clean" not in demo.stdout
    with Image.open(tmp_path / "demo" / "astronaut" / "output.png") as im:
        assert im.size == (128, 128)


# ---------------------------------------------------------------- the estimate line
def test_durations_and_the_estimate_line():
    assert ([duration(s) for s in (0.04, 0.4, 3.0, 9.96, 42, 185, 7620)]
            == ["0 s", "0.4 s", "3 s", "10 s", "42 s", "3 min 05 s", "2 h 07 min"])
    line = estimate_line(0.16, 600, 128 * 128)
    assert "at most 1 min 36 s for this image's 600 iterations" in line
    assert "shorter" not in line
    total = estimate_line(0.16, 600, 100, rest_pixels=300, rest_images=3, stops=False)
    assert "6 min 24 s for it and the 3 images after it" in total and "at most" not in total
    # a tiled fit resumed with half of its tiles left: the rest priced at the whole image's rate
    half = estimate_line(0.02, 600, 100, rest_pixels=300, rest_images=3, stops=False, share=0.5,
                         tiles=4)
    assert "0.02 s per iteration of a tile, 48 s for the 4 tiles left of this image, 600 " \
        "iterations each" in half
    assert "about 5 min 36 s for it and the 3" in half
    tiled = estimate_line(0.04, 600, 100, tiles=4)
    assert "0.04 s per iteration of a tile, at most 1 min 36 s for this image's 4 tiles, 600 " \
        "iterations each" in tiled
    long = estimate_line(2.0, 600, 100)                     # 20 minutes
    assert "--crop N" in long and "--iters N" in long and "GPU" in long
    # the pixels the net computes: cropped, then padded as the fit pads (or cut by --crop32)
    assert fitted_pixels((300, 200, 3), {"crop": 128}) == 128 * 128
    assert fitted_pixels((300, 100, 3), {"crop": 128}) == 128 * 128
    assert fitted_pixels((300, 200), {"crop": 0}) == 320 * 224
    assert fitted_pixels((300, 200), {"crop": 0, "crop32": True}) == 288 * 192
    assert fitted_pixels((24, 24, 3), {}) == fitted_pixels((40, 40), {}) == 64 * 64
    assert fitted_pixels((40, 400), {}) == 64 * 448
    # a small image's rate per pixel does not price larger ones after it (overheads dominate)
    small = estimate_line(0.05, 30, 64 * 64, rest_pixels=64 * 448, rest_images=1)
    assert small.endswith("; the 1 larger image after it: an estimate as each starts")
    same = estimate_line(0.05, 30, 64 * 64, rest_pixels=2 * 64 * 64, rest_images=2)
    assert "about 4.5 s for it and the 2 images after it" in same
    big = estimate_line(0.5, 30, 128 * 128, rest_pixels=512 * 512, rest_images=1)
    assert "about 4 min 15 s for it and the 1 image after it" in big


def test_restore_words_the_estimate_line_and_messages_as_keywords(capsys):
    from tasks import in_python
    from utils.estimate import printer
    words = lambda line: in_python(line, DENOISING)                      # noqa: E731
    assert (words(estimate_line(2.0, 600, 100)).split("; ")[-1]
            == 'to make it shorter: crop=N (the centre only), iters=N, or a GPU (device="cuda")')
    # a value goes with its flag only where it is one: N, a number or one of the choices
    assert (words("--stop must be one of; --stop ratio. --lambda 1.4, --observed restores --full")
            == 'stop must be one of; stop="ratio". ln_lambda=1.4, observed restores preset="full"')
    assert words("--no-such-flag 3") == "--no-such-flag 3"
    assert words("or --no-use-ema)") == "or use_ema=False)"
    # a device and auto are quoted, as restore() takes them
    assert words("--device auto or --device cuda:1; --lambda auto") == (
        'device="auto" or device="cuda:1"; ln_lambda="auto"')
    printer(True, 100, words=words)(2.0, 600)
    assert "crop=N" in capsys.readouterr().err


def test_the_fit_reports_its_rate_once_after_its_first_iterations():
    from utils.fit import FitConfig, fit
    from utils.physics import IdentityTerm
    got = []
    net, z = tiny_net()
    fit(net, z, IdentityTerm(torch.rand(1, 1, 64, 64)),
        FitConfig(iters=15, device="cpu", quiet=True, stop="none"),
        on_rate=lambda rate, iters: got.append((rate, iters)))
    assert len(got) == 1 and got[0][0] > 0 and got[0][1] == 15


# ---------------------------------------------------------------- the classic baselines
def test_the_classic_method_sees_the_runs_degraded_image():
    from benchmarks import robustness
    from tasks import all_tasks, prepare_problem, restore
    task = all_tasks()["deblurring"]
    label, value = robustness.classic(task, "camera", 1)
    r = restore(robustness.image("camera"), task="deblurring", observed=False, preset="quick",
                **robustness.settings(task, 1), iters=2)
    problem, _, _, _ = prepare_problem(robustness.image("camera"), task, observed=False,
                                       preset="quick", **robustness.settings(task, 1))
    assert label == "Richardson-Lucy" and np.isfinite(value)
    assert np.array_equal(problem.observed, r.observed)       # the same degraded image
    assert value > problem.baseline["psnr_in"]                 # RL deblurs


def test_cpu_modes_on_this_cpu(tmp_path, monkeypatch):
    """Without native bf16 the benchmark checks that auto is fp32 bit for bit; with it (faked:
    bf16 emulated, tiny nets) it compares the two modes and gives a verdict per task."""
    from benchmarks import cpu_modes
    monkeypatch.setattr(cpu_modes, "CHECK_ITERS", 3)
    fake_cpu(monkeypatch, False)
    out = tmp_path / "modes.md"
    rows = cpu_modes.main(["--tasks", "denoising", "--images", "moon", "--out", str(out)])
    assert rows == [["denoising", "moon", "yes", "0"]]
    assert "`--amp auto` is fp32" in out.read_text()
    rows = cpu_modes.parity([DENOISING], ["moon"], [0], "bf16", False, log=lambda *a, **k: None,
                            null=True, layout=True, channels=4, iters=3, crop=32, log_every=1)
    assert len(rows) == 1 and rows[0][:3] == ["denoising", "moon", 0]
    assert len(rows[0]) == len(cpu_modes.HEADER)
    assert np.isfinite(rows[0][3:]).all() and rows[0][5] == rows[0][4] - rows[0][3]
    assert rows[0][10] == rows[0][9] - rows[0][3] and rows[0][12] == rows[0][11] - rows[0][3]
    nan = float("nan")

    def case(task, delta, null=nan):
        return [task, "a", 0, 30.0, 30.0 + delta, delta, 1.0, 0.5, 2.0, 30.0 + null, null,
                nan, nan, nan]
    verdict = {v[0]: v for v in cpu_modes.verdicts([
        case("ok", 0.05, 0.1), case("ok", -0.2, -0.2),      # loses 0.075 on average, 0.2 at worst
        case("worst", 0.3), case("worst", -0.35),           # a run loses 0.35
        case("mean", -0.15), case("mean", -0.15)])}         # loses 0.15 on average
    assert verdict["ok"][7] == verdict["ok"][8] == "yes" and verdict["ok"][2] == "+0.200"
    assert verdict["ok"][4] == "0.150 / 0.200" and verdict["worst"][4] == "—"
    assert verdict["worst"][7] == "NO" and verdict["mean"][7] == "NO" and verdict["ok"][5] == "—"
    # the bounds read on the null (losses -0.1 and +0.2: kept); no run loses more than 0.3
    assert verdict["ok"][11] == "+0.050 / +0.200, yes; runs losing > 0.3: 0/2 / 0/2"
    assert verdict["worst"][11] == "—"
    big = [case("n", 0.0, -0.5), case("n", -0.4, 0.1)]      # the null loses 0.5 in a run
    assert cpu_modes.verdicts(big)[0][11] == "+0.200 / +0.500, NO; runs losing > 0.3: 1/2 / 1/2"
    slow = case("slow", 0.0)
    slow[8] = 1.05                                           # parity, but no faster than fp32
    assert cpu_modes.verdicts([slow])[0][7:9] == ["yes", "no"]
    # the 95 % interval of the mean Δ: t(0.975, 1) = 12.706, s = 0.1768 over 2 runs; none of 1
    assert verdict["ok"][10] == "-1.66 … +1.51 (2 runs)"
    assert cpu_modes.verdicts([slow])[0][10] == "—"
    laid = [case("cl", 0.0), case("cl", 0.0)]
    laid[0][11:14], laid[1][11:14] = [30.2, 0.2, 0.8], [29.7, -0.3, 0.5]
    assert cpu_modes.verdicts(laid)[0][5] == "-0.050 / 0.250 / +0.300, 1.62×"
    # resumed: the rows in the CSV are kept, only what is missing runs
    csv = tmp_path / "modes.csv"
    from utils.tables import csv_text
    # (a CSV from before --layout: its rows have no layout columns)
    csv.write_text(csv_text(cpu_modes.REQUIRED, [case("denoising", 0.1)[:11]]))
    done = cpu_modes.read_rows(csv)
    assert list(done) == [("denoising", "a", 0)] and np.isnan(done["denoising", "a", 0][9])
    monkeypatch.setattr(cpu_modes, "run", lambda *a, **k: pytest.fail("refitted a kept case"))
    monkeypatch.setattr(cpu_modes, "null_run", lambda *a, **k: 29.5)
    rows = cpu_modes.parity([DENOISING], ["a"], [0], "bf16", False, log=lambda *a, **k: None,
                            done=done, null=True)
    assert rows[0][9:11] == [29.5, -0.5] and np.isnan(rows[0][11:]).all()
    # --layout on a kept row: only the channels-last fp32 fit runs
    monkeypatch.setattr(cpu_modes, "run", lambda task, name, seed, amp, cl, **k:
                        (29.9, 0.25, None) if (amp, cl) == ("none", True) else pytest.fail(amp))
    rows = cpu_modes.parity([DENOISING], ["a"], [0], "bf16", False, log=lambda *a, **k: None,
                            done=done, null=True, layout=True)
    assert rows[0][11] == 29.9 and rows[0][13] == 0.25 and abs(rows[0][12] + 0.1) < 1e-9


def test_cpu_modes_fidelity_compares_plain_and_centred_bf16():
    """On fixed weights, the centred bf16 convolutions come closer to fp32 than the plain ones
    (output and gradient), in both layouts; fitting in between changes the weights."""
    from benchmarks import cpu_modes
    for cl in (False, True):
        rows = cpu_modes.fidelity(channels_last=cl, channels=8, crop=64, checkpoints=(0, 3))
        assert [r[:2] for r in rows] == [["channels-last" if cl else "default", 0],
                                         ["channels-last" if cl else "default", 3]]
        _, _, p_plain, g_plain, p_centred, g_centred = rows[0]
        assert p_centred > p_plain + 3 and g_centred < g_plain / 2, rows[0]
        assert rows[1][2] != rows[0][2]                  # the weights moved
    assert "## bf16's arithmetic" in "\n".join(cpu_modes.fidelity_section(rows))


def test_cpu_modes_sets_fp32_beside_another_cpus_run(tmp_path):
    """--other-cpu: the fp32 fits of the cases both runs hold, here against there, with the
    other run's device line; cases only one run holds are left out."""
    from benchmarks import cpu_modes
    from utils.tables import csv_text
    nan = float("nan")

    def row(image, seed, fp32):
        return ["denoising", image, seed, fp32, fp32, 0.0, 1.0, 1.0, 1.0, nan, nan, nan, nan, nan]
    there = tmp_path / "there.csv"
    there.write_text(csv_text(cpu_modes.HEADER, [row("a", 0, 30.0), row("b", 1, 31.0),
                                                 row("c", 0, 20.0)]))
    (tmp_path / "there.md").write_text("# x\n\n- device: CPU Other\n- date: then\n")
    lines = cpu_modes.other_cpu_section([row("a", 0, 30.5), row("b", 1, 30.0),
                                         row("d", 0, 25.0)], there)
    text = "\n".join(lines)
    assert "- device: CPU Other" in text and "- date: then" in text
    assert "2 cases: Δ (here − there) mean -0.250 dB, mean |Δ| 0.750, worst |Δ| 1.000." in text
    assert "| denoising | b | 1 | 30.000 | 31.000 | -1.000 |" in text and "| c |" not in text
    assert "No case in common." in "\n".join(cpu_modes.other_cpu_section([row("z", 0, 1.0)],
                                                                          there))
    with pytest.raises(SystemExit):                      # a CSV that is not there: an error
        cpu_modes.main(["--other-cpu", str(tmp_path / "missing.csv"), "--out",
                        str(tmp_path / "m.md")])
    assert not (tmp_path / "m.md").exists()


def _fresh(code: str) -> str:
    """The last line a fresh interpreter prints running ``code`` in the repository."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    return done.stdout.strip().splitlines()[-1]


def test_a_command_flushes_denormals_in_every_thread():
    """flush_denormals, first in a process (as the task scripts and reproduce.py call it, after
    importing everything they import), reaches torch's worker threads; called after they started
    it reaches the calling thread only; FLUSH_DENORMALS off leaves IEEE gradual underflow."""
    probe = "from utils.device import flush_denormals, flushed_share\n"
    assert _fresh("import denoising, reproduce, utils.cli\n" + probe +
                  "print(flush_denormals())") == "1.0"
    # off: IEEE gradual underflow in every thread, as in a process that never flushed
    assert _fresh("import utils.device as d\nd.FLUSH_DENORMALS = False\n" + probe +
                  "print(flush_denormals())") == "0.0"
    late = float(_fresh(probe + "import torch\ntorch.set_num_threads(2)\nflushed_share()\n"
                        "print(flush_denormals())"))
    assert 0 < late < 1                      # the main thread's share only


FAULTS = """import resource, torch
from utils.device import keep_freed_memory
kept = {kept} and keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x, w = torch.randn(1, 16, 256, 256), torch.randn(16, 16, 3, 3)
torch.nn.functional.conv2d(x, w, padding=1)
before = faults()
for _ in range(20):     # 4 MiB activations made and freed, as a fit's iterations do
    y = torch.nn.functional.conv2d(x, w, padding=1).relu() * 2
    del y
print(kept, faults() - before)
"""


# keep_freed_memory's choice under each environment, in one fresh process (a choice that keeps
# the memory sets the process's malloc): the thresholds set by the user (env or tunables) are
# theirs, another tunable is not, DIP_KEEP_FREED_MEMORY=0 and KEEP_FREED_MEMORY off turn it off
CHOICES = """import os
import utils.device as d
def case(**env):
    for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES", d.KEEP_ENV):
        os.environ.pop(k, None)
    os.environ.update(env)
    return d.keep_freed_memory()
seen = [case(MALLOC_TRIM_THRESHOLD_="1000000"),
        case(GLIBC_TUNABLES="glibc.malloc.mmap_threshold=1048576"),
        case(GLIBC_TUNABLES="glibc.malloc.tcache_count=0"), case(DIP_KEEP_FREED_MEMORY="0")]
d.KEEP_FREED_MEMORY = False
print(*seen, case())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_kept_freed_memory_is_not_faulted_in_again():
    """keep_freed_memory (a command's process, with the flush): activations freed and made again
    reuse the heap instead of new pages from the kernel (a fit's every iteration); where the
    environment sets malloc's thresholds, they are left as the user set them."""
    default = _fresh(FAULTS.format(kept=False)).split()
    kept = _fresh(FAULTS.format(kept=True)).split()
    assert default[0] == "False" and kept[0] == "True"
    assert 4 * int(kept[1]) < int(default[1])
    assert _fresh(CHOICES).split() == ["False", "False", "True", "False", "False"]


def test_only_the_command_line_sets_its_process(monkeypatch, tmp_path):
    """cli.main from the command line (argv None) flushes denormals and keeps freed memory;
    called with argv (a caller's own process: tests, notebooks) it leaves the process alone."""
    from utils import cli
    calls = []
    monkeypatch.setattr(cli, "command_process", lambda: calls.append(1))
    monkeypatch.setattr(sys, "argv", ["denoising.py", "--image", str(tmp_path / "none.png")])
    assert cli.main(DENOISING) != 0 and calls == [1]        # (the missing file: an error)
    assert cli.main(DENOISING, ["--image", str(tmp_path / "none.png")]) != 0 and calls == [1]


@pytest.mark.parametrize("setting", ["denormals", "heap"])
def test_the_process_settings_benchmark_compares_off_and_on(tmp_path, setting):
    """benchmarks.process_settings: each setting fitted off and on in a fresh process (every
    thread flushing, or none; page faults and peak memory read), the outputs compared bit for
    bit (a tiny fit: denormals never reach its output); the report and CSV written."""
    from benchmarks import process_settings
    rows = process_settings.main(["--setting", setting, "--tasks", "inpainting", "--iters", "3",
                                  "--repeats", "1", "--crop", "48", "--out",
                                  str(tmp_path / "d.md")])
    assert rows[0][:6] == [setting, "inpainting", "hubble_deep_field", 48, 3, 3]
    shares = [0.0, 1.0] if setting == "denormals" else [1.0, 1.0]
    assert rows[0][13:17] == [*shares, "yes", 0.0]
    assert rows[0][6] > 0 and rows[0][7] > 0 and np.isfinite(rows[0][17])
    assert min(rows[0][9:13]) > 0
    text = (tmp_path / "d.md").read_text()
    assert "| inpainting | 48 | 3 / 3 |" in text and "native bf16:" in text
    assert (tmp_path / "d.csv").read_text().startswith("setting,task,image,crop")


def test_a_warning_during_a_drawn_progress_bar_is_a_line_above_it():
    """Python's own warning line is overwritten by tqdm's next redraw; while a bar is drawn a
    warning is one ``warning: MESSAGE`` line (tqdm.write), and the display is restored after.
    In a fresh interpreter: pytest records every test's warnings, and a recorder keeps them."""
    code = ("import warnings\n"
            "from utils.estimate import warnings_above_bar\n"
            "before = warnings.showwarning\n"
            "with warnings_above_bar(True):\n"
            "    warnings.warn('--compile not used: a test')\n"
            "assert warnings.showwarning is before\n"
            "with warnings_above_bar(False):\n"
            "    warnings.warn('plain')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert "warning: --compile not used: a test\n" in r.stderr
    assert "UserWarning: plain" in r.stderr and "UserWarning: --compile" not in r.stderr


def test_a_recorded_warning_stays_recorded_under_a_drawn_bar():
    import warnings

    from utils.estimate import warnings_above_bar
    with pytest.warns(UserWarning, match="^recorded$"):
        with warnings_above_bar(True):
            warnings.warn("recorded")


def test_a_restored_result_prints_in_one_short_line():
    """repr of restore()'s result: its image's type and size, metrics and stop, not the arrays'
    text (which filled a screen)."""
    from tasks import restore
    r = restore(data.camera()[:64, :64], "denoising", observed=False, preset="quick",
                **dict(TINY, iters=2))
    text = repr(r)
    assert text.startswith("Restored(ndarray 64x64x1, metrics={'psnr_in': ")
    assert len(text) < 400 and "\n" not in text
