"""reproduce.py end to end at toy scale: the denoising table, the figures, resumability, and
"—" (never a number) for results that do not exist yet."""
import contextlib
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import is_png

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dataset  # noqa: E402
import reproduce  # noqa: E402

DATA = dataset.resolve_data_dir()
pytestmark = pytest.mark.skipif(DATA is None or not dataset.task_images(DATA, "denoising"),
                                reason="no paper images (set DIP_DATA_DIR)")
PUBLISHED = ("29.22", "30.43", "31.00", "31.42", "30.26")
METHODS = {"DIP 1800 it.", "DIP 1800 it., EMA", "ours (seed 0)", "ours (seed 1)",
           "ours, Gaussian upsampling λ 1.8", "ours, variance stop", "ours, 2 restarts averaged",
           "ours, restart 0 of 2", "ours, restart 1 of 2", "ours, restart 0 of 2, EMA"}


def run(*argv):
    """reproduce.main in-process; returns (status, printed text)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = reproduce.main(list(argv))
    return status, buf.getvalue()


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))




@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    status, text = run("--toy", "--out", str(out), "--only", "denoising")
    assert status == 0, text
    return out


def test_denoising_table(out):
    image = dataset.task_images(DATA, "denoising")[0].stem
    table = rows(out / "denoising.csv")
    assert list(table[0]) == ["group", "method", "experiment", "image", "psnr", "ssim",
                              "stop_iteration", "iterations", "seconds", "psnr_peak",
                              "best_iteration", "psnr_last"]
    assert METHODS <= {r["method"] for r in table}
    for label in METHODS:  # every method has its image row and its mean, with a finite PSNR
        mine = {r["image"]: r for r in table if r["method"] == label}
        assert {image, "mean"} <= set(mine), label
        assert np.isfinite(float(mine[image]["psnr"])), label
    # the batched run fits on after its stops: each restart's stop, peak and end are reported
    for m in (0, 1):
        r = next(r for r in table if r["method"] == f"ours, restart {m} of 2"
                 and r["image"] == image)
        assert float(r["stop_iteration"]) <= float(r["best_iteration"]) <= 6
        assert np.isfinite(float(r["psnr_peak"])) and np.isfinite(float(r["psnr_last"]))
    avg = next(r for r in table if r["method"] == "ours, 2 restarts averaged"
               and r["image"] == image)
    assert float(avg["iterations"]) == 6 and np.isfinite(float(avg["psnr_last"]))
    # the average's own end (not restart 0's); a peak is only logged for single fits
    r0 = next(r for r in table if r["method"] == "ours, restart 0 of 2" and r["image"] == image)
    assert avg["psnr_last"] != r0["psnr_last"] and avg["psnr_peak"] == ""
    dip = next(r for r in table if r["method"] == "DIP 1800 it." and r["image"] == image)
    assert np.isfinite(float(dip["psnr_peak"])) and dip["psnr_last"] == ""
    ours = next(r for r in table if r["method"] == "ours (seed 0)" and r["image"] == image)
    assert ours["experiment"] == "ours_seed0" and float(ours["iterations"]) <= 6
    published = {r["method"]: r["psnr"] for r in table if r["experiment"] == "published"}
    assert {f"{float(v):.2f}" for v in published.values()} >= set(PUBLISHED)
    md = (out / "denoising.md").read_text()
    for word in ("| device | cpu |", "| torch |", "| seeds |", "reproduce.py --toy", "TOY",
                 "±", "## Experiments", "denoising.py --crop32", *PUBLISHED):
        assert word in md, word
    if (ROOT / "results/paper/baselines_denoising.csv").exists():
        assert "CBM3D (baselines.py)" in {r["method"] for r in table}


def test_second_invocation_is_resumable(out):
    summaries = sorted((out / "runs").glob("*/*/summary.json"))
    assert len(summaries) == 7      # 6 before ours_validation was added
    before = {p: p.stat().st_mtime_ns for p in summaries}
    status, text = run("--toy", "--out", str(out), "--only", "denoising")
    assert status == 0
    assert text.count("already finished, skipped") == 7, text
    assert {p: p.stat().st_mtime_ns for p in summaries} == before


def test_budget_pack_unpack_cycle(out, tmp_path):
    """The lease cycle at toy scale: a budgeted invocation with --pack, the archive unpacked
    into a fresh tree, the same tables, and a rerun there that fits nothing."""
    pack = tmp_path / "pack.tar.gz"
    status, text = run("--toy", "--out", str(out), "--only", "denoising", "--budget-s", "100",
                       "--pack", str(pack))
    assert status == 0, text
    assert "] denoising.py" not in text              # every image finished: nothing started
    assert "pack: " in text and 0 < pack.stat().st_size <= 16 * 1024 ** 2
    new = tmp_path / "new"
    # no --toy, no --only: the tables take the scale and the parts of the command that packed
    status, text = run("--out", str(new), "--unpack", str(pack))
    assert status == 0, text
    assert (new / "denoising.csv").read_text() == (out / "denoising.csv").read_text()
    assert "| scale | TOY" in (new / "denoising.md").read_text()
    assert sorted(p.name for p in new.glob("*.md")) == ["denoising.md"]
    recs = sorted((new / "runs").glob("*/*/summary.json"))
    assert len(recs) == 7
    assert all("/" not in json.loads(p.read_text())["source"]["path"] for p in recs)
    before = {p: p.stat().st_mtime_ns for p in recs}
    status, text = run("--toy", "--out", str(new), "--only", "denoising", "--budget-s", "100")
    assert status == 0 and "] denoising.py" not in text, text
    status, text = run("--toy", "--out", str(new), "--only", "denoising")  # the scripts' check
    assert status == 0 and text.count("already finished, skipped") == 7, text
    assert {p: p.stat().st_mtime_ns for p in recs} == before


def test_unpack_keeps_the_figures_of_a_pack_that_left_things_out(out, tmp_path, monkeypatch):
    from paper import pack as P
    pics = sorted((out / "runs" / "ours_seed0").glob("*/output.png"))
    assert pics
    full = P._archive(P.pack_members(out, pics), {"dropped": []})
    monkeypatch.setattr(P, "LIMIT", len(full) - 1)   # with its PNG the pack is too large
    pack = tmp_path / "p.tar.gz"
    f, _, _ = P.write_pack(pack, out, "cmd", pics)
    status, text = run("--toy", "--out", str(tmp_path / "new"), "--only", "denoising",
                       "--only", "figures", "--unpack", str(pack))
    assert status == 0, text
    assert "left out per-image PNGs" in text and "kept as they came" in text
    assert "denoising: wrote" in text and "figures: wrote" not in text


def test_budget_never_starts_an_image_it_cannot_finish(tmp_path):
    status, text = run("--toy", "--out", str(tmp_path), "--only", "denoising", "--budget-s", "3")
    assert status == 0, text
    assert text.count("not started") == 7 and "] denoising.py" not in text
    assert not list(tmp_path.glob("runs/*/*/summary.json"))
    assert (tmp_path / "denoising.md").read_text().count("1/1 images not run yet") == 7


def test_budget_measures_a_net_on_one_image_then_fits_the_rest_of_the_run(tmp_path):
    if len(dataset.task_images(DATA, "denoising")) < 2:
        pytest.skip("needs two denoising images")
    status, text = run("--toy", "--out", str(tmp_path), "--only", "denoising", "--images", "2",
                       "--budget-s", "200")
    assert status == 0, text
    calls = [line.split("]")[0][1:] for line in text.splitlines() if "] denoising.py" in line]
    # decoder: the first run fits one image (measured), then the other; every later decoder
    # run is one call of both images; DIP's hourglass is measured on its own first image
    assert calls == ["ours_seed0", "ours_seed0", "dip_1800", "dip_1800", "ours_validation",
                     "ours_2restarts", "ours_seed1", "ours_gaussian", "ours_variance"], calls
    assert len(list(tmp_path.glob("runs/*/*/summary.json"))) == 14


def test_unpack_of_a_bad_file_is_one_line_and_status_2(tmp_path, capsys):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"nope")
    assert reproduce.main(["--toy", "--out", str(tmp_path / "o"), "--unpack", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.tar.gz" in err[0] and "not a readable pack" in err[0]


def test_figures(out):
    status, text = run("--toy", "--out", str(out), "--only", "figures")
    assert status == 0, text
    names = ("fig_fbc_dip_vs_ours", "fig_lambda_sweep", "fig_gaussian_sigma_sweep",
             "fig_architectures", "fig_auto_stop", "fig_montage")
    for name in names:
        assert is_png(out / f"{name}.png"), name
    md = (out / "figures.md").read_text()
    assert all(f"({n}.png)" in md for n in names) and "| device | cpu |" in md
    table = rows(out / "figures.csv")
    stop = next(r for r in table if r["figure"] == "auto_stop")
    assert stop["peak_or_stop_iteration"] == "2"   # the toy window makes the rule fire
    # two values per sweep in toy mode
    assert sum(r["figure"] == "lambda_sweep" for r in table) == 2
    assert sum(r["figure"] == "gaussian_sigma_sweep" for r in table) == 2


def test_missing_results_read_dash(tmp_path):
    """No run: the inpainting table holds the published numbers, '—' for ours, and the
    command that produces them."""
    status, text = run("--toy", "--out", str(tmp_path), "--only", "inpainting", "--no-run")
    assert status == 0 and "inpainting.md" in text
    md = (tmp_path / "inpainting.md").read_text()
    assert "| Barbara | — |" in md and "33.48" in md and "32.22" in md and "28.14" in md
    assert "python reproduce.py --only inpainting" in md
    table = {(r["method"], r["image"]): r for r in rows(tmp_path / "inpainting.csv")}
    assert table[("ours (λ 1.6, ratio stop)", "Barbara")]["psnr"] == ""
    assert table[("DIP (published, Table 1)", "Barbara")]["psnr"] == "32.2200"
    # a toy table beside baselines.py's full-image rows says so (each task's, not denoising's
    # only: results/paper/baselines_inpainting.csv is committed)
    assert "(baselines.py)" in md and "TOY: the baselines.py rows are full-image numbers" in md


def test_dry_run_lists_every_experiment(capsys):
    assert reproduce.main(["--dry-run"]) == 0
    text = capsys.readouterr().out
    for name in ("dip_1800", "ours_seed1", "inpainting_bernoulli", "sr_x8_Set14_ours",
                 "deblocking_LIVE1_quality10", "enhancement", "deblurring_denoising",
                 "fig_arch_convnet", "total"):
        assert name in text, name
    assert "--full --crop32" in text
    # the order of short leases: the central claim, then the 9-image table as a single run
    first = [line.split()[0] for line in text.splitlines()[:6]]
    assert first == ["fig_dip", "fig_lambda0", "fig_ours", "ours_seed0", "dip_1800",
                     "ours_validation"], first
    # each command as a user would type it: with python and its images
    lines = {ln.split()[0]: ln for ln in text.splitlines()[:-1]}
    figure = str(reproduce.Context(reproduce.build_parser(["figures"]).parse_args([]), [])
                 .figure_image())
    assert " python denoising.py --full " in lines["fig_ours"]
    assert lines["fig_ours"].endswith(f" --image {figure}")
    assert lines["ours_seed0"].endswith(f" --image {Path(figure).parent}")


def test_the_dry_runs_image_argument_is_a_folder_only_where_it_holds_just_those(tmp_path):
    from paper.runner import image_args
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / name)
    a, b, c = (tmp_path / n for n in ("a.png", "b.png", "c.png"))
    assert image_args([a]) == f" --image {a}" and image_args([a, b, c]) == f" --image {tmp_path}"
    assert image_args([a, b]) == "   # images: a b" and image_args(None) == ""


def test_toy_records_never_show_in_a_paper_scale_table(out, tmp_path):
    """Tables rebuilt without --toy over toy records: every row of ours reads "—" and the
    scale line says full; the toy runs are not the paper's numbers."""
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(out / "runs", copy / "runs")
    status, text = run("--out", str(copy), "--only", "denoising", "--no-run")
    assert status == 0, text
    md = (copy / "denoising.md").read_text()
    assert "| scale | full" in md and "TOY" not in md
    table = rows(copy / "denoising.csv")
    ours = [r for r in table if r["experiment"] not in ("published", "baselines.py")]
    assert ours and all(r["psnr"] == "" for r in ours)
    assert sorted(p.name for p in copy.glob("*.png")) == []


