"""Download the paper's images listed in ``dataset/manifest.tsv`` and verify their sha256.

    python -m dataset.fetch denoising|deblocking|inpainting|super_resolution|enhancement|dip|all
                            [--dest DIR] [--base-url URL] [--timeout SECONDS]

Each file is streamed to a temporary file in its destination folder, checked against the
manifest's ``upstream_sha256``, converted to lossless PNG where the local name is ``.png`` but
the upstream file is not (the BMPs), and moved into place with ``os.replace``, so an
interrupted or failed download never leaves a partial file behind. Files already present with
the right sha256 are skipped.

Mirror rule for ``--base-url URL``: the mirror serves every file at
``URL/<manifest path with the upstream file's extension>``, e.g. the local
``deblocking/LIVE1/bikes.png`` (upstream ``bikes.bmp``) is fetched from
``URL/deblocking/LIVE1/bikes.bmp``. Its bytes must still match ``upstream_sha256``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from tqdm import tqdm

from utils.args import seconds
from . import PACKAGE_DIR, groups, manifest, select

TIMEOUT_S = 30
CHUNK = 1 << 16
USER_AGENT = "dip-spectral-bias-dataset-fetch/1"


class Unreachable(Exception):
    """The server cannot be reached at all: abort the run instead of failing file by file."""


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def upstream_suffix(row: dict) -> str:
    return PurePosixPath(urlsplit(row["upstream_url"]).path).suffix


def needs_conversion(row: dict) -> bool:
    """True where the upstream file is stored locally in another format (BMP -> PNG)."""
    return PurePosixPath(row["path"]).suffix.lower() != upstream_suffix(row).lower()


def source_url(row: dict, base_url: str | None = None) -> str:
    """The upstream URL, or the mirror's (see the module docstring for the rule)."""
    if not base_url:
        return row["upstream_url"]
    rel = PurePosixPath(row["path"]).with_suffix(upstream_suffix(row))
    return f"{base_url.rstrip('/')}/{rel}"


def is_present(row: dict, target: Path) -> bool:
    """Already there and intact: the local sha256 (or, where none is given, the upstream's)."""
    want = row.get("sha256") or (None if needs_conversion(row) else row["upstream_sha256"])
    return target.is_file() and want is not None and sha256_file(target) == want


