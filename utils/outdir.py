"""Where a run writes, checked before it writes anything.

* ``unique_names``: each input gets its own output folder, also when two inputs share a stem
  (``a.png`` and ``a.jpg``, or ``a.png`` in two folders of one glob).
* ``check_clashes``: every file the run reads (images, masks) is compared, by resolved path and
  by inode, with every place it writes (the per-image folders, the summary table); a clash is an
  ``ImageError`` before any work, so an input can never be overwritten.
* ``make_out_dir`` / ``remove_if_empty``: the output folder is created only as deep as needed and
  removed again if the run ends without writing anything.
* ``staged``: an image's outputs are written to a hidden folder beside its own and moved into
  place when all of them are written, all or nothing: every target is checked before the first
  move, the earlier run's files are set aside and removed only once the new set is in place
  (``summary.json`` last, the mark of a finished image), so no stale file of an earlier run
  stays beside the new ones; on a full disk, an interrupt or a failed move the earlier files are
  put back and the image's folder is as it was.
* ``clean_leftovers``: the hidden folders of a write that was killed (``kill -9``) are removed
  by the next run on the same output folder (those of a live process are left alone).
* ``locked``: an advisory lock on a file of the output folder (the shared summary tables).
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

from utils.imageio import ImageError

SUMMARY_FILES = ("summary.md", "summary.csv")
FINISHED_MARK = "summary.json"   # moved into place last
OUTPUT_SUFFIXES = (".png", ".csv", ".json")   # what a run writes into an image's folder
# an image folder's name in bytes: its hidden staging folder ``.NAME.partial-PID`` must stay
# within the 255 bytes of a file name
MAX_NAME_BYTES = 200
LEFTOVERS = (".partial-", ".old-")


class WriteError(ImageError):
    """The outputs of an image could not be written (full disk, permissions); nothing of that
    image was kept."""


def _safe(name: str) -> str:
    """A folder name that stays inside the output folder and on one line: control characters
    become ``_``, leading dots go (``..`` would climb out; hidden names are the run's own), a
    summary table's name gets ``_image``, and a name longer than ``MAX_NAME_BYTES`` is cut (on a
    character boundary) and given 8 hex digits of its hash, so that two long names stay apart."""
    name = "".join("_" if ord(c) < 32 or c in "/\\" else c for c in name).lstrip(".")
    name = name or "image"
    if len(name.encode()) > MAX_NAME_BYTES:
        tag = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = name.encode()[:MAX_NAME_BYTES - 9].decode(errors="ignore") + "_" + tag
    return f"{name}_image" if name in SUMMARY_FILES else name


def unique_names(images) -> list[str]:
    """Give every image (``LoadedImage``) a distinct, safe ``name`` (its output folder), in
    place: the stem; where stems clash, ``stem_ext``; then ``parent_stem_ext``; then a number.
    Returns one line per renamed image (for the user)."""
    before = [im.name for im in images]
    for im in images:
        im.name = _safe(im.name)
    steps = (lambda im: f"{im.name}_{im.path.suffix.lstrip('.').lower()}",
             lambda im: _safe(f"{im.path.parent.name}_{im.name}"))
    for step in steps:
        count = Counter(im.name for im in images)
        for im in images:
            if count[im.name] > 1 and im.path is not None:
                im.name = step(im)
    taken, count = set(), Counter(im.name for im in images)
    for im in images:
        if count[im.name] > 1 or im.name in taken:
            k, base = 1, im.name
            while f"{base}_{k}" in taken or count[f"{base}_{k}"]:
                k += 1
            im.name = f"{base}_{k}"
        taken.add(im.name)
    return [f"{im.path or old}: its outputs go to {im.name}/ (" + (
        "its name is too long for a folder)" if len(old.encode()) > MAX_NAME_BYTES else
        "its name cannot be a folder name)" if _safe(old) != old else
        "another input has the same name)") for im, old in zip(images, before) if im.name != old]


def _existing_files(folder: Path):
    return [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []


def check_clashes(out_root, reads: dict) -> None:
    """Raise ImageError if a file the run reads is a place it writes.

    reads: ``{image name: [paths that image's run reads]}``.  The run writes every file directly
    in ``out_root/<name>/`` and the summary tables in ``out_root``: an input inside one of those
    folders, at a summary's path, or the same file (hard or symbolic link) as one already there
    is refused."""
    out_root = Path(out_root)
    folders = {name: (out_root / name).resolve() for name in reads}
    summaries = [(out_root / f).resolve() for f in SUMMARY_FILES]
    written = [f for d in folders.values() for f in _existing_files(d)]
    written += [f for f in summaries if f.is_file()]
    for name, d in folders.items():
        if d.exists() and not d.is_dir():
            raise ImageError(out_root / name, "is a file where this run would put the outputs "
                                              f"of image {name}: choose another --out")
    for name, paths in reads.items():
        for p in paths:
            p = Path(p)
            real = p.resolve()
            for other, d in folders.items():
                if real.parent == d:
                    raise ImageError(p, f"this input is inside {out_root / other}, the folder "
                                        "this run writes the outputs of an image to: choose "
                                        "another --out")
            if real in summaries:
                raise ImageError(p, "this input is where the run writes its summary table: "
                                    "choose another --out")
            for f in written:
                with contextlib.suppress(OSError):
                    if os.path.samefile(p, f):
                        raise ImageError(p, f"this input is the same file as {f}, which the "
                                            "run writes: choose another --out")


def make_out_dir(out_root) -> list[Path]:
    """Create ``out_root`` (and missing parents) and check it can be written; return the folders
    created, deepest first (for ``remove_if_empty``).  ImageError if it cannot be written."""
    out_root = Path(out_root)
    missing = []
    p = out_root
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        probe = out_root / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        remove_if_empty(missing)
        above = next((q for q in (out_root, *out_root.parents) if q.exists()), out_root)
        if above.exists() and not above.is_dir():      # --out, or a folder above it, is a file
            why = "it is a file" if above == out_root else f"{above} is a file"
            raise ImageError(out_root, f"output directory cannot be created: {why}") from None
        raise ImageError(out_root, f"output directory cannot be written ({e.strerror or e})")
    return missing


def remove_if_empty(folders) -> None:
    """Remove the given folders (deepest first) where they are empty."""
    for d in folders:
        with contextlib.suppress(OSError):
            d.rmdir()


def read_record(folder) -> dict | None:
    """The summary.json of an image folder, or None (missing, unreadable or not an object)."""
    try:
        rec = json.loads((Path(folder) / FINISHED_MARK).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False     # this process's own leftover (an earlier image of the same name)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:      # another user's process: alive
        return True
    return True


def clean_leftovers(out_root, name: str = "*") -> list[Path]:
    """Remove the hidden folders that a killed write of image ``name`` (every image with
    ``*``) left in ``out_root``: ``.NAME.partial-PID`` and ``.NAME.old-PID`` of a process that no
    longer runs.  Returns what was removed."""
    out_root = Path(out_root)
    pattern = "*" if name == "*" else glob.escape(name)
    removed = []
    for kind in LEFTOVERS:
        for d in out_root.glob(f".{pattern}{kind}*"):
            pid = d.name.rpartition(kind)[2]
            if d.is_dir() and not d.is_symlink() and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
    return removed


def earlier_outputs(final: Path) -> list[Path]:
    """The files an earlier run wrote into an image folder: those its summary.json lists, else
    (a record from before the list) every file of the kinds a run writes."""
    if not final.is_dir():
        return []
    listed = (read_record(final) or {}).get("outputs")
    files = [f for f in final.iterdir() if f.is_file() and not f.is_symlink()]
    if isinstance(listed, list):
        names = {str(n) for n in listed} | {FINISHED_MARK}
        return [f for f in files if f.name in names]
    return [f for f in files if f.suffix.lower() in OUTPUT_SUFFIXES]


def _swap(stage: Path, final: Path, backup: Path) -> None:
    """Move the staged files into ``final`` all or nothing: every target checked first, the
    earlier run's files set aside in ``backup``, the new ones moved in (``summary.json`` last),
    and on any failure the new ones taken out and the earlier ones put back."""
    new = sorted(stage.iterdir(), key=lambda f: (f.name == FINISHED_MARK, f.name))
    if final.exists() and not final.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{final.name} is a file, not a folder")
    for f in new:   # a rename replaces a file or a link, but not a folder
        t = final / f.name
        if t.is_dir() and not t.is_symlink():
            raise IsADirectoryError(errno.EISDIR, f"{t.name} there is a folder")
    final.mkdir(exist_ok=True)
    old = earlier_outputs(final)
    backup.mkdir()
    moved_old, moved_new = [], []
    try:
        for f in old:
            os.replace(f, backup / f.name)
            moved_old.append(f.name)
        for f in new:
            os.replace(f, final / f.name)
            moved_new.append(f.name)
    except BaseException:
        for n in moved_new:
            with contextlib.suppress(OSError):
                (final / n).unlink()
        for n in moved_old:
            with contextlib.suppress(OSError):
                os.replace(backup / n, final / n)
        with contextlib.suppress(OSError):
            backup.rmdir()      # kept (for the next run's clean-up) if a file could not go back
        raise
    shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def staged(out_root, name: str):
    """Write an image's outputs into a hidden folder, then move them into ``out_root/name``.

        with staged(out_root, "kodim01") as folder:
            save(folder / "output.png", ...)

    The files move into place only when the block ends normally, and then all or nothing
    (``_swap``: the earlier run's files are replaced as a set, none of them left stale); on any
    error the hidden folder is removed, ``out_root/name`` is left as it was, and an OSError
    becomes a one-line ``WriteError``."""
    out_root = Path(out_root)
    clean_leftovers(out_root, name)
    stage = out_root / f".{name}.partial-{os.getpid()}"
    final = out_root / name
    created = not final.exists()
    try:
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        yield stage
        _swap(stage, final, out_root / f".{name}.old-{os.getpid()}")
    except OSError as e:
        if created:
            remove_if_empty([final])
        raise WriteError(final, f"cannot write the outputs ({e.strerror or e}); nothing of "
                                "this image was kept") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def locked(path):
    """An exclusive advisory lock on ``path`` (created if missing) for the block: two runs on
    one output folder update its summary tables one after the other.  Where ``fcntl`` is missing
    (Windows) the block runs unlocked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
