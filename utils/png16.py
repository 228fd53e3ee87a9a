"""16-bit PNG, which Pillow cannot do: it has no 16-bit-per-channel colour modes, so it reads
such files truncated to 8 bits (imageio and skimage.io go through Pillow and inherit that).

Decoding: Pillow has already validated the file; its IDAT stream is decoded a second time with
Pillow's own zlib/PNG-unfilter decoder (in C), once keeping the high and once the low byte of
every sample, and the two are joined.  Encoding: zlib + PNG chunks, filter 'Up' on every row.
utils/imageio.py calls ``decode`` and ``encode``; nothing else needs this module.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _idat(data: bytes) -> bytes:
    """Concatenated IDAT payloads of a PNG file (already validated by Pillow)."""
    pos, out = 8, []
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        if ctype == b"IDAT":
            out.append(data[pos + 8:pos + 8 + length])
        elif ctype == b"IEND":
            break
        pos += 12 + length
    return b"".join(out)


def decode(path: Path) -> np.ndarray:
    """Full-precision uint16 (H, W, C) pixels of a 16-bit gray+alpha/RGB/RGBA PNG.

    Pillow's 'zip' decoder does the inflate + unfilter (+ Adam7) in C; its
    unpackers truncate 16-bit samples, taking the first byte for ';16B' and the
    second for ';16L'. PNG is big-endian, so decoding twice gives high and low
    bytes. Gray+alpha (4 bytes/pixel) is decoded as raw 8-bit RGBA bytes instead.
    """
    data = path.read_bytes()
    w, h, _, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    idat = _idat(data)
    if ctype == 4:
        raw = np.asarray(Image.frombytes("RGBA", (w, h), idat, "zip", "RGBA", interlace))
        raw = raw.reshape(h, w, 2, 2).astype(np.uint16)  # (gray, alpha) x (high, low byte)
        return (raw[..., 0] << 8) | raw[..., 1]
    mode = "RGB" if ctype == 2 else "RGBA"
    hi, lo = (np.asarray(Image.frombytes(mode, (w, h), idat, "zip", f"{mode};16{e}", interlace))
              for e in "BL")
    return (hi.astype(np.uint16) << 8) | lo


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + ctype + payload
            + struct.pack(">I", zlib.crc32(ctype + payload) & 0xFFFFFFFF))


def encode(a: np.ndarray, icc: bytes | None = None) -> bytes:
    """PNG bytes for uint16 (H, W, C), C in 1..4 (gray, gray+alpha, RGB, RGBA)."""
    h, w, c = a.shape
    rows = a.astype(">u2").reshape(h, w * c).view(np.uint8)
    # Filter 'Up' on every row: vectorised, and much smaller than 'None' on photos.
    up = rows.copy()
    up[1:] -= rows[:-1]  # uint8 arithmetic wraps modulo 256, as PNG requires
    body = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1).tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    iccp = _chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)) if icc else b""
    return (SIGNATURE + _chunk(b"IHDR", ihdr) + iccp
            + _chunk(b"IDAT", zlib.compress(body, 6)) + _chunk(b"IEND", b""))