def _download(url: str, out, desc: str, timeout: float) -> str:
    """Stream ``url`` into the open binary file ``out`` with a progress bar; return its sha256."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError:
        raise  # the server answered: this file fails, the others may still work
    except (urllib.error.URLError, OSError) as e:  # refused, DNS, timeout, ...
        raise Unreachable(f"cannot download {url}: {getattr(e, 'reason', e)}") from None
    h = hashlib.sha256()
    with resp, tqdm(total=int(resp.headers.get("Content-Length") or 0) or None, unit="B",
                    unit_scale=True, unit_divisor=1024, desc=desc, leave=False,
                    disable=None, file=sys.stderr) as bar:  # disable=None: no bar off a tty
        while True:
            try:
                block = resp.read(CHUNK)
            except (socket.timeout, OSError) as e:
                raise Unreachable(f"cannot download {url}: {e}") from None
            if not block:
                break
            out.write(block)
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def fetch_one(row: dict, dest: Path, base_url: str | None = None,
              timeout: float = TIMEOUT_S) -> str:
    """Fetch one manifest row into ``dest``; return ``"present"`` or ``"downloaded"``.

    Raises RuntimeError (one-line message) when this file fails, Unreachable when the
    server cannot be reached. Temporary files are always removed.
    """
    target = dest / row["path"]
    if is_present(row, target):
        return "present"
    if target.is_file():     # there, but not the manifest's bytes: replaced once downloaded
        why = " (damaged, or converted by another Pillow/zlib)" if needs_conversion(row) else ""
        print(f"{row['path']}: the local copy fails its sha256 check{why}; downloading it again",
              file=sys.stderr)
    made = [d for d in (target.parent, *target.parent.parents) if not d.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    url = source_url(row, base_url)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                got = _download(url, out, row["path"], timeout)
            except urllib.error.HTTPError as e:
                raise RuntimeError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
        if got != row["upstream_sha256"]:
            raise RuntimeError(f"checksum mismatch for {row['path']} ({url}): "
                               f"expected sha256 {row['upstream_sha256']}, got {got}")
        if needs_conversion(row):
            _convert(Path(tmp), target, row)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if not target.exists():  # failed: drop the folders made for it, leave no trace
            for d in made:  # deepest first
                try:
                    d.rmdir()
                except OSError:
                    break
    return "downloaded"


def _convert(tmp: Path, target: Path, row: dict) -> None:
    """Re-encode the verified download in place as the local format (lossless PNG).

    ``optimize=True`` is what reproduces the manifest's PNG bytes. A different Pillow/zlib may
    encode the same pixels differently; the pixels are already verified through the upstream
    sha256, so a byte mismatch only warns.
    """
    from PIL import Image  # only needed here

    with Image.open(tmp) as im:
        im.load()
    buf = io.BytesIO()
    fmt = {".png": "PNG"}.get(target.suffix.lower())
    if fmt is None:
        raise RuntimeError(f"{row['path']}: no lossless conversion to {target.suffix}")
    im.save(buf, fmt, optimize=True)
    tmp.write_bytes(buf.getvalue())
    got = hashlib.sha256(buf.getvalue()).hexdigest()
    if row.get("sha256") and got != row["sha256"]:
        print(f"warning: {row['path']}: converted PNG sha256 {got} differs from the manifest's "
              f"{row['sha256']} (pixels verified; another Pillow/zlib encodes differently)",
              file=sys.stderr)


def fetch(rows: list[dict], dest: str | os.PathLike = PACKAGE_DIR, base_url: str | None = None,
          timeout: float = TIMEOUT_S) -> dict:
    """Fetch ``rows`` into ``dest``; return counts ``{"downloaded", "present", "failed"}``.

    Per-file failures (HTTP error, checksum mismatch) are printed as one ``error:`` line each
    and counted; Unreachable propagates so the caller can stop at the first connection error.
    """
    counts = {"downloaded": 0, "present": 0, "failed": 0}
    for row in rows:
        try:
            counts[fetch_one(row, Path(dest), base_url, timeout)] += 1
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            counts["failed"] += 1
    return counts


def main(argv: list[str] | None = None, rows: list[dict] | None = None) -> int:
    """Command-line entry; ``rows`` replaces the project's manifest (tests)."""
    rows = manifest() if rows is None else rows
    choices = groups(rows) + ["all"]
    ap = argparse.ArgumentParser(
        prog="python -m dataset.fetch", description=__doc__.split("\n\n")[0],
        epilog="Mirror rule (--base-url URL): each file is fetched from URL/<manifest path "
               "with the upstream extension>, e.g. URL/deblocking/LIVE1/bikes.bmp for the "
               "local deblocking/LIVE1/bikes.png; its sha256 must match upstream_sha256.")
    ap.add_argument("group", help=f"one of {', '.join(choices)}, or a sub-folder such as "
                                  "inpainting/bernoulli")
    ap.add_argument("--dest", type=Path, default=PACKAGE_DIR,
                    help="root folder for the images (default: %(default)s)")
    ap.add_argument("--base-url", help="fetch from this mirror instead of the upstream URLs")
    ap.add_argument("--timeout", type=seconds, default=TIMEOUT_S,
                    help="network timeout in seconds, a positive number (default: %(default)s)")
    args = ap.parse_args(argv)
    chosen = select(rows, args.group)
    if not chosen:
        ap.error(f"no manifest files under {args.group!r}; choose one of {', '.join(choices)}")
    blocker = next((p for p in [args.dest, *args.dest.parents] if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        print(f"error: {blocker}: --dest must be a folder, and this is a file", file=sys.stderr)
        return 2
    try:
        c = fetch(chosen, args.dest, args.base_url, args.timeout)
    except Unreachable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:   # a folder that cannot be created or written, a full disk
        where = e.filename or args.dest
        print(f"error: {where}: cannot write ({e.strerror or e})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(f"{c['downloaded']} downloaded, {c['present']} already present, {c['failed']} failed "
          f"({args.dest})")
    return 1 if c["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
