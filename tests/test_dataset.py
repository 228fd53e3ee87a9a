"""Tests of dataset/: manifest, lookup helpers and the downloader.

The downloader is exercised against a local HTTP mirror on 127.0.0.1 serving a few small files
from the shared read-only copy ($DIP_DATA_DIR, else ../shared/datasets beside the project),
plus a synthetic BMP whose hashes are computed here. Nothing leaves the machine.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import os
import shutil
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # so that plain `pytest` finds the package too

import launcher  # noqa: E402
import dataset  # noqa: E402
from dataset import fetch as fetch_mod  # noqa: E402

SMALL = ["inpainting/bernoulli/Cameraman256.png", "dip/snail.jpg"]  # ~45 kB in all


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def _local_only(monkeypatch):
    """Keep test traffic off any configured proxy."""
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


@pytest.fixture
def shared() -> Path:
    """The read-only local copy of the images; skip when absent."""
    root = Path(os.environ.get(dataset.DATA_ENV) or REPO.parent / "shared" / "datasets")
    if not (root / SMALL[0]).is_file():
        pytest.skip(f"no local image copy at {root} (set {dataset.DATA_ENV})")
    return root


@pytest.fixture
def env_data(shared) -> Path:
    """The image copy named by $DIP_DATA_DIR (as in CI); skip when the variable is unset."""
    if not os.environ.get(dataset.DATA_ENV):
        pytest.skip(f"{dataset.DATA_ENV} is not set")
    return shared


@pytest.fixture
def mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/'mirror'; yields (root, base_url, requests)."""
    root = tmp_path / "mirror"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *a):  # keep pytest output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def served(shared, mirror):
    """Mirror laid out per the mirror rule: two real files and a synthetic BMP -> PNG row."""
    root, base, requests = mirror
    rows = [r for r in dataset.manifest() if r["path"] in SMALL]
    assert len(rows) == len(SMALL)
    for r in rows:
        (root / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / r["path"], root / r["path"])

    pixels = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    bmp, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(pixels).save(bmp, "BMP")
    Image.fromarray(pixels).save(png, "PNG", optimize=True)
    (root / "synthetic").mkdir()
    (root / "synthetic/tiny.bmp").write_bytes(bmp.getvalue())
    rows.append({"path": "synthetic/tiny.png",
                 "upstream_url": "https://upstream.invalid/0123abcd/synthetic/tiny.bmp",
                 "upstream_sha256": sha(bmp.getvalue()), "sha256": sha(png.getvalue())})
    return rows, root, base, requests, pixels


def files_under(folder: Path) -> set[str]:
    """Every file below folder (hidden temporaries included), as posix relative paths."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- manifest and helpers

def test_manifest_rows():
    rows = dataset.manifest()
    assert len(rows) == 86 and set(rows[0]) == set(dataset.COLUMNS)
    assert all(len(r["upstream_sha256"]) == 64 and len(r["sha256"]) == 64 for r in rows)
    assert dataset.groups() == ["denoising", "deblocking", "inpainting", "enhancement",
                                "super_resolution", "dip"]
    converted = [r["path"] for r in rows if fetch_mod.needs_conversion(r)]
    assert len(converted) == 30 and "enhancement/tulips.png" in converted


def test_manifest_matches_shared_copy(shared):
    shared_manifest = shared / "MANIFEST.tsv"
    if not shared_manifest.is_file():
        pytest.skip("shared copy has no MANIFEST.tsv")
    assert dataset.read_manifest(shared_manifest) == dataset.manifest()


def test_mirror_rule():
    row = next(r for r in dataset.manifest() if r["path"] == "deblocking/LIVE1/bikes.png")
    assert fetch_mod.source_url(row) == row["upstream_url"]
    assert fetch_mod.source_url(row, "http://m/x/") == "http://m/x/deblocking/LIVE1/bikes.bmp"


def test_resolve_data_dir_order(tmp_path, monkeypatch):
    cli, env, pkg = tmp_path / "cli", tmp_path / "env", tmp_path / "pkg"
    pkg.mkdir()
    monkeypatch.setattr(dataset, "PACKAGE_DIR", pkg)
    monkeypatch.delenv(dataset.DATA_ENV, raising=False)
    assert dataset.resolve_data_dir() is None  # package folder holds no image
    (pkg / "denoising").mkdir()
    (pkg / "denoising/kodim01.png").write_bytes(b"stand-in")
    assert dataset.resolve_data_dir() == pkg
    monkeypatch.setenv(dataset.DATA_ENV, str(env))
    assert dataset.resolve_data_dir() == env
    assert dataset.resolve_data_dir(str(cli)) == cli  # given but missing: returned anyway


def test_task_images(env_data):
    den = dataset.task_images(env_data, "denoising")
    assert len(den) == 9 and den[0].name == "image_Baboon512rgb.png"
    assert len(dataset.task_images(env_data, "inpainting/bernoulli")) == 11
    text = dataset.task_images(env_data, "inpainting/text")
    assert [p.stem for p in text] == ["library", "vase", "kate"]  # masks excluded
    assert len(dataset.task_images(env_data, "super_resolution", "Set5")) == 5
    assert len(dataset.task_images(env_data, "deblocking/classic5")) == 5
    picked = dataset.task_images(env_data, "denoising", ["KODIM01", "kodim12"])
    assert [p.stem for p in picked] == ["kodim01", "kodim12"]
    assert dataset.task_images(env_data / "nowhere", "denoising") == []


def test_find_image_prefers_the_tasks_own_name_even_when_it_is_not_downloaded(tmp_path):
    """Only deblocking's sets here: inpainting's "house" is missing (None: the caller says how
    to get it), never deblocking's house.png in its place; with no task, the one present."""
    (tmp_path / "deblocking/LIVE1").mkdir(parents=True)
    (tmp_path / "deblocking/LIVE1/house.png").write_bytes(b"")
    assert dataset.find_image(tmp_path, "house", ("inpainting/bernoulli",)) is None
    assert dataset.find_image(tmp_path, "house") == tmp_path / "deblocking/LIVE1/house.png"


