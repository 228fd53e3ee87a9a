"""The lease cycle's parts without a GPU: the priority order, the time budget, the pack
(downsampled logs, scrubbed paths, size limit) and a safe unpack."""
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paper import budget as B  # noqa: E402
from paper import pack as P  # noqa: E402
from paper import unpack as U  # noqa: E402
from paper.experiments import all_runs  # noqa: E402
from tasks import all_tasks  # noqa: E402


def test_priority_order_follows_the_issue():
    tasks = all_tasks()
    names = [r.name for r in all_runs(tasks, [*tasks, "figures"], [0, 1], False)]
    first = names.index
    assert names[:8] == ["fig_dip", "fig_lambda0", "fig_ours", "ours_seed0", "dip_1800",
                         "ours_validation", "ours_2restarts", "ours_seed1"]
    assert first("ours_seed1") < first("fig_lambda1") < first("inpainting_bernoulli")
    assert first("inpainting_bernoulli") < first("sr_x4_Set5_dip") < first("sr_x4_Set14_dip")
    assert first("sr_x4_Set14_ours") < first("sr_x8_Set5_dip")
    assert first("sr_x8_Set14_ours") < first("deblocking_classic5_quality10")
    assert first("deblocking_classic5_quality30") < first("deblocking_LIVE1_quality10")
    assert first("deblocking_LIVE1_quality10") < first("enhancement") < first("ours_variance")
    assert len(names) == len(set(names))


def test_budget_prior_records_and_measurement():
    dec = dict(net="decoder", log_every=1)
    b = B.Budget(30.0, "cpu")
    one = 2 * 4.0 / 1e3 + B.OVERHEAD_S            # prior: 4 ms/it at 512², × 2, + overhead
    assert b.estimate(dec, 1.0) == pytest.approx(one)
    assert b.affordable(dec, [1.0] * 5) == 2      # 3 × 10.008 s > 30 s
    assert b.affordable(dec, []) == 0 and not b.known(dec)
    # a finished record on this device replaces the prior (its seconds over the work it ran:
    # 1000 of 5000 iterations, 2 members); one of another device does not
    hg = dict(net="hourglass", restarts=2, log_every=10, iters=5000)
    rec = dict(device="cpu", iterations=1000, seconds=40.0, size=[512, 512], hyperparameters=hg)
    assert B.ran(rec) == pytest.approx(2000.0)
    other = dict(rec, device="NVIDIA H100", seconds=1.0)
    b = B.Budget(100.0, "cpu", [rec, other])
    assert b.estimate(hg, 1000.0) == pytest.approx(1.2 * 0.02 * 1000 + B.OVERHEAD_S)
    # measured in this invocation: wins, the largest rate of the kind is kept
    b.measure(hg, 9.0, 1000.0)
    b.measure(hg, 5.0, 1000.0)
    assert b.known(hg) and b.estimate(hg, 1000.0) == pytest.approx(1.2 * 9.0)
    # another kind (measures every iteration) is not priced by it
    assert not b.known(dict(hg, log_every=1))
    assert b.estimate(dict(hg, log_every=1), 1000.0) > b.estimate(hg, 1000.0)
    assert b.left() <= 100.0


def test_work_counts_members_and_the_crop(tmp_path):
    from PIL import Image
    Image.new("RGB", (500, 330)).save(tmp_path / "a.png")
    cfg = dict(iters=100, restarts=2, ln_lambda=1.4, crop32=True)
    assert B.fitted_pixels(tmp_path / "a.png", cfg) == 480 * 320
    assert B.work(tmp_path / "a.png", cfg) == pytest.approx(100 * 2 * 480 * 320 / 512 ** 2)
    assert B.members(dict(restarts=2, ln_lambda="auto")) == 10
    assert B.fitted_pixels(None, dict(crop=64)) == 64 * 64


def _log(n=10000, members=2):
    lines = ["iteration,loss,psnr_gt,member"]
    for i in range(n):
        for m in range(members):
            p = 20 + (5 if (m == 1 and i == 5123) else 0)
            lines.append(f"{i},0.1,{p},{m}")
    return "\n".join(lines) + "\n"


def test_downsampled_log_keeps_the_head_the_peaks_and_the_marks():
    text = P.downsample_log(_log(), marks=[7777, None])
    rows = [r.split(",") for r in text.splitlines()]
    assert rows[0] == ["iteration", "loss", "psnr_gt", "member"]
    its = [int(r[0]) for r in rows[1:]]
    kept = set(its)
    assert set(range(P.HEAD + 1)) <= kept and {9999, 5123, 7777} <= kept
    assert len(kept) <= P.HEAD + P.LOG_ROWS + 5 and len(kept) < 10000
    assert all(its.count(i) == 2 for i in kept)      # both members of a kept iteration
    assert its == sorted(its)
    short = _log(50)
    assert P.downsample_log(short) == short          # short logs are kept whole


def test_scrubbed_record_holds_no_path():
    rec = P.scrubbed({"source": {"path": "/tmp/reproduce-x/kodim01.png", "pixels_sha256": "ab"},
                      "psnr": 30.0})
    assert rec["source"] == {"path": "kodim01.png", "pixels_sha256": "ab"}
    assert rec["psnr"] == 30.0


