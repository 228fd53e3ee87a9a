"""One source of truth: every option documented once, no entry silently ignored, presets as
data, tasks found by the registry, no arrow from the library up to the scripts, and a fit that
leaves the process as it found it."""
import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tasks
from models import LipschitzConv2d, NETS, build_net, make_input, net_options
from tasks import all_tasks, get_task, task_names
from utils.cli import build_parser
from utils.config import fit_config, fit_options, net_kwargs, resolve_config
from utils.fit import FitConfig, fit
from utils.imageio import LoadedImage
from utils.physics import IdentityTerm

ROOT = Path(__file__).resolve().parents[1]
# entries the framework itself reads (utils/task.py: make_nets, prepare, fit_problem)
FRAMEWORK = {"net", "input", "input_channels", "input_var", "restarts", "crop", "crop32",
             "observed", "seed"}


@pytest.mark.parametrize("name", task_names())
def test_every_help_entry_has_a_description(name):
    task = get_task(name)
    assert all(task.help.get(k) for k in task.config), [k for k in task.config
                                                         if not task.help.get(k)]
    for action in build_parser(task)._actions:
        if action.dest == "help":
            continue
        text = (action.help or "").split(" [")[0].strip()
        assert len(text) > 3, f"{name}: --{action.dest} has no description"


class Reads(dict):
    """A dict that remembers which keys were read."""

    def __init__(self, *a):
        super().__init__(*a)
        self.read = set()

    def __getitem__(self, k):
        self.read.add(k)
        return super().__getitem__(k)

    def get(self, k, default=None):
        self.read.add(k)
        return super().get(k, default)


@pytest.mark.parametrize("name", task_names())
def test_no_block_entry_is_silently_ignored(name, tmp_path):
    """Every value of a script's block reaches the loop, the network or the task's own code,
    unchanged (a library default never overrides a script)."""
    task = get_task(name)
    cfg, _ = resolve_config(task, {}, "full")
    loop = fit_config(cfg)
    for k, v in task.config.items():
        assert cfg[k] == v, k
        if k in fit_options():
            assert getattr(loop, k) == v, k
    nets = net_kwargs(cfg)
    for k in set(task.config) & set(net_options(task.config["net"])):
        assert nets[k] == task.config[k], k
    reads = Reads(cfg)
    problem = task.make_problem(LoadedImage(array=np.random.default_rng(0).random(
        (64, 64, 3), np.float32)), reads)
    if problem.finish:   # what the task does with the output (enhancement's detail layer)
        problem.finish(np.zeros((64, 64, 3), np.float32), tmp_path, lambda name, a: None)
    any_net = {k for n in NETS for k in net_options(n)}
    unused = set(task.config) - reads.read - set(fit_options()) - any_net - FRAMEWORK
    assert not unused, f"{name}: entries nothing reads: {sorted(unused)}"


def test_presets_are_data():
    sr = get_task("super_resolution")
    cfg, _ = resolve_config(sr, {"factor": 8}, "full")
    assert (cfg["iters"], cfg["reg_noise_std"]) == (4000, 0.05)        # DIP's ×8 recipe
    cfg, _ = resolve_config(sr, {"factor": 8, "iters": 7}, "full")
    assert cfg["iters"] == 7                                            # the user wins
    cfg, _ = resolve_config(sr, {"factor": 4}, "full")
    assert cfg["iters"] == 2000
    cfg, _ = resolve_config(sr, {"factor": 8}, "quick")   # the quick preset wins: it stays quick
    assert (cfg["iters"], cfg["reg_noise_std"]) == (sr.quick["iters"], 0.05)
    cfg, _ = resolve_config(sr, {"factor": 8, "device": "cpu"}, "auto")
    assert cfg["iters"] == sr.quick["iters"]
    for task in all_tasks().values():
        cfg, notice = resolve_config(task, {}, "quick")
        assert all(cfg[k] == v for k, v in task.quick.items()) and "quick preset" in notice
        full, notice = resolve_config(task, {}, "full")
        # no preset line; a CPU with native bf16 names the numeric mode --amp auto chose
        assert full["iters"] == task.config["iters"]
        assert notice is None or notice.startswith("--amp auto:") and "\n" not in notice


def test_the_quick_notice_offers_the_crop_for_a_larger_image_only():
    """An image no larger than the crop is whole either way: the hint says whose centre."""
    _, notice = resolve_config(get_task("enhancement"), {"device": "cpu"}, "auto", whole=True)
    assert "on your whole image (--crop 256: the 256×256 centre of a larger one only)" in notice


def test_the_quick_preset_narrows_whichever_net_is_chosen():
    """The preset's width is the chosen net's (a 64-channel decoder becomes a 64/64 hourglass,
    SR's 32/32 hourglass a 32-channel decoder); a width option of another net is refused (the
    hourglass fitted at 128 channels while the record said --channels 32)."""
    den, sr = get_task("denoising"), get_task("super_resolution")
    cfg, notice = resolve_config(den, {"net": "hourglass"}, "quick")
    assert (cfg["channels_down"], cfg["channels_up"]) == (den.quick["channels"],) * 2
    assert f"channels_up={den.quick['channels']}" in notice
    assert net_kwargs(cfg)["channels_down"] == den.quick["channels"]
    cfg, _ = resolve_config(sr, {"net": "decoder"}, "quick")
    assert net_kwargs(cfg)["channels"] == sr.quick["channels_down"]
    cfg, _ = resolve_config(den, {"net": "hourglass", "channels_up": 16}, "quick")
    assert (cfg["channels_down"], cfg["channels_up"]) == (den.quick["channels"], 16)   # yours
    for task, given, said in [(den, {"net": "hourglass", "channels": 32},
                               "--channels: not an option of the hourglass net (its width: "
                               "--channels-down, --channels-up)"),
                              (sr, {"channels": 8}, "--channels: not an option of the hourglass"),
                              (den, {"channels_skip": 2}, "--channels-skip: not an option of "
                               "the decoder net (its width: --channels)")]:
        with pytest.raises(ValueError, match="^" + said.replace("(", r"\(").replace(")", r"\)")):
            resolve_config(task, given, "quick")


