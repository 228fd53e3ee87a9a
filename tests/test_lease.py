"""The GPU lease's one command, rehearsed on the CPU at toy scale (paper/lease.py): the same code
path as on a lent GPU, at most 8 well-named files back, a pack that unpacks into a fresh tree
with a denoising table, and the report of every step."""
import json
import os
import re
import sys
from argparse import Namespace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import launcher  # noqa: E402
import dataset  # noqa: E402
from paper import lease as L  # noqa: E402

NAME = re.compile(r"^[A-Za-z0-9._-]+$")   # what a lent machine brings back


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("lease") / "OUT"
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    p = launcher.run(["-m", "paper.lease", "--toy", "--device", "cpu", "--out", out,
                      "--seconds", "240"], env=env, timeout=900)
    return out, p


def test_the_rehearsal_runs_every_step_and_leaves_at_most_8_files(rehearsal):
    out, p = rehearsal
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    files = sorted(f.name for f in out.iterdir())
    assert files == ["LEASE.md", "benchmarks-cpu.md", "lease.json", "lease.log", "pack.tar.gz"]
    assert len(files) <= L.MAX_FILES and all(NAME.match(f) and (out / f).is_file()
                                             for f in files)
    rec = json.loads((out / "lease.json").read_text())
    steps = {s["step"]: s for s in rec["steps"]}
    assert list(steps) == ["contact: CUDA tests", "contact: a fit of every task", "speed table",
                           "paper runs", "pending"]
    assert all(s["status"] == "ok" for s in steps.values()), steps
    assert "skipped" in steps["contact: CUDA tests"]["what"]     # no GPU: the CUDA tests skip
    from tasks import all_tasks
    assert [c["task"] for c in rec["contact"]] == ["denoising", "denoising, 2 restarts",
                                                    *list(all_tasks())[1:]]
    assert all(c["status"] == "ok" and c["iterations"] == 6 for c in rec["contact"])
    md = (out / "LEASE.md").read_text()
    assert "| paper runs | ok |" in md and "## Contact fits" in md and "| decoder |" in md
    assert str(ROOT) not in md and str(out) not in md   # no path of this machine
    log = (out / "lease.log").read_text()
    assert "== contact: CUDA tests" in log and "pack: " in log and "[fig_dip]" in log
    assert rec["reproduce_argv"] == ["--mode", "tf32", "--toy", "--images", "2"]


def test_the_pack_unpacks_into_a_fresh_tree_with_a_denoising_table(rehearsal, tmp_path):
    out, p = rehearsal
    assert p.returncode == 0
    assert L.unpack_lease(out, tmp_path) == 0
    # a rehearsal goes into the git-ignored results/toy, never beside the paper's records
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["toy"]
    table = (tmp_path / "results/toy/denoising.md").read_text()
    assert "ours (seed 0)" in table and "| mean |" in table.lower().replace("**", "")
    assert "| scale | TOY" in table
    assert (tmp_path / "results/toy/benchmarks-cpu.md").is_file()
    leases = list((tmp_path / "results/toy/leases").glob("*.md"))
    assert len(leases) == 1 and leases[0].read_text() == (out / "LEASE.md").read_text()
    recs = list((tmp_path / "results/toy/runs").glob("*/*/summary.json"))
    images = 2 if DATA and len(dataset.task_images(DATA, "denoising")) >= 2 else 1
    assert len({r.parent.name for r in recs if r.parent.parent.name == "ours_seed0"}) == images


DATA = dataset.resolve_data_dir()


def test_pending_runs_are_listed_with_their_gpu_minutes(tmp_path):
    """Nothing fitted yet: every run is pending, with a positive bound."""
    args = Namespace(toy=True, mode="tf32", paper_out=str(tmp_path / "paper"), seconds=100,
                     out=str(tmp_path / "o"), device="cpu")
    lease = L.Lease(args)
    pending = L.pending_runs(lease)
    names = [p["run"] for p in pending]
    assert names[:4] == ["fig_dip", "fig_lambda0", "fig_ours", "ours_seed0"]
    assert all(p["pending"] == p["of"] >= 1 and p["gpu_minutes"] > 0 for p in pending)


def test_the_shares_of_a_lease_leave_most_of_it_to_the_paper_runs():
    caps = L.shares(520, toy=False)     # caps: a step that ends sooner leaves its time over
    assert caps["speed"] == 90 and caps["tests"] + caps["fits"] <= 165
    assert 520 - sum(caps.values()) >= 230


def test_stage_data_copies_and_checks_the_images(tmp_path, monkeypatch):
    if DATA is None or not dataset.task_images(DATA, "denoising"):
        pytest.skip("no paper images (set DIP_DATA_DIR)")
    monkeypatch.setattr(dataset, "PACKAGE_DIR", tmp_path)
    carry = L.stage_data(DATA, groups=("denoising",))
    assert carry == ["dataset/denoising"]
    assert {p.name for p in (tmp_path / "denoising").iterdir()} == {
        p.name for p in dataset.task_images(DATA, "denoising")}
    bad = tmp_path / "src"
    (bad / "denoising").mkdir(parents=True)
    for p in dataset.task_images(DATA, "denoising"):
        (bad / "denoising" / p.name).write_bytes(b"not the image")
    monkeypatch.setattr(dataset, "PACKAGE_DIR", tmp_path / "fresh")
    with pytest.raises(ValueError, match="sha256"):
        L.stage_data(bad, groups=("denoising",))


def test_unpack_of_a_folder_without_a_lease_record_is_one_line(tmp_path, capsys):
    assert L.unpack_lease(tmp_path, tmp_path / "root") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lease.json" in err[0]


@pytest.mark.parametrize("args, message", [
    (["--seconds", "nan"], "finite number of seconds"),
    (["--mode", "fp16"], "argument --mode: invalid choice: 'fp16'"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["--seconds", "20"], "--seconds must be at least 30"),
    (["--out", "FILE"], "cannot be the folder that comes back"),
])
def test_a_bad_lease_command_stops_before_the_first_step(tmp_path, capsys, args, message):
    """A bad value is one error line (argparse's) and exit 2 before contact: a lease must not
    find it minutes in, after the GPU's time was spent."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    argv = ["--toy", "--device", "cpu", "--out", str(tmp_path / "OUT"), "--seconds", "60"]
    argv += [str(afile) if a == "FILE" else a for a in args]
    with pytest.raises(SystemExit) as e:
        L.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "OUT").exists() and afile.read_text() == "x"
