"""Atomic file writes: a temporary file beside the target, fsync, then ``os.replace``, so a crash,
an interrupt or a full disk never leaves a half-written file (images: utils/imageio.py; tables,
logs, records and figures: their writers)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable


def atomic_write(path, write_fn: Callable[[Path], object]) -> Path:
    """Call ``write_fn(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    The rename is atomic on one filesystem, so readers (and a crashed or
    interrupted run) see either the old file or the complete new one. On any
    failure, including KeyboardInterrupt, the temporary file is removed and
    ``path`` is untouched. Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden name and a .tmp suffix, so list_images never picks up a leftover.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.open("xb").close()  # created with the umask's permissions, unlike mkstemp's 0600
        write_fn(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # data on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Atomically write ``text`` to ``path`` (newlines written as given)."""
    return atomic_write(path, lambda p: p.write_text(text, encoding=encoding, newline=""))
