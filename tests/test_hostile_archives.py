"""Issue #25, "every result on disk is the result of what was asked", as a user meets it:
hostile pack archives for ``reproduce.py --unpack`` (built here with tarfile), a bad
``--timeout`` for ``python -m dataset.fetch``, and a numpy masked array given to
``tasks.restore``.  A refused unpack prints one ``error:`` line naming the archive, exits 2 and
leaves the output tree byte for byte as it was."""
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import launcher  # noqa: E402
import reproduce  # noqa: E402
from dataset import fetch as fetch_mod  # noqa: E402
from paper import pack as P  # noqa: E402
from paper import unpack as U  # noqa: E402

PY = sys.executable
PNG = U.PNG_SIGNATURE + b"\x00\x00\x00\rIHDR rest of a picture"
META = {"created": "2026-11-22T10:00:00+00:00", "torch": "2.4.0", "cuda": "12.4",
        "python": "3.11.7", "command": "python reproduce.py --budget-s 500 --pack pack.tar.gz",
        "dropped": [], "images": 1, "devices": ["NVIDIA H200"]}
RECORD = {"image": "img", "status": "ok", "device": "NVIDIA H200", "psnr": 31.2,
          "source": {"path": "img.png"}}
RUN = "runs/ours_seed0/img"


def _json(obj) -> bytes:
    return (json.dumps(obj, indent=1) + "\n").encode()


def good(**replace) -> dict:
    """The members of a pack as write_pack makes one (name -> bytes; None drops a member)."""
    members = {P.MANIFEST: _json(META), "denoising.md": b"# denoising\n| a |\n",
               f"{RUN}/summary.json": _json(RECORD), f"{RUN}/log.csv": b"iteration,loss\n0,1\n",
               f"{RUN}/output.png": PNG}
    members.update(replace)
    return {k: v for k, v in members.items() if v is not None}


