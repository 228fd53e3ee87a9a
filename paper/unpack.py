"""The unpacking of a lease's archive into the tree (``reproduce.py --unpack FILE``), made by
``paper.pack.write_pack``: everything is checked before the first write (entries, names,
``PACK.json``, the members' contents, every target in the tree), any problem is one
``PackError`` line naming the archive, and the files are staged beside their targets and moved
into place, put back on a failure midway.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import stat
import tarfile
import uuid
from pathlib import Path, PurePosixPath

from paper.pack import MANIFEST, TOP_SUFFIXES, PackError

UNPACKED_LIMIT = 1024 ** 3  # bytes an archive may expand to

# What unpacking accepts (everything is checked before the first write).
NAME_BYTES = 255            # bytes of one component of a member's path (the usual NAME_MAX)
PATH_CHARS = 1000           # characters of a member's path
TARGET_BYTES = 4095         # bytes of a path written under the output folder (PATH_MAX less 1)
MAX_MEMBERS = 100_000       # entries an archive may hold
MANIFEST_BYTES = 1024 ** 2  # bytes of PACK.json
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PACK.json as write_pack writes it (the first packs had no 'dropped'): only 'created' is
# required; every field present must have its type.
_FIELDS = {"created": "string", "torch": "string", "cuda": "string or null", "python": "string",
           "command": "string", "dropped": "list of strings", "images": "count",
           "devices": "list of strings"}


def _show(name: str, width: int = 80) -> str:
    """A member's name for a one-line message (escaped, shortened)."""
    r = repr(name)
    return r if len(r) <= width else r[:width - 4] + "...'"


def _kind(v) -> str:
    """A JSON value's type in words."""
    return {dict: "an object", list: "a list", str: "a string", int: "a number",
            float: "a number", bool: "true/false", type(None): "null"}.get(type(v),
                                                                          type(v).__name__)


def _printable(text: str) -> bool:
    return not any(ord(c) < 32 or ord(c) == 127 for c in text)


def _layout(parts: list) -> bool:
    """Top-level tables, figures and the manifest, and files of runs/<exp>/<image>/."""
    suffix = PurePosixPath(parts[-1]).suffix
    if len(parts) == 1:
        return suffix in TOP_SUFFIXES or parts[0] == MANIFEST
    return len(parts) == 4 and parts[0] == "runs" and suffix in (".json", ".csv", ".png")


def _name_problem(name: str) -> str | None:
    """Why an archive path may not be unpacked, or None: it must be a canonical relative POSIX
    path (no empty, '.', '..' or hidden component, no backslash or control character, UTF-8,
    components of at most NAME_BYTES bytes, at most PATH_CHARS characters) of the layout."""
    if not name:
        return "an empty name"
    if len(name) > PATH_CHARS:
        return f"a path of {len(name)} characters (at most {PATH_CHARS})"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "a name that is not UTF-8"
    if not _printable(name) or "\\" in name:
        return "a control character or a backslash in the name"
    if name.startswith("/"):
        return "an absolute path"
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            return "an empty, '.' or '..' component"
        if len(part.encode("utf-8")) > NAME_BYTES:
            return f"a component of {len(part.encode('utf-8'))} bytes (at most {NAME_BYTES})"
        if part.startswith("."):
            return "a hidden name (starting with '.')"
    if not _layout(parts):
        return "not a file of the pack layout (top-level *.md, *.csv, *.png; " \
               "runs/<experiment>/<image>/*.json, *.csv, *.png)"
    return None


def _allowed(name: str) -> bool:
    """Archive paths unpacking may write: top-level files, and files of runs/<exp>/<image>/."""
    return _name_problem(name) is None


def _entry_kind(m: tarfile.TarInfo) -> str | None:
    """None for a regular file, else what the entry is."""
    if m.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        return None
    for test, what in ((m.issym, "a symbolic link"), (m.islnk, "a hard link"),
                       (m.isdir, "a folder"), (m.isfifo, "a FIFO"),
                       (lambda: m.ischr() or m.isblk(), "a device"),
                       (m.issparse, "a sparse file")):
        if test():
            return what
    return f"an entry of tar type {m.type!r}"


def _json(data: bytes, constants: bool):
    """Parse JSON bytes (UTF-8, no repeated key; NaN/Infinity only where ``constants``)."""
    def pairs(items):
        seen = set()
        for k, _ in items:
            if k in seen:
                raise ValueError(f"the key {k!r} is repeated")
            seen.add(k)
        return dict(items)

    def constant(c):
        raise ValueError(f"{c} is not JSON")

    kw = {} if constants else {"parse_constant": constant}
    return json.loads(data.decode("utf-8"), object_pairs_hook=pairs, **kw)


