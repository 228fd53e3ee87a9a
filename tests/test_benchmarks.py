"""benchmarks.speed --quick: runs end to end on the CPU and writes the expected table."""
import re

import pytest
import torch

from benchmarks import speed


def test_speed_quick_table(tmp_path):
    out = tmp_path / "bench.md"
    threads = torch.get_num_threads()
    text = speed.main(["--device", "cpu", "--quick", "--out", str(out)])
    assert torch.get_num_threads() == threads  # --quick's single thread is undone
    assert out.read_text(encoding="utf-8") == text
    assert "torch " + torch.__version__ in text and "command: `python -m benchmarks.speed" in text

    rows = [line.split("|")[1:-1] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| case |")]
    cases = {}
    for cells in rows:
        cells = [c.strip() for c in cells]
        if len(cells) == 11:
            cases.setdefault(tuple(cells[:5]), []).append(cells)
    assert all(len(found) == 1 for found in cases.values())   # no two rows alike
    expected = [("decoder", "64²", "1", "fp32", "eager"), ("decoder", "64²", "10", "fp32", "eager"),
                ("decoder", "32²", "1", "fp32", "eager"),
                ("decoder", "64²", "10", "bf16", "eager"), ("decoder", "64²", "10", "fp32", "compile"),
                ("decoder", "64²", "10", "bf16", "compile"),
                ("hourglass", "64²", "1", "fp32", "eager"),
                ("batch of 8 (vmap)", "8×32²", "1", "fp32", "eager"),
                ("8 sequential fits", "8×32²", "1", "fp32", "eager")]
    for key in expected:
        assert key in cases, key
    number = re.compile(r"^\d+(\.\d+)?$")
    for key, found in cases.items():
        for cells in found:
            if key[4] == "compile":  # not run in --quick, with a note saying so
                assert cells[5] == "—" and "not run" in cells[10]
                continue
            assert number.match(cells[5]) and float(cells[5]) > 0, cells  # ms/it
            assert number.match(cells[6]) and float(cells[6]) > 0, cells  # it/s
            assert re.match(r"^\d+\.\d+ GB$", cells[7]), cells           # peak memory

    # the sigma-method comparison, the agreement check and the batch throughput ratio
    assert re.search(r"\| svdvals \| \d+\.\d+ \|", text)
    assert re.search(r"\| eigvalsh \| \d+\.\d+ \|", text)
    assert re.search(r"faster on this device: \*\*(svdvals|eigvalsh)\*\*", text)
    rel = re.search(r"max relative difference of σ_max over the convs: (\S+) at init", text)
    assert rel and float(rel.group(1)) < 1e-5
    assert re.search(r"ratio \*\*\d+\.\d+×\*\*", text)


def test_robustness_grid_writes_its_table_and_resumes(tmp_path, monkeypatch):
    """benchmarks.robustness: a 1-run grid at 10 iterations writes the table and CSV; --resume
    keeps that run and fits only the new seed."""
    from benchmarks import robustness
    out = tmp_path / "rob.md"
    args = ["--tasks", "denoising", "--images", "camera", "--set", "iters=10", "--out", str(out)]
    rows = robustness.main([*args, "--seeds", "0"])
    assert len(rows) == 1 and rows[0][:3] == ["denoising", "camera", 0]
    assert "| denoising |" in out.read_text() and out.with_suffix(".csv").exists()
    fitted = []
    real = robustness.run
    monkeypatch.setattr(robustness, "run", lambda t, i, s, o=None: fitted.append(s) or real(t, i, s, o))
    rows2 = robustness.main([*args, "--seeds", "0", "1", "--resume"])
    assert fitted == [1] and len(rows2) == 2
    assert abs(rows2[0][4] - rows[0][4]) < 1e-3         # the kept run, read back from the CSV
    assert len(robustness.read_rows(out.with_suffix(".csv"))) == 2
    # an entry one task's net has not: refused before the first run, not midway through the grid
    fitted.clear()
    with pytest.raises(SystemExit) as e:
        robustness.main(["--tasks", "denoising", "super_resolution", "--set", "channels=8",
                         "--out", str(tmp_path / "bad.md")])
    assert e.value.code == 2 and fitted == [] and not (tmp_path / "bad.md").exists()


def test_set_overrides_are_typed_like_the_command_line_and_reach_cpu_modes_runs(monkeypatch):
    """--set of benchmarks.robustness and benchmarks.cpu_modes: entries typed by the task's
    parser (a float, a switch, its negation); cpu_modes hands them to every run."""
    from benchmarks import cpu_modes, robustness
    from denoising import TASK
    got = robustness.set_overrides(TASK, ["lr=0.002", "use_ema", "no_ema_warmup", "iters=7"])
    assert got == {"lr": 0.002, "use_ema": True, "ema_warmup": False, "iters": 7}
    with pytest.raises(SystemExit):
        robustness.set_overrides(TASK, ["lr=fast"])
    seen = []
    monkeypatch.setattr(cpu_modes, "resolve_amp", lambda *a, **k: ("bf16", False, "test"))
    monkeypatch.setattr(cpu_modes, "parity", lambda *a, **k: seen.append(k) or [])
    monkeypatch.setattr(cpu_modes, "verdicts", lambda rows: [])
    monkeypatch.setattr(cpu_modes, "atomic_write_text", lambda *a: None)
    cpu_modes.main(["--tasks", "denoising", "--set", "lr=0.002", "--out", "x.md"])
    assert seen and seen[0]["lr"] == 0.002


def test_parity_quick_and_its_verdict(tmp_path, monkeypatch):
    from benchmarks import parity
    out = tmp_path / "parity.md"
    assert parity.main(["--quick", "--modes", "tf32", "--out", str(out)]) == 0
    md = out.read_text(encoding="utf-8")
    assert "| fp32 | --no-tf32 |" in md and "| tf32 | (default) |" in md and "TOY" in md
    # a toy fit decides nothing: no verdict, and the peak counts the last output too
    assert "Verdict: none at TOY scale" in md and "fastest mode" not in md
    for row in (r.split(" | ") for r in md.splitlines() if r.startswith("| tf32 |")):
        assert float(row[6].split(" @ ")[0]) >= float(row[2])
    # without --out a toy run writes no file (the committed results/parity-cuda.md stays)
    monkeypatch.chdir(tmp_path)
    assert parity.main(["--quick", "--modes", "tf32", "--iters", "2"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parity.md"]
    # the verdict: the fastest mode within 0.1 dB (last and EMA) of strict fp32
    res = [dict(mode="fp32", psnr=30.0, psnr_ema=30.5, ms_per_it=9.0),
           dict(mode="tf32", psnr=30.05, psnr_ema=30.45, ms_per_it=4.0),
           dict(mode="bf16-compile", psnr=29.85, psnr_ema=30.5, ms_per_it=2.0),
           dict(mode="tf32-compile", error="exit status 1")]
    mode, text = parity.verdict(res)
    assert mode == "tf32" and "outside the tolerance: bf16-compile" in text
    assert parity.verdict(res[1:])[0] is None


def test_parity_leaves_out_a_compile_mode_whose_check_dropped_the_compile(tmp_path, monkeypatch):
    """A mode whose fit ran eager (the compiled net disagreed with eager's at the first step,
    utils.members) is an error row, never a verdict's candidate."""
    import utils.members
    from benchmarks import parity
    monkeypatch.setattr(utils.members.torch, "compile", lambda f: (lambda z: f(z) * 1.5))
    out = tmp_path / "parity.md"
    with pytest.warns(UserWarning, match="^--compile not used"):
        parity.main(["--quick", "--iters", "4", "--modes", "tf32-compile", "--out", str(out)])
    row = next(r for r in out.read_text(encoding="utf-8").splitlines()
               if r.startswith("| tf32-compile |"))
    assert "--compile not used: torch.compile's output or gradient differs" in row
    assert "| — |" in row


def test_speed_time_cap_lists_the_cases_it_did_not_start(tmp_path, monkeypatch):
    """--max-seconds 0 (a lease whose cap has passed): every case is listed, none timed, and
    the table is still written whole; --quick without --out writes no file (its toy sizes never
    replace the committed results/benchmarks.md)."""
    monkeypatch.chdir(tmp_path)
    speed.main(["--device", "cpu", "--quick", "--max-seconds", "0", "--no-compile"])
    assert list(tmp_path.iterdir()) == []
    text = speed.main(["--device", "cpu", "--quick", "--max-seconds", "0", "--no-compile",
                       "--out", str(tmp_path / "b.md")])
    rows = [line for line in text.splitlines() if line.startswith("| decoder")
            or line.startswith("| batch of") or line.startswith("| hourglass")
            or line.startswith("| 8 sequential")]
    assert len(rows) == 9
    assert all("| — |" in r for r in rows)
    assert sum("time cap" in r for r in rows) == 7 and sum("not run" in r for r in rows) == 2
    assert "ratio **—×**" in text


def test_compare_pairs_two_grids_run_by_run_and_lists_the_unpaired(tmp_path):
    from benchmarks import compare
    from benchmarks.robustness import CSV_HEADER, csv_row
    from utils.tables import csv_text

    def grid(path, rows):
        path.write_text(csv_text(CSV_HEADER, [csv_row(r) for r in rows]))
        return str(path)
    row = lambda img, seed, got, s: ["denoising", img, seed, f"20.00 → {got:.2f}",  # noqa: E731
                                     got - 20, s, 0, "yes", "CBM3D", 30.0]
    a = grid(tmp_path / "a.csv", [row("camera", 0, 26.0, 100), row("moon", 0, 28.0, 100),
                                  row("moon", 1, 27.0, 100)])
    b = grid(tmp_path / "b.csv", [row("moon", 0, 29.5, 300), row("camera", 0, 25.0, 200)])
    text = "\n".join(compare.report(a, b, ("whole", "tiles")))
    # the pairs: camera −1.00, moon +1.50; mean +0.25, one of two better, times ×2 and ×3
    assert "| denoising | 2 | +0.25 | -1.00 … +1.50 | 1/2 | -3.00 (worst -4.00) | " \
           "-2.75 (worst -5.00) | 2.50 |" in text
    assert "| denoising | moon | 0 | 20.00 | 28.00 | 29.50 | +1.50 | CBM3D 30.00 | 100 / 300 |" \
        in text
    assert "Not paired (in one CSV only): denoising moon seed 1 (a.csv)" in text
    with pytest.raises(SystemExit, match="no run in common"):
        compare.report(a, grid(tmp_path / "c.csv", [row("coffee", 0, 26.0, 100)]))
    with pytest.raises(SystemExit, match="missing.csv: no such CSV"):
        compare.main([a, str(tmp_path / "missing.csv")])
    compare.main([a, b, "--out", str(tmp_path / "pairs.md")])
    written = (tmp_path / "pairs.md").read_text()
    assert written.startswith("# B against A") and "| denoising | 2 | +0.25 |" in written


def test_measures_timing_writes_its_record(tmp_path, capsys):
    from benchmarks import measures
    measures.main(["--size", "64", "--repeat", "2", "--out", str(tmp_path / "m.md")])
    text = (tmp_path / "m.md").read_text()
    said = capsys.readouterr().out.strip()
    assert said in text and "- device: " in text and "--size 64" in text
    ms = float(re.search(r"RGB on cpu \(\d+ threads\): ([0-9.]+) ms median", said).group(1))
    assert ms > 0
    assert (measures.speed_words(4.24), measures.speed_words(0.5)) == ("4.2x faster",
                                                                       "2.0x slower")