def _tree(out: Path):
    d = out / "runs" / "ours_seed0" / "img"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(
        {"image": "img", "status": "ok", "device": "cpu", "stop_iteration": 2345,
         "source": {"path": "/somewhere/img.png"}}))
    (d / "log.csv").write_text(_log(3000, 1))
    (d / "output.png").write_bytes(U.PNG_SIGNATURE + b"png")   # unpack checks the signature
    (d / "noisy.png").write_bytes(U.PNG_SIGNATURE + b"png")
    f = out / "runs" / "fig_ours" / "img"
    f.mkdir(parents=True)
    (f / "summary.json").write_text(json.dumps({"image": "img", "status": "ok"}))
    (f / "log.csv").write_text(_log(3000, 1))
    (out / "denoising.md").write_text("# table\n")
    (out / "notes.txt").write_text("not packed\n")
    return d


def test_pack_then_unpack_round_trip(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    d = _tree(src)
    path, n, size = P.write_pack(tmp_path / "p.tar.gz", src, "python reproduce.py",
                                 pictures=[d / "output.png"])
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
    assert names == {"denoising.md", "runs/ours_seed0/img/summary.json",
                     "runs/ours_seed0/img/log.csv", "runs/ours_seed0/img/output.png",
                     "runs/fig_ours/img/summary.json", "runs/fig_ours/img/log.csv", P.MANIFEST}
    assert n == len(names) and size == path.stat().st_size
    written, meta = U.unpack(path, dst)
    assert meta["command"] == "python reproduce.py" and meta["images"] == 2
    assert len(written) == len(names)
    rec = json.loads((dst / "runs/ours_seed0/img/summary.json").read_text())
    assert rec["source"]["path"] == "img.png"
    fig = (dst / "runs/fig_ours/img/log.csv").read_text()
    assert fig == (src / "runs/fig_ours/img/log.csv").read_text()     # figure logs whole
    small = (dst / "runs/ours_seed0/img/log.csv").read_text().splitlines()
    assert len(small) < 3001 and any(line.startswith("2345,") for line in small)
    assert not (dst / "notes.txt").exists() and not (dst / "runs/ours_seed0/img/noisy.png").exists()
    assert len(list((dst / "packs").glob("*.json"))) == 1


def test_pack_over_the_limit_writes_nothing(tmp_path, monkeypatch):
    _tree(tmp_path / "src")
    monkeypatch.setattr(P, "LIMIT", 100)
    with pytest.raises(P.PackError, match="over the"):
        P.write_pack(tmp_path / "p.tar.gz", tmp_path / "src", "cmd")
    assert not (tmp_path / "p.tar.gz").exists()


def _tar(path, entries):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("bad", ["../evil.md", "/abs.md", "runs/x/../../y/summary.json",
                                 "runs/a/b/c/d.json", "runs/a/b/script.py", "top.py"])
def test_unpack_refuses_paths_outside_the_layout(tmp_path, bad):
    manifest = json.dumps({"created": "2026-11-22T00:00:00+00:00"}).encode()
    _tar(tmp_path / "p.tar.gz", {P.MANIFEST: manifest, "ok.md": b"x", bad: b"y"})
    with pytest.raises(P.PackError, match="unexpected entry"):
        U.unpack(tmp_path / "p.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()         # nothing written, not even the good file


def test_unpack_refuses_what_is_not_a_pack(tmp_path):
    (tmp_path / "x.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(P.PackError, match="not a readable pack"):
        U.unpack(tmp_path / "x.tar.gz", tmp_path / "out")
    _tar(tmp_path / "y.tar.gz", {"a.md": b"x"})
    with pytest.raises(P.PackError, match="no PACK.json"):
        U.unpack(tmp_path / "y.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_compiled_fits_get_more_time_until_measured():
    b = B.Budget(60.0, "cpu")
    comp = dict(net="decoder", compile=True)
    assert b.estimate(comp, 1.0) == pytest.approx(2 * 4e-3 + B.OVERHEAD_S + B.COMPILE_S)
    assert b.affordable(comp, [1.0]) == 0                 # 130 s > 60 s
    b.measure(comp, 20.0, 1.0)
    assert b.affordable(comp, [1.0, 1.0, 1.0]) == 2      # 24 s each once measured


def test_a_downsampled_log_stays_as_it_is():
    once = P.downsample_log(_log(), marks=[7777])
    assert P.downsample_log(once, marks=[7777]) == once


def test_unpack_refuses_an_archive_that_expands_too_far(tmp_path, monkeypatch):
    manifest = json.dumps({"created": "2026-11-22T00:00:00+00:00"}).encode()
    _tar(tmp_path / "p.tar.gz", {P.MANIFEST: manifest, "big.md": b"x" * 5000})
    monkeypatch.setattr(U, "UNPACKED_LIMIT", 1000)
    with pytest.raises(P.PackError, match="expands to more than"):
        U.unpack(tmp_path / "p.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pack_over_the_limit_leaves_out_the_pictures_first(tmp_path, monkeypatch):
    d = _tree(tmp_path / "src")
    (d / "output.png").write_bytes(np.random.default_rng(0).bytes(200_000))  # incompressible
    full = P._archive(P.pack_members(tmp_path / "src", [d / "output.png"]), {})
    monkeypatch.setattr(P, "LIMIT", len(full) - 1000)
    path, _, _ = P.write_pack(tmp_path / "p.tar.gz", tmp_path / "src", "cmd",
                              pictures=[d / "output.png"])
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
        meta = json.loads(tar.extractfile(P.MANIFEST).read())
    assert "runs/ours_seed0/img/output.png" not in names and "runs/fig_ours/img/log.csv" in names
    assert meta["dropped"] == ["per-image PNGs"]