def test_an_interrupted_fit_is_pending_not_a_table_cell(out, tmp_path):
    """A record marked interrupted (a lease's SIGTERM) holds a partial fit: its table cell is
    empty and the run is listed as missing, as the budget counts it pending."""
    import json
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(out / "runs", copy / "runs")
    image = dataset.task_images(DATA, "denoising")[0].stem
    rec_path = copy / "runs" / "ours_seed0" / image / "summary.json"
    rec = json.loads(rec_path.read_text())
    rec_path.write_text(json.dumps(dict(rec, status="interrupted")))
    status, text = run("--toy", "--out", str(copy), "--only", "denoising", "--no-run")
    assert status == 0, text
    mine = {r["image"]: r for r in rows(copy / "denoising.csv") if r["method"] == "ours (seed 0)"}
    assert mine[image]["psnr"] == ""
    assert mine[image]["psnr"] != {r["image"]: r for r in rows(out / "denoising.csv")
                                   if r["method"] == "ours (seed 0)"}[image]["psnr"]
    assert "ours_seed0" in (copy / "denoising.md").read_text().split("missing", 1)[-1]


def test_toy_output_defaults_to_a_git_ignored_folder():
    from paper.runner import Context
    args = reproduce.build_parser(["denoising"]).parse_args(["--toy"])
    assert Context(args, ["--toy"]).out == Path("results/toy")
    assert Context(reproduce.build_parser(["denoising"]).parse_args([]), []).out == \
        Path("results/paper")
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/results/*/" in ignored and "!/results/toy/" not in ignored


def test_named_images_select_the_figure_runs_only_when_named(capsys):
    figure = Path(reproduce.Context(reproduce.build_parser(["figures"]).parse_args([]), [])
                  .figure_image()).stem
    other = next(p.stem for p in dataset.task_images(DATA, "denoising") if p.stem != figure)
    for name, n in ((other, 0), (figure, 1)):
        assert reproduce.main(["--dry-run", "--only", "figures", "--only", "denoising",
                               "--images", name]) == 0
        lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("fig_")]
        assert lines and all(f" {n} images" in ln for ln in lines), lines


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], "--images 0: give a number"),
    (["--images", "no_such_image"], "--images no_such_image: no such image"),
    (["--images", "no_such_image"], "(they hold "),            # the names there are
    (["--figure-image", "F61"], "--figure-image F61: no such image in the denoising set"),
    (["--data-dir", "MISSING"], "MISSING: no such folder"),
    (["--pack", "DIR"], "is a folder"),
])
def test_bad_reproduce_options_are_one_line_before_any_fit(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / "missing") if a == "MISSING" else str(tmp_path) if a == "DIR" else a
            for a in argv]
    out = tmp_path / "o"
    assert reproduce.main(["--toy", "--only", "denoising", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message.replace(
        "MISSING", "missing") in err[0], err
    assert not out.exists()


def test_unpack_without_out_goes_to_the_folder_of_the_packs_scale(out, tmp_path, monkeypatch,
                                                                    capsys):
    """A toy pack unpacked with no --out lands in results/toy, never in results/paper; an
    option given that differs from the packed command's is named, and the pack's is used."""
    pack = tmp_path / "toy.tar.gz"
    status, text = run("--toy", "--out", str(out), "--only", "denoising", "--no-run",
                       "--pack", str(pack))
    assert status == 0, text
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(home)
    capsys.readouterr()
    status, text = run("--unpack", str(pack), "--mode", "fp32")
    assert status == 0, text
    assert sorted(p.name for p in (home / "results").iterdir()) == ["toy"]
    assert "| scale | TOY" in (home / "results/toy/denoising.md").read_text()
    assert "not to commit" in text
    err = capsys.readouterr().err
    assert "warning: --mode fp32 not used: the pack's runs were made with tf32" in err


def test_a_missing_data_folder_stops_a_run_but_not_a_rebuild(tmp_path, monkeypatch, capsys):
    """$DIP_DATA_DIR naming no folder: an error before any fit (a typo must not fit the
    embedded images instead), but tables rebuilt from records (--no-run) read no image."""
    monkeypatch.setenv(dataset.DATA_ENV, str(tmp_path / "typo"))
    assert reproduce.main(["--toy", "--out", str(tmp_path), "--dry-run"]) == 2
    assert "typo: no such folder" in capsys.readouterr().err
    status, text = run("--toy", "--out", str(tmp_path), "--only", "inpainting", "--no-run")
    assert status == 0 and "inpainting: wrote" in text


@pytest.mark.parametrize("toy", [True, False])
def test_a_runs_command_gives_each_option_once_and_means_what_the_repeats_meant(toy):
    from paper.experiments import all_runs
    from paper.runner import last_wins, run_config
    from tasks import all_tasks
    tasks = all_tasks()
    argv = ["--toy"] * toy
    ctx = reproduce.Context(reproduce.build_parser([*tasks, "figures"]).parse_args(argv), argv)
    repeated = 0
    for run in all_runs(tasks, [*tasks, "figures"], [0, 1], toy):
        got, raw = ctx.run_argv(run), ctx._run_argv(run)
        options = [a.replace("--no-", "--", 1) for a in got if a.startswith("--")]
        assert len(options) == len(set(options)), (run.name, got)
        repeated += len(got) < len(raw)
        as_given = run_config(run, ctx)
        ctx.run_argv = ctx._run_argv            # the parser's own last-wins on the repeats
        try:
            assert run_config(run, ctx) == as_given, run.name
        finally:
            del ctx.run_argv
    assert repeated if toy else True            # the toy scale repeats --iters, --log-every, ...
    assert last_wins(["--use-ema", "--x", "1", "--no-use-ema", "--x", "2", "--flag"]) == [
        "--no-use-ema", "--x", "2", "--flag"]


def test_figures_rebuilt_from_a_pack_here_without_the_data_name_the_packed_image(
        out, tmp_path, monkeypatch):
    """A lease's pack unpacked on a machine without the paper's images: figures.md names the
    image its records name (it said 'the embedded default'), and nothing says that runs will use
    the embedded images (an unpack runs nothing)."""
    assert run("--toy", "--out", str(out), "--only", "figures")[0] == 0   # (or finished: kept)
    figure = reproduce.Context(reproduce.build_parser(["figures"]).parse_args([]), []) \
        .figure_image().stem
    pack = tmp_path / "fig.tar.gz"
    status, text = run("--toy", "--out", str(out), "--only", "figures", "--no-run", "--pack",
                       str(pack))
    assert status == 0, text
    monkeypatch.delenv(dataset.DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    status, text = run("--out", str(tmp_path / "new"), "--unpack", str(pack))
    assert status == 0 and "no data folder" not in text, text
    md = (tmp_path / "new" / "figures.md").read_text()
    assert f"Figure image: {figure} (as its records name it)." in md