def _content_problem(name: str, data: bytes):
    """(why the member's bytes are not what its name says or None, its record or None)."""
    suffix = PurePosixPath(name).suffix
    if suffix == ".png":
        return (None if data.startswith(PNG_SIGNATURE) else "not a PNG file"), None
    if suffix in (".md", ".csv"):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return "not UTF-8 text", None
        return None, None
    try:   # .json under runs/ (NaN allowed, as json.loads reads records back)
        rec = _json(data, constants=True)
    except (ValueError, RecursionError) as e:
        return f"not valid JSON ({str(e).splitlines()[0] if str(e) else type(e).__name__})", None
    if not isinstance(rec, dict):
        return f"a JSON record must be an object, this is {_kind(rec)}", None
    if name.endswith("/summary.json") and not isinstance(rec.get("device", "?"), str):
        return f"its 'device' is {_kind(rec['device'])}, not a string", None
    return None, rec


def _manifest_problem(meta) -> str | None:
    """Why PACK.json is not one write_pack writes, or None."""
    if not isinstance(meta, dict):
        return f"is {_kind(meta)}, not an object"
    unknown = [k for k in meta if k not in _FIELDS]
    if unknown:
        return (f"has unknown field(s) {', '.join(map(_show, unknown))} (it holds "
                f"{', '.join(_FIELDS)})")
    if "created" not in meta:
        return "has no 'created' field"
    for k, v in meta.items():
        want = _FIELDS[k]
        if want == "count":
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        elif want == "list of strings":
            ok = isinstance(v, list) and all(isinstance(x, str) and _printable(x) for x in v)
        else:
            ok = (isinstance(v, str) and _printable(v)) or (v is None and "null" in want)
        if not ok:
            got = _kind(v)
            if isinstance(v, list) and want == "list of strings":
                got = "a list holding " + next(_kind(x) if not isinstance(x, str) else
                                               "a control character" for x in v
                                               if not (isinstance(x, str) and _printable(x)))
            elif isinstance(v, str) and "string" in want and "list" not in want:
                got = "a string with a control character"
            return f"field '{k}' is {got}, not a {want}" + (" ≥ 0" if want == "count" else "")
    try:
        datetime.datetime.fromisoformat(meta["created"])
    except ValueError:
        return f"field 'created' is not an ISO date and time ({_show(meta['created'])})"
    return None


def _tree_problem(out: Path, targets: list) -> str | None:
    """Why writing ``targets`` (archive name, path) under ``out`` would not just add or replace
    regular files, or None: a target that is a folder, a link or not a regular file, a parent
    path that is a file, a path too long, or a folder that is not writable."""
    anc = next((p for p in [out, *out.parents] if os.path.lexists(p)), Path("."))
    if not anc.is_dir():
        return f"the output path {anc} is a file, not a folder"
    for name, target in targets:
        deepest, q = anc, out
        for part in name.split("/")[:-1]:
            q = q / part
            if os.path.lexists(q):
                if not q.is_dir():
                    return f"{_show(name)} would be written under {q}, which is a file, not a " \
                           "folder"
                deepest = q
        if len(os.fsencode(str(target))) > TARGET_BYTES:
            return f"the path of {_show(name)} under {out} would be over {TARGET_BYTES} bytes"
        if os.path.lexists(target):
            if target.is_symlink():
                return f"{target} is a symbolic link (unpacking replaces regular files only)"
            if target.is_dir():
                return f"{target} is a folder in the tree, where the archive has the file " \
                       f"{_show(name)} (move the folder away first)"
            if not stat.S_ISREG(target.stat().st_mode):
                return f"{target} is not a regular file (unpacking replaces regular files only)"
            deepest = target.parent
        if not os.access(deepest, os.W_OK | os.X_OK):
            return f"{deepest} is not writable"
    return None


def _read(path) -> tuple[dict, list]:
    """Every member of the archive as name -> bytes (the entries checked before any is read)."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            entries, names, total = [], set(), 0
            for m in tar:
                if len(entries) >= MAX_MEMBERS:
                    raise PackError(f"{path}: more than {MAX_MEMBERS} entries")
                why = _entry_kind(m) or _name_problem(m.name)
                if why is None and m.name in names:
                    why = "it is in the archive twice"
                if why:
                    raise PackError(f"{path}: unexpected entry {_show(m.name)}: {why}")
                names.add(m.name)
                total += m.size
                if total > UNPACKED_LIMIT:
                    raise PackError(f"{path}: expands to more than "
                                    f"{UNPACKED_LIMIT / 2**30:.0f} GiB")
                entries.append(m)
            files = {m.name: tar.extractfile(m).read() for m in entries}
    except (OSError, tarfile.TarError, EOFError, UnicodeError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PackError(f"{path}: not a readable pack ({msg})") from None
    return files, [m.name for m in entries]


def read_manifest(path) -> dict:
    """The archive's ``PACK.json``, checked as ``unpack`` checks it; nothing is written."""
    return _manifest(path, *_read(path))[0]