def test_find_image(env_data):
    assert dataset.find_image(env_data, "kodim01") == env_data / "denoising/kodim01.png"
    assert dataset.find_image(env_data, "KODIM01") == env_data / "denoising/kodim01.png"
    assert dataset.find_image(env_data, "Set14/baboon") == \
        env_data / "super_resolution/Set14/baboon.png"
    assert dataset.find_image(env_data, "denoising/F16").name == "image_F16_512rgb.png"
    assert dataset.find_image(env_data, "tulip").name == "tulips.png"
    assert dataset.find_image(env_data, "no_such_image") is None
    with pytest.raises(ValueError, match="ambiguous"):
        dataset.find_image(env_data, "F16")  # image_F16_512rgb and F16_GT
    # a task's own folders first: "house" is not another task's image of that name
    assert dataset.find_image(env_data, "house", ("inpainting/bernoulli",)) == \
        env_data / "inpainting/bernoulli/house.png"
    assert dataset.find_image(env_data, "House", ("denoising",)).name == "image_House256rgb.png"
    assert dataset.find_image(env_data, "baboon", ("super_resolution/Set5",
                                                   "super_resolution/Set14")) == \
        env_data / "super_resolution/Set14/baboon.png"
    # in no task's folders, several exact matches are refused, naming a way to pick one
    with pytest.raises(ValueError, match=r"ambiguous: .*LIVE1/house.*e\.g\. \w+/house\)"):
        dataset.find_image(env_data, "house")
    assert dataset.find_image(env_data, "LIVE1/house") == env_data / "deblocking/LIVE1/house.png"
    # another set's exact names come before the task's own substrings (man, not manfishing)
    with pytest.raises(ValueError, match=r"ambiguous: [^(]*/man\.png, [^(]*/man\.png \("):
        dataset.find_image(env_data, "man", ("deblocking/classic5", "deblocking/LIVE1"))


# ---------------------------------------------------------------- downloader

def test_fetch_verifies_and_converts(served, tmp_path):
    rows, _, base, requests, pixels = served
    dest = tmp_path / "dest"
    assert fetch_mod.fetch(rows, dest, base) == {"downloaded": 3, "present": 0, "failed": 0}
    assert files_under(dest) == {r["path"] for r in rows}  # no temporaries left
    for r in rows:
        assert sha((dest / r["path"]).read_bytes()) == r["sha256"]
    with Image.open(dest / "synthetic/tiny.png") as im:
        assert im.format == "PNG" and np.array_equal(np.asarray(im), pixels)
    assert sorted(requests) == sorted(
        "/" + fetch_mod.source_url(r, base).split("/", 3)[3] for r in rows)


def test_second_run_downloads_nothing(served, tmp_path, capsys):
    rows, _, base, requests, _ = served
    dest = tmp_path / "dest"
    fetch_mod.main(["all", "--dest", str(dest), "--base-url", base], rows=rows)
    n = len(requests)
    assert n == 3
    assert fetch_mod.main(["all", "--dest", str(dest), "--base-url", base], rows=rows) == 0
    assert len(requests) == n
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        "0 downloaded, 3 already present, 0 failed")
    # a local copy that fails its sha256 is said so, then downloaded again
    (dest / rows[0]["path"]).write_bytes(b"truncated")
    assert fetch_mod.main(["all", "--dest", str(dest), "--base-url", base], rows=rows) == 0
    out, err = capsys.readouterr()
    assert f"{rows[0]['path']}: the local copy fails its sha256 check" in err
    assert out.splitlines()[-1].startswith("1 downloaded, 2 already present, 0 failed")
    assert sha((dest / rows[0]["path"]).read_bytes()) == rows[0]["sha256"]


def test_corrupted_download_rejected(served, tmp_path, capsys):
    rows, root, base, _, _ = served
    bad = rows[0]
    data = bytearray((root / bad["path"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / bad["path"]).write_bytes(bytes(data))
    dest = tmp_path / "dest"
    code = fetch_mod.main(["all", "--dest", str(dest), "--base-url", base], rows=rows)
    out, err = capsys.readouterr()
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and bad["path"] in lines[0]
    assert bad["upstream_sha256"] in lines[0] and sha(bytes(data)) in lines[0]
    assert out.splitlines()[-1].startswith("2 downloaded, 0 already present, 1 failed")
    assert files_under(dest) == {r["path"] for r in rows[1:]}  # nothing bad, no temporaries


def test_missing_file_on_mirror(served, tmp_path, capsys):
    rows, root, base, _, _ = served
    (root / rows[1]["path"]).unlink()
    counts = fetch_mod.fetch(rows, tmp_path / "dest", base)
    assert counts == {"downloaded": 2, "present": 0, "failed": 1}
    assert "HTTP 404" in capsys.readouterr().err


def test_unreachable_fails_with_one_line(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago and is now closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "dest"
    env = dict(os.environ, no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")
    proc = launcher.run(["-m", "dataset.fetch", "denoising", "--dest", dest,
                         "--base-url", f"http://127.0.0.1:{port}", "--timeout", "5"],
                        cwd=REPO, env=env, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: cannot download http://127.0.0.1:{port}/denoising/")
    assert not dest.exists()  # no file and no folder left behind