def test_help_shows_the_defaults_of_the_tasks_own_net():
    def shown(task, flag):  # the help line of an option (after the usage block)
        return build_parser(get_task(task)).format_help().split(flag)[-1].split("\n  --")[0]
    assert "[0.2]" in shown("super_resolution", "--act-slope")    # DIP's skip net
    assert "[default]" in shown("super_resolution", "--init")
    assert "[0.01]" in shown("denoising", "--act-slope")          # the authors' decoder
    # what the CPU quick preset (automatic without a GPU) sets is named beside the default
    iters = " ".join(shown("denoising", "--iters").split())
    assert iters.endswith("[10000; CPU quick preset: 600]")
    assert "[0; CPU quick preset: 128]" in " ".join(shown("deblurring", "--tile TILE").split())
    assert "quick preset" not in shown("super_resolution", "--tile TILE")   # SR's: one net


def test_fixed_choices_are_checked_by_the_parser():
    p = build_parser(get_task("denoising"))
    with pytest.raises(SystemExit):
        p.parse_args(["--amp", "fp16"])
    with pytest.raises(SystemExit):
        p.parse_args(["--upsample", "cubic"])
    assert p.parse_args(["--upsample", "gaussian"]).upsample == "gaussian"


def test_the_registry_finds_a_new_task_file(tmp_path, monkeypatch):
    """A sixth task is one file: a copy of deblurring.py under another name is found."""
    src = (ROOT / "deblurring.py").read_text()
    (tmp_path / "sharpening.py").write_text(src.replace('Task("deblurring"',
                                                        'Task("sharpening"'))
    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert task_names() == ["sharpening"]
    assert get_task("sharpening").help["blur_sigma"].startswith("σ of the Gaussian")
    with pytest.raises(ValueError, match="unknown task"):
        get_task("denoising")


def test_the_papers_tasks_are_registered_in_order():
    assert task_names()[:5] == ["denoising", "deblocking", "inpainting", "super_resolution",
                                "enhancement"]
    assert "deblurring" in task_names()


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module.split(".")[0]


def test_no_arrow_from_the_library_up_to_the_scripts():
    above = set(task_names()) | {"tasks", "paper", "reproduce", "baselines", "benchmarks"}
    for folder in ("models", "utils", "dataset"):
        for f in (ROOT / folder).glob("*.py"):
            assert not set(_imports(f)) & above, f"{f.name} imports {set(_imports(f)) & above}"


def test_no_file_over_500_lines_outside_tests():
    files = [f for f in ROOT.rglob("*.py") if ".ci" not in f.parts and "tests" not in f.parts]
    long = {str(f.relative_to(ROOT)): n for f in files
            if (n := len(f.read_text().splitlines())) > 500}
    assert not long, long


def test_fit_leaves_the_process_as_it_found_it():
    assert "sigma_method" not in vars(LipschitzConv2d)   # a net option, not a class attribute
    net = build_net("decoder", 4, 3, channels=8)
    z = make_input("fourier", 4, 2, 2, var=1, generator=torch.Generator().manual_seed(0))
    y = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)
    np.random.seed(123)
    cpu_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    bench, tf32 = torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32
    during = []   # --no-tf32: strict fp32 convolutions during the fit, the switch restored after
    fit(net, z, IdentityTerm(y), FitConfig(iters=3, quiet=True, stop="none", reg_noise_std=0.1,
                                           tf32=not tf32, sync_every=1),
        callbacks=[lambda i, o: during.append(torch.backends.cudnn.allow_tf32)])
    assert during and all(v == (not tf32) for v in during)
    assert torch.equal(torch.get_rng_state(), cpu_state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.backends.cudnn.benchmark == bench
    assert torch.backends.cudnn.allow_tf32 == tf32
    assert sys.modules.get("tasks") is tasks


# ------------------------------------------------------------- extreme values (issue #25)
@pytest.mark.parametrize("task,entry,value,ok", [
    ("denoising", "sigma", 255, True), ("denoising", "sigma", 255.5, False),
    ("denoising", "sigma", 1e9, False), ("deblurring", "sigma", 300, False),
    ("denoising", "sigma", 0, True),
    ("denoising", "restarts", 64, True), ("denoising", "restarts", 65, False),
    ("inpainting", "restarts", 1000, False),
    ("deblurring", "blur_sigma", 50, True), ("deblurring", "blur_sigma", 50.5, False),
    ("deblurring", "blur_sigma", 1e9, False),
])
def test_extreme_values_are_refused_by_the_one_check(task, entry, value, ok):
    from utils.config import check_config
    cfg, _ = resolve_config(get_task(task), {entry: value}, "quick")
    msg = check_config(get_task(task), cfg)
    if ok:
        assert msg is None
    else:
        flag = "--" + entry.replace("_", "-")
        assert msg and msg.startswith(f"{flag} must be") and "\n" not in msg, msg