def _manifest(path, files: dict, order: list) -> tuple[dict, bytes]:
    """Take ``PACK.json`` out of ``files`` and ``order``: (its checked content, its bytes)."""
    if MANIFEST not in files:
        raise PackError(f"{path}: no {MANIFEST} (not made by reproduce.py --pack)")
    manifest = files.pop(MANIFEST)
    order.remove(MANIFEST)
    if len(manifest) > MANIFEST_BYTES:
        raise PackError(f"{path}: {MANIFEST} is over {MANIFEST_BYTES // 1024} KiB")
    try:
        meta = _json(manifest, constants=False)
    except (ValueError, RecursionError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PackError(f"{path}: {MANIFEST} is not valid JSON ({msg})") from None
    why = _manifest_problem(meta)
    if why:
        raise PackError(f"{path}: {MANIFEST} {why}")
    return meta, manifest


def unpack(path, out: Path) -> tuple[list[Path], dict]:
    """Write the archive's files under ``out`` (the manifest goes to
    ``out/packs/<created>.json``); returns (the paths written, the manifest).

    Everything is checked before the first write, and any problem is a one-line PackError
    with nothing written: every entry a regular file at an allowed path (``_name_problem``)
    and in the archive once, at most ``UNPACKED_LIMIT`` bytes in all; ``PACK.json`` present,
    strict JSON with write_pack's fields and their types, its image count and devices those of
    the records; every member's bytes what its name says (PNG, UTF-8 text, a JSON object); and
    every target in the tree a regular file or nothing, under folders (``_tree_problem``).  The
    files are then written beside their targets under hidden names and moved into place
    (replaced files are kept until all are in place): a failure puts the tree back as it was.
    """
    files, order = _read(path)
    meta, manifest = _manifest(path, files, order)
    records = {}
    for name in order:
        why, rec = _content_problem(name, files[name])
        if why:
            raise PackError(f"{path}: {_show(name)} is {why}" if why.startswith("not ") else
                            f"{path}: {_show(name)}: {why}")
        if name.endswith("/summary.json"):
            records[name] = rec
    if "images" in meta and meta["images"] != len(records):
        raise PackError(f"{path}: {MANIFEST} says {meta['images']} images, the archive holds "
                        f"{len(records)} summary.json")
    devices = sorted({r.get("device", "?") for r in records.values()})
    if "devices" in meta and sorted(set(meta["devices"])) != devices:
        raise PackError(f"{path}: {MANIFEST} names the devices {meta['devices']}, the records "
                        f"{devices}")
    stamp = "".join(c for c in meta["created"] if c.isalnum())
    out = Path(out)
    items = [(f"packs/{stamp}.json", manifest)] + [(name, files[name]) for name in order]
    targets = [(name, out.joinpath(*name.split("/"))) for name, _ in items]
    why = _tree_problem(out, targets)
    if why:
        raise PackError(f"{path}: {why}; nothing was written")
    return _write_all(path, [(t, data) for (_, t), (_, data) in zip(targets, items)]), meta


def _write_all(path, items: list) -> list[Path]:
    """Write (target, bytes) pairs all or nothing: each to a hidden file beside its target
    (fsynced), then each moved over its target, the replaced file kept under a hidden name
    until all are in place.  On any failure (a full disk, a folder made meanwhile, Ctrl-C) the
    moved files are put back, the hidden files and the folders made are removed, and an
    OSError is a PackError."""
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    made, staged, kept, done, current = [], [], [], [], None
    try:
        for k, (target, data) in enumerate(items):
            current = target
            missing = [d for d in [target.parent, *target.parent.parents]
                       if not os.path.lexists(d)]
            for d in reversed(missing):
                d.mkdir()
                made.append(d)
            tmp = target.parent / f".unpack-{tag}-{k}.tmp"
            staged.append(tmp)
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for k, ((target, _), tmp) in enumerate(zip(items, staged)):
            current, old = target, None
            if os.path.lexists(target):
                old = target.parent / f".unpack-{tag}-{k}.old"
                kept.append(old)
                try:
                    os.link(target, old)
                except OSError:   # a file system without hard links
                    shutil.copy2(target, old)
            os.replace(tmp, target)
            done.append((target, old))
    except BaseException as e:
        clean = True
        for target, old in reversed(done):
            try:
                if old is not None:
                    os.replace(old, target)
                else:
                    target.unlink()
            except OSError:
                clean = False
        for f in staged + kept:
            try:
                f.unlink(missing_ok=True)
            except OSError:
                clean = False
        for d in reversed(made):
            try:
                d.rmdir()
            except OSError:
                clean = False
        if isinstance(e, OSError):
            where = e.filename or current
            state = "nothing was changed" if clean else "the tree may be partly changed"
            raise PackError(f"{path}: could not write {where} ({e.strerror or e}); "
                            f"{state}") from None
        raise
    for old in kept:
        try:
            old.unlink(missing_ok=True)
        except OSError:
            pass
    return [target for target, _ in items]
