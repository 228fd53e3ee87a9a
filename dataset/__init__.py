"""The paper's test images: where they live and how task scripts find them.

The images are never committed. ``dataset/manifest.tsv`` lists every file (its local path,
a commit-pinned upstream URL and sha256 hashes); ``python -m dataset.fetch <group>``
downloads them into this folder, or a script can point at another copy with ``--data-dir``
or the ``DIP_DATA_DIR`` environment variable.
"""
from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

DATA_ENV = "DIP_DATA_DIR"
PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST_PATH = PACKAGE_DIR / "manifest.tsv"
COLUMNS = ("path", "upstream_url", "upstream_sha256", "sha256")
MASK_SUFFIX = "_mask"

__all__ = ["DATA_ENV", "PACKAGE_DIR", "MANIFEST_PATH", "read_manifest",
           "manifest", "groups", "select", "resolve_data_dir", "task_images", "find_image"]


def read_manifest(path: str | os.PathLike = MANIFEST_PATH) -> list[dict]:
    """Parse a manifest TSV (header ``path upstream_url upstream_sha256 sha256``)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [dict(r) for r in csv.DictReader(f, delimiter="\t")]
    for r in rows:
        missing = [c for c in COLUMNS if not r.get(c) and c != "sha256"]
        if missing:
            raise ValueError(f"{path}: row {r.get('path')!r} lacks {', '.join(missing)}")
    return rows


@functools.lru_cache(maxsize=1)
def _cached_manifest() -> tuple[tuple[tuple[str, str], ...], ...]:
    return tuple(tuple(r.items()) for r in read_manifest())


def manifest() -> list[dict]:
    """The project's manifest rows, in file order (fresh dicts, safe to modify)."""
    return [dict(r) for r in _cached_manifest()]


def groups(rows: list[dict] | None = None) -> list[str]:
    """Top-level groups (first path component), in manifest order."""
    rows = manifest() if rows is None else rows
    return list(dict.fromkeys(r["path"].split("/", 1)[0] for r in rows))


def select(rows: list[dict], group: str) -> list[dict]:
    """Rows of ``group``: ``all``, a top-level group or any folder prefix (``inpainting/text``)."""
    if group == "all":
        return list(rows)
    prefix = group.strip("/") + "/"
    return [r for r in rows if r["path"].startswith(prefix)]


def _holds_data(folder: Path) -> bool:
    return any((folder / r["path"]).is_file() for r in manifest())


def resolve_data_dir(cli_value: str | os.PathLike | None = None) -> Path | None:
    """Where the images are: ``--data-dir``, else ``$DIP_DATA_DIR``, else this package's folder.

    An explicit value (option or variable) is returned even if missing so that the caller can
    report it; the package folder is used only if it holds at least one manifest image.
    Returns None when no location is known to hold data.
    """
    for value in (cli_value, os.environ.get(DATA_ENV)):
        if value:
            return Path(value).expanduser().absolute()
    return PACKAGE_DIR if _holds_data(PACKAGE_DIR) else None


def _is_mask(path: str) -> bool:
    return Path(path).stem.endswith(MASK_SUFFIX)


def task_images(data_dir: str | os.PathLike, group: str, subset=None) -> list[Path]:
    """Existing images of a manifest group under ``data_dir``, in manifest order, masks excluded.

    ``group`` is a group or folder prefix (``denoising``, ``inpainting/bernoulli``,
    ``super_resolution/Set5``). ``subset`` narrows it: a string names a sub-folder
    (``task_images(d, "super_resolution", "Set5")``), any other iterable lists image stems to
    keep (case-insensitive, e.g. ``["kodim01", "kodim02"]``).
    """
    data_dir = Path(data_dir)
    if isinstance(subset, str):
        group, subset = f"{group.strip('/')}/{subset.strip('/')}", None
    keep = None if subset is None else {s.lower() for s in subset}
    out = []
    for r in select(manifest(), group):
        p = data_dir / r["path"]
        if _is_mask(r["path"]) or not p.is_file():
            continue
        if keep is None or p.stem.lower() in keep:
            out.append(p)
    return out


def find_image(data_dir: str | os.PathLike, name: str, groups=()) -> Path | None:
    """An existing manifest image by name, case-insensitive.

    ``groups`` (a task's ``data_groups``) come first: an exact stem match there is the answer
    (the first in manifest order), downloaded or not (None when not: ``house`` for inpainting
    is ``inpainting/bernoulli/house.png``, never another task's image of that name); then the
    one stem of the task's present images that contains ``name`` (``House`` for denoising is
    ``image_House256rgb``); then an exact match among the other images present (``man`` for
    deblocking, before its ``manfishing`` and ``woman``); then a stem containing ``name``
    (``kodim0`` is ambiguous, ``Peppers512`` is not).  A ``folder/stem`` name such as
    ``Set14/baboon`` limits the search to paths ending that way.  Returns None when nothing
    matches.

    Raises ValueError when ``name`` matches several images outside the task's exact matches
    (``house`` in inpainting/bernoulli and deblocking/LIVE1, for a task with neither), because
    picking one would fit an image the user may not mean, and None would suggest the data are
    missing.
    """
    data_dir = Path(data_dir)
    folder, _, stem = name.strip("/").lower().rpartition("/")
    rows = manifest()
    if folder:  # keep rows whose folder ends with the given folder part
        rows = [r for r in rows
                if ("/" + str(Path(r["path"]).parent).lower()).endswith("/" + folder)]
    mine = [r for r in rows if any(r["path"].startswith(g.rstrip("/") + "/") for g in groups)]
    here = [r for r in rows if (data_dir / r["path"]).is_file()]
    own = [r for r in here if r in mine]
    other = [r for r in here if r not in mine]

    def exact(pool):
        return [r["path"] for r in pool if Path(r["path"]).stem.lower() == stem]

    def part(pool):
        return [r["path"] for r in pool
                if stem in Path(r["path"]).stem.lower() and not _is_mask(r["path"])]
    # (hits, what several mean): the first; go on to the next stage; ambiguous
    for hits, several in ((exact(mine), "first"), (part(own), "next"), (exact(other), "refuse"),
                          (part(own), "refuse"), (part(other), "refuse")):
        if len(hits) > 1 and several == "next":
            continue
        if len(hits) > 1 and several == "refuse":
            example = "/".join(Path(hits[0]).with_suffix("").parts[-2:])
            raise ValueError(f"image name {name!r} is ambiguous: {', '.join(hits)} (name one "
                             f"as folder/name, e.g. {example})")
        if hits:
            return data_dir / hits[0] if (data_dir / hits[0]).is_file() else None
    return None