def info(name, kind=tarfile.REGTYPE, size=0, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.linkname, ti.mode = kind, size, linkname, 0o644
    return ti


def write_tar(path: Path, members, encoding="utf-8", fmt=tarfile.PAX_FORMAT) -> Path:
    """A real .tar.gz: ``members`` is a dict name -> bytes or a list of (TarInfo, bytes|None)."""
    items = members.items() if isinstance(members, dict) else members
    with tarfile.open(path, "w:gz", format=fmt, encoding=encoding) as tar:
        for name, data in items:
            ti = name if isinstance(name, tarfile.TarInfo) else info(name, size=len(data))
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path


def snapshot(root: Path) -> dict:
    """Every path under ``root`` (hidden ones too): its kind and bytes or link target."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", p.read_bytes())
    return out


@pytest.fixture
def tree(tmp_path):
    """An output folder holding earlier results (what an unpack would replace)."""
    out = tmp_path / "paper"
    (out / "runs" / "ours_seed0" / "img").mkdir(parents=True)
    (out / "denoising.md").write_text("# old table\n")
    (out / RUN / "summary.json").write_text('{"status": "old"}\n')
    (out / "packs").mkdir()
    (out / "packs" / "20250101T000000+0000.json").write_text("{}\n")
    return out


def refused(archive: Path, out: Path, capsys, *words):
    """reproduce.py --unpack in process: exit 2, one error line naming the archive and the
    problem, the tree unchanged."""
    before = snapshot(out)
    status = reproduce.main(["--unpack", str(archive), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {archive}: "), err
    for w in words:
        assert w in err[0], err
    assert snapshot(out) == before
    return err[0]


def test_a_well_formed_pack_unpacks_over_earlier_results(tmp_path, tree):
    """The baseline the hostile cases differ from by one thing: it is accepted."""
    archive = write_tar(tmp_path / "p.tar.gz", good())
    written, meta = U.unpack(archive, tree)
    assert meta == META
    assert (tree / "denoising.md").read_bytes() == good()["denoising.md"]
    assert json.loads((tree / RUN / "summary.json").read_text()) == RECORD
    assert (tree / "packs" / "20261122T1000000000.json").read_bytes() == _json(META)
    assert (tree / "packs" / "20250101T000000+0000.json").exists()
    assert len(written) == 5
    assert not [p for p in snapshot(tree) if ".unpack-" in p]      # no staging left over


# --- the manifest -----------------------------------------------------------------------------

BAD_MANIFESTS = {
    "created is a list": (dict(META, created=["2026-11-22"]), "'created' is a list"),
    "created is a number": (dict(META, created=20261122), "'created' is a number"),
    "created is not a date": (dict(META, created="../../etc"), "not an ISO date"),
    "created is empty": (dict(META, created=""), "not an ISO date"),
    "no created": ({k: v for k, v in META.items() if k != "created"}, "no 'created'"),
    "command is a list": (dict(META, command=["python", "x"]), "'command' is a list"),
    "command is a number": (dict(META, command=3), "'command' is a number"),
    "command has a newline": (dict(META, command="python\nrm -rf"), "control character"),
    "dropped is a string": (dict(META, dropped="per-image PNGs"), "'dropped' is a string"),
    "dropped holds numbers": (dict(META, dropped=[1]), "'dropped' is a list holding a number"),
    "dropped is an object": (dict(META, dropped={"a": 1}), "'dropped' is an object"),
    "images is a string": (dict(META, images="1"), "'images' is a string"),
    "images is negative": (dict(META, images=-1), "'images' is a number, not a count"),
    "images is true": (dict(META, images=True), "'images' is true/false"),
    "images is fractional": (dict(META, images=1.5), "'images' is a number"),
    "images miscounted": (dict(META, images=3), "says 3 images"),
    "devices is a string": (dict(META, devices="cuda"), "'devices' is a string"),
    "devices holds null": (dict(META, devices=[None]), "'devices' is a list holding null"),
    "devices are not the records'": (dict(META, devices=["cpu"]), "names the devices"),
    "cuda is a number": (dict(META, cuda=12.4), "'cuda' is a number"),
    "torch is null": (dict(META, torch=None), "'torch' is null"),
    "an unknown field": (dict(META, extra=[1, 2]), "unknown field(s) 'extra'"),
    "a list": ([META], "is a list, not an object"),
    "a string": ("2026-11-22", "is a string, not an object"),
    "null": (None, "is null, not an object"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_hostile_manifest_is_one_line_and_writes_nothing(case, tmp_path, tree, capsys):
    meta, words = BAD_MANIFESTS[case]
    archive = write_tar(tmp_path / "p.tar.gz", good(**{P.MANIFEST: _json(meta)}))
    refused(archive, tree, capsys, P.MANIFEST, words)


@pytest.mark.parametrize("raw, words", [
    (b'{"created": NaN}', "NaN is not JSON"),
    (b'{"created": "2026-11-22", "created": "2027-01-01"}', "'created' is repeated"),
    (b'{"created": "2026-11-22"', "not valid JSON"),
    (b'\xff\xfe{"created": "2026-11-22"}', "not valid JSON"),
    (b"[" * 200_000 + b"]" * 200_000, "not valid JSON"),
], ids=["nan", "repeated key", "truncated", "not utf-8", "nested too deep"])
def test_a_manifest_that_is_not_strict_json_is_refused(raw, words, tmp_path, tree, capsys):
    archive = write_tar(tmp_path / "p.tar.gz", good(**{P.MANIFEST: raw}))
    refused(archive, tree, capsys, P.MANIFEST, words)


def test_no_manifest_or_an_oversized_one_is_refused(tmp_path, tree, capsys, monkeypatch):
    archive = write_tar(tmp_path / "p.tar.gz", good(**{P.MANIFEST: None}))
    refused(archive, tree, capsys, "no PACK.json")
    monkeypatch.setattr(U, "MANIFEST_BYTES", 100)
    archive = write_tar(tmp_path / "q.tar.gz", good())
    refused(archive, tree, capsys, "PACK.json is over")


# --- the entries --------------------------------------------------------------------------------

BAD_NAMES = {
    "component over 255 bytes": (f"runs/ours_seed0/{'i' * 256}/summary.json", "256 bytes"),
    "component over 255 bytes in UTF-8": ("runs/ours_seed0/" + "é" * 200 + "/log.csv",
                                          "400 bytes"),
    "path over 1000 characters": ("a/" * 600 + "x.md", "1204 characters"),
    "dot component": ("./denoising.md", "'.'"),
    "double slash": ("runs//ours_seed0/img/log.csv", "empty"),
    "trailing slash": ("denoising.md/", "empty"),
    "parent": ("runs/../../evil.md", "'..'"),
    "absolute": ("/tmp/evil.md", "absolute"),
    "hidden": (".evil.md", "hidden"),
    "hidden in runs": ("runs/ours_seed0/img/.x.json", "hidden"),
    "newline": ("a\nb.md", "control character"),
    "backslash": ("runs\\ours_seed0\\img\\log.csv", "backslash"),
    "outside the layout": ("runs/ours_seed0/img/extra/log.csv", "layout"),
    "a script": ("reproduce.py", "layout"),
}


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_an_entry_with_a_bad_name_is_refused(case, tmp_path, tree, capsys):
    name, words = BAD_NAMES[case]
    archive = write_tar(tmp_path / "p.tar.gz", {**good(), name: b"x"})
    refused(archive, tree, capsys, "unexpected entry", words)


def test_a_name_that_is_not_utf8_is_refused(tmp_path, tree, capsys):
    archive = write_tar(tmp_path / "p.tar.gz", {**good(), "caf\xe9.md": b"x"},
                        encoding="latin-1", fmt=tarfile.GNU_FORMAT)
    refused(archive, tree, capsys, "unexpected entry", "not UTF-8")


@pytest.mark.parametrize("entry, words", [
    (info("denoising.md", tarfile.SYMTYPE, linkname="/etc/passwd"), "a symbolic link"),
    (info(f"{RUN}/log.csv", tarfile.LNKTYPE, linkname="denoising.md"), "a hard link"),
    (info("runs/ours_seed0/img2", tarfile.DIRTYPE), "a folder"),
    (info("table.md", tarfile.FIFOTYPE), "a FIFO"),
    (info("table.md", tarfile.CHRTYPE), "a device"),
], ids=["symlink", "hardlink", "folder", "fifo", "device"])
def test_an_entry_that_is_not_a_regular_file_is_refused(entry, words, tmp_path, tree, capsys):
    members = [(info(n, size=len(d)), d) for n, d in good().items()] + [(entry, None)]
    archive = write_tar(tmp_path / "p.tar.gz", members)
    refused(archive, tree, capsys, "unexpected entry", words)


def test_a_member_twice_is_refused(tmp_path, tree, capsys):
    members = [(info(n, size=len(d)), d) for n, d in good().items()]
    members.append((info("denoising.md", size=4), b"evil"))
    archive = write_tar(tmp_path / "p.tar.gz", members)
    refused(archive, tree, capsys, "'denoising.md'", "twice")


@pytest.mark.parametrize("name, data, words", [
    ("denoising.md", b"\xff\xfe table", "not UTF-8 text"),
    (f"{RUN}/log.csv", b"iteration\n\xff\n", "not UTF-8 text"),
    (f"{RUN}/output.png", b"GIF89a", "not a PNG file"),
    (f"{RUN}/summary.json", b"[1, 2]", "must be an object, this is a list"),
    (f"{RUN}/summary.json", b'{"status": "ok"', "not valid JSON"),
    (f"{RUN}/summary.json", _json(dict(RECORD, device=7)), "'device' is a number"),
], ids=["md", "csv", "png", "record list", "record truncated", "record device"])
def test_a_member_whose_bytes_are_not_what_its_name_says_is_refused(name, data, words,
                                                                    tmp_path, tree, capsys):
    archive = write_tar(tmp_path / "p.tar.gz", good(**{name: data}))
    refused(archive, tree, capsys, repr(name), words)


def test_size_and_count_limits(tmp_path, tree, capsys, monkeypatch):
    monkeypatch.setattr(U, "MAX_MEMBERS", 3)
    refused(write_tar(tmp_path / "p.tar.gz", good()), tree, capsys, "more than 3 entries")
    monkeypatch.setattr(U, "MAX_MEMBERS", 100)
    monkeypatch.setattr(U, "UNPACKED_LIMIT", 50)
    refused(write_tar(tmp_path / "q.tar.gz", good()), tree, capsys, "expands to more than")


def test_a_truncated_or_foreign_archive_is_refused(tmp_path, tree, capsys):
    whole = write_tar(tmp_path / "p.tar.gz", good(**{f"{RUN}/output.png": PNG + os.urandom(
        50_000)})).read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[:len(whole) // 2])
    refused(tmp_path / "cut.tar.gz", tree, capsys, "not a readable pack")
    (tmp_path / "zip.tar.gz").write_bytes(b"PK\x03\x04 not a tar")
    refused(tmp_path / "zip.tar.gz", tree, capsys, "not a readable pack")
    refused(tmp_path / "missing.tar.gz", tree, capsys, "not a readable pack")
    refused(tmp_path, tree, capsys, "not a readable pack")          # a folder


# --- the tree -----------------------------------------------------------------------------------

def test_a_member_whose_target_is_an_existing_folder_writes_nothing(tmp_path, tree, capsys):
    """The partial write of the issue: log.csv comes fourth, after the manifest, the table and
    the record, which the old unpack had already written."""
    (tree / RUN / "log.csv").mkdir()
    (tree / RUN / "log.csv" / "keep.txt").write_text("mine\n")
    archive = write_tar(tmp_path / "p.tar.gz", good())
    refused(archive, tree, capsys, "log.csv is a folder", "nothing was written")


@pytest.mark.parametrize("blocker", ["runs", "runs/ours_seed0", RUN, "packs"])
def test_a_member_whose_parent_path_is_a_file_writes_nothing(blocker, tmp_path, tree, capsys):
    import shutil
    shutil.rmtree(tree / blocker)
    (tree / blocker).write_text("a file where the pack needs a folder\n")
    archive = write_tar(tmp_path / "p.tar.gz", good())
    refused(archive, tree, capsys, f"{tree / blocker}, which is a file", "nothing was written")


def test_a_target_that_is_a_symbolic_link_is_refused(tmp_path, tree, capsys):
    elsewhere = tmp_path / "elsewhere.md"
    elsewhere.write_text("not in the tree\n")
    (tree / "denoising.md").unlink()
    (tree / "denoising.md").symlink_to(elsewhere)
    refused(write_tar(tmp_path / "p.tar.gz", good()), tree, capsys, "symbolic link")
    assert elsewhere.read_text() == "not in the tree\n"


def test_an_output_path_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "paper"
    out.write_text("a file\n")
    archive = write_tar(tmp_path / "p.tar.gz", good())
    with pytest.raises(P.PackError, match="is a file, not a folder"):
        U.unpack(archive, out / "sub")
    assert out.read_text() == "a file\n"


def test_a_failed_move_puts_the_tree_back(tmp_path, tree, monkeypatch):
    """A failure after some files are in place (here the third move) restores what they
    replaced and removes what they added."""
    before = snapshot(tree)
    real, calls = os.replace, []

    def failing(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(U.os, "replace", failing)
    with pytest.raises(P.PackError, match="could not write .*No space left.*nothing was changed"):
        U.unpack(write_tar(tmp_path / "p.tar.gz", good()), tree)
    monkeypatch.setattr(U.os, "replace", real)
    assert len(calls) > 3                          # the two moved files were moved back
    assert snapshot(tree) == before


def test_a_full_disk_while_staging_writes_nothing(tmp_path, tree, monkeypatch):
    before = snapshot(tree)
    real, calls = os.fsync, []

    def full(fd):
        calls.append(fd)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return real(fd)

    monkeypatch.setattr(U.os, "fsync", full)
    with pytest.raises(P.PackError, match=r"img/log\.csv \(No space left on device\); nothing"):
        U.unpack(write_tar(tmp_path / "p.tar.gz", good()), tree)
    assert snapshot(tree) == before                # no staged file, no new folder


def test_a_refused_unpack_into_a_fresh_folder_creates_nothing_inside(tmp_path, capsys):
    out = tmp_path / "fresh"
    out.mkdir()
    archive = write_tar(tmp_path / "p.tar.gz", good(**{P.MANIFEST: _json(dict(META,
                                                                             images="1"))}))
    refused(archive, out, capsys, "'images' is a string")
    assert list(out.iterdir()) == []


def test_reproduce_unpack_of_a_hostile_pack_exits_2_with_one_line(tmp_path, tree):
    """The real command line, in a subprocess: no traceback, exit 2, the tree unchanged."""
    (tree / RUN / "log.csv").mkdir()
    archive = write_tar(tmp_path / "p.tar.gz",
                        good(**{P.MANIFEST: _json(dict(META, dropped="per-image PNGs"))}))
    before = snapshot(tree)
    env = dict(os.environ, DIP_DATA_DIR=str(tmp_path / "no-data"))
    p = launcher.run([ROOT / "reproduce.py", "--unpack", archive, "--out", tree], env=env,
                     timeout=300)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    err = p.stderr.strip().splitlines()
    assert err == [f"error: {archive}: {P.MANIFEST} field 'dropped' is a string, not a list of "
                   "strings"]
    assert snapshot(tree) == before


# --- python -m dataset.fetch --timeout -------------------------------------------------------

@pytest.mark.parametrize("value", ["-1", "0", "-0.0", "nan", "inf", "-inf", "ten"])
def test_fetch_refuses_a_timeout_that_is_not_a_positive_number(value, tmp_path, capsys):
    dest = tmp_path / "images"
    with pytest.raises(SystemExit) as e:   # argparse's exit, before any download
        fetch_mod.main(["denoising", "--dest", str(dest), "--base-url", "http://127.0.0.1:9",
                        f"--timeout={value}"])   # (a bare -inf would read as an option)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m dataset.fetch: error: argument --timeout: ")
    assert ("positive finite number" if value != "ten" else "not a number") in err[-1]
    assert not any("Traceback" in line for line in err)
    assert not dest.exists()


def test_fetch_takes_a_positive_timeout_and_goes_on_to_download(tmp_path, capsys):
    """The same command with a good timeout gets past the arguments (to a closed local port)."""
    dest = tmp_path / "images"
    status = fetch_mod.main(["denoising", "--dest", str(dest), "--base-url",
                             "http://127.0.0.1:9", "--timeout", "0.5"])
    assert status == 1
    assert "cannot download http://127.0.0.1:9/denoising/" in capsys.readouterr().err
    assert not [p for p in dest.rglob("*") if p.is_file()]


def test_fetch_command_line_with_a_negative_timeout(tmp_path):
    p = launcher.run(["-m", "dataset.fetch", "denoising", "--dest", tmp_path / "d",
                      "--timeout", "-1"], timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1] == ("python -m dataset.fetch: error: argument "
                                                 "--timeout: '-1': a positive finite number "
                                                 "of seconds is required")


# --- tasks.restore with a masked array ------------------------------------------------------

def _masked(shape=(32, 32)):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    mask = np.zeros(shape, bool)
    mask[4:8, 4:8] = True
    return np.ma.masked_array(a, mask=mask)


@pytest.mark.parametrize("task", ["denoising", "inpainting"])
def test_restore_refuses_a_masked_array(task):
    from tasks import restore
    with pytest.raises(ValueError) as e:
        restore(_masked(), task=task, iters=2)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("array image: a masked array with 16 of 1024 values masked")
    assert "np.ma.getdata(a)" in msg and "mask=" in msg


def test_restore_refuses_a_masked_colour_array():
    from tasks import restore
    m = _masked((32, 32, 3))
    with pytest.raises(ValueError, match="48 of 3072 values masked"):
        restore(m, task="denoising", iters=2)


def test_a_masked_array_with_nothing_masked_is_its_plain_array():
    from utils.inmemory import from_memory
    a = _masked()
    plain = np.ma.getdata(a)
    img, like = from_memory(np.ma.masked_array(plain, mask=False))
    ref, ref_like = from_memory(plain)
    assert like == ref_like
    assert np.array_equal(img.array, ref.array)
