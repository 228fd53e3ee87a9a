"""Timing of the per-iteration measures: FBC + blurriness + sharpness on one RGB image.

    python -m benchmarks.measures [--device cpu|cuda] [--size 512] [--repeat 20] [--threads N]
                                  [--out results/measures.md]

Baseline: the authors' numpy code takes 199 ms per 512x512 RGB image on the 2-core CPU of
this project (24 ms FBC + 36 ms blurriness + 139 ms sharpness).
"""
import argparse
import datetime
import os
import sys

import torch

from benchmarks.timing import median_ms
from utils.args import integer
from utils.atomic import atomic_write_text
from utils.device import cpu_words, device_name
from utils.spectral import frequency_band_correspondence
from utils.stopping import blurriness, sharpness

NUMPY_MS = {"fbc": 24.0, "blur": 36.0, "sharp": 139.0}


def _image(size, device):
    try:  # a natural image: top-k and FFT timings do not depend on content, but keep it honest
        from skimage import data, transform
        a = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)
        x = torch.from_numpy(a).permute(2, 0, 1).float()
    except ImportError:
        x = torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    return noisy[None].to(device), x[None].to(device)


def speed_words(ratio: float) -> str:
    """``4.2x faster``, or ``2.0x slower`` where the ratio is below 1."""
    return f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: cpu")
    p.add_argument("--size", type=integer(16), default=512, help="the image's side (default "
                   "512)")
    p.add_argument("--repeat", type=integer(1), default=20, help="timed calls (default 20)")
    p.add_argument("--threads", type=integer(1), default=None,
                   help="torch CPU threads (default: torch's)")
    p.add_argument("--out", default=None, help="also write the line, with the device, date and "
                                                "command, to this markdown file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out, target = _image(args.size, device)
    parts = {
        "fbc": median_ms(lambda: frequency_band_correspondence(out, target), device, args.repeat, 3),
        "blur": median_ms(lambda: blurriness(out), device, args.repeat, 3),
        "sharp": median_ms(lambda: sharpness(out), device, args.repeat, 3),
    }
    total = median_ms(lambda: (frequency_band_correspondence(out, target), blurriness(out),
                               sharpness(out)), device, args.repeat, 3)
    base = sum(NUMPY_MS.values()) * (args.size / 512) ** 2  # numpy cost scales with the pixel count
    detail = " + ".join(f"{k} {v:.1f}" for k, v in parts.items())
    line = (f"measures {args.size}x{args.size} RGB on {args.device} ({torch.get_num_threads()} "
            f"threads): {total:.1f} ms median ({detail}) vs authors' numpy {base:.0f} ms -> "
            f"{speed_words(base / total)} [load avg {os.getloadavg()[0]:.1f}]")  # contention shows
    print(line)
    if args.out:
        dev = cpu_words() if device.type == "cpu" else device_name(device)
        atomic_write_text(args.out, (
            "# The per-iteration measures' time (FBC + blurriness + sharpness)\n\n"
            f"- device: {dev}, torch {torch.__version__}\n"
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n"
            f"- command: `python -m benchmarks.measures {' '.join(argv or sys.argv[1:])}`\n"
            "- the authors' numpy code: a constant, timed once on this project's first 2-core "
            "machine (24 ms FBC + 36 blurriness + 139 sharpness at 512², scaled by the pixels)\n"
            f"\n{line}\n"))


if __name__ == "__main__":
    main()
