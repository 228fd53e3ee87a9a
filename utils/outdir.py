"""Where a run writes, checked before it writes anything.

* ``unique_names``: each input gets its own output folder, also when two inputs share a stem
  (``a.png`` and ``a.jpg``, or ``a.png`` in two folders of one glob).
* ``check_clashes``: every file the run reads (images, masks) is compared, by resolved path and
  by inode, with every place it writes (the per-image folders, the summary table); a clash is an
  ``ImageError`` before any work, so an input can never be overwritten.
* ``make_out_dir`` / ``remove_if_empty``: the output folder is created only as deep as needed and
  removed again if the run ends without writing anything.
* ``staged``: an image's outputs are written to a hidden folder beside its own and moved into
  place when all of them are written (``summary.json`` last, the mark of a finished image); on a
  full disk or an interrupt the hidden folder is removed and the image's folder is as it was.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections import Counter
from pathlib import Path

from utils.imageio import ImageError

SUMMARY_FILES = ("summary.md", "summary.csv")
FINISHED_MARK = "summary.json"   # moved into place last


class WriteError(ImageError):
    """The outputs of an image could not be written (full disk, permissions); nothing of that
    image was kept."""


def _safe(name: str) -> str:
    """A folder name that stays inside the output folder and on one line: control characters
    become ``_``, leading dots go (``..`` would climb out; hidden names are the run's own), and a
    summary table's name gets ``_image``."""
    name = "".join("_" if ord(c) < 32 or c in "/\\" else c for c in name).lstrip(".")
    name = name or "image"
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
        raise ImageError(out_root, f"output directory cannot be written ({e.strerror or e})")
    return missing


def remove_if_empty(folders) -> None:
    """Remove the given folders (deepest first) where they are empty."""
    for d in folders:
        with contextlib.suppress(OSError):
            d.rmdir()


@contextlib.contextmanager
def staged(out_root, name: str):
    """Write an image's outputs into a hidden folder, then move them into ``out_root/name``.

        with staged(out_root, "kodim01") as folder:
            save(folder / "output.png", ...)

    The files move into place (``summary.json`` last) only when the block ends normally; on any
    error the hidden folder is removed, ``out_root/name`` is left as it was, and an OSError
    becomes a one-line ``WriteError``."""
    out_root = Path(out_root)
    stage = out_root / f".{name}.partial-{os.getpid()}"
    final = out_root / name
    created = not final.exists()
    try:
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        yield stage
        final.mkdir(exist_ok=True)
        files = sorted(stage.iterdir(), key=lambda f: (f.name == FINISHED_MARK, f.name))
        for f in files:
            os.replace(f, final / f.name)
    except OSError as e:
        if created:
            remove_if_empty([final])
        raise WriteError(final, f"cannot write the outputs ({e.strerror or e}); nothing of "
                                "this image was kept") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
