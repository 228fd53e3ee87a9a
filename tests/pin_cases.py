"""Fixed-seed CPU runs of every task whose outputs are pinned in ``tests/pinned.json``.

A refactor must leave these bit-identical (tests/test_pinned.py).  A change of behaviour on
purpose regenerates the file, and its commit says why:

    PYTHONPATH=. python tests/pin_cases.py --write   # behaviour changed: this platform's pins only
    PYTHONPATH=. python tests/pin_cases.py --add     # same behaviour: add this platform's pins
    PYTHONPATH=. python tests/pin_cases.py --add --new-capability   # a CPU capability not pinned

A change on purpose that alters a file but no metric of a case (measured on the platform at
hand) may keep the other platforms' entries, without that file's hash: their metrics stay exact,
and ``--add`` on such a platform pins the file again (2026-12-07: the denoising case's log.csv,
whose psnr_obs stopped counting the padding).  An integer metric that follows from numbers the
entry pins may be carried over too (2026-12-07: ``iterations`` of a fit whose members all
stopped, which a CPU now ends at its last stop's decision, from the same ``stop_iteration``).

A capability not yet pinned (AVX2 beside AVX512 pins) may differ by more than
``CROSS_PLATFORM_DB``; ``--new-capability`` adds it anyway, after the adder has run the cases at
the commit that last wrote the pins and found the same numbers as now on this machine (so the
difference is the CPU's arithmetic, not a change).

Each case runs a task script in-process at toy scale (tiny nets, a few iterations, one thread)
on a small crop of a ``skimage.data`` image and fingerprints what it wrote: the full-precision
metrics of summary.json, log.csv and the output PNGs.

The pins are kept per platform: the canary (a small conv/Adam computation in plain torch) and
ATen's CPU capability (``AVX2``, ``AVX512``: oneDNN picks other kernels, whose rounding Adam's
first, sign-like steps amplify).  On a pinned platform every number and file must be identical;
elsewhere the metrics are compared with the first platform's within ``CROSS_PLATFORM_DB``
(measured: an AVX2 CPU against the AVX512 pins differed by up to 0.0049 dB on 2026-12-03, and by
0.11 dB in the denoising case on 2026-12-07, an AMD EPYC with AVX2 only; since then that
platform has pins of its own).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PINNED = Path(__file__).resolve().parent / "pinned.json"
# fp32 on every CPU: --amp auto would run bf16 on one with native bf16 for the tasks whose parity
# is measured, and such a CPU can share the canary and capability of one without it
TINY = ["--quick", "--quiet", "--log-every", "2", "--amp", "none"]
CASES = {
    "denoising": ("denoising", "face", TINY + ["--channels", "8", "--iters", "12", "--seed", "3"]),
    "denoising_restarts": ("denoising", "face", TINY + [
        "--channels", "8", "--iters", "12", "--restarts", "2", "--stop", "ratio",
        "--stop-window", "2", "--stop-eps", "1e9"]),
    "inpainting": ("inpainting", "cam", TINY + ["--channels", "8", "--iters", "10", "--stop",
                                                "variance", "--stop-window", "2",
                                                "--stop-patience", "4"]),
    "deblocking": ("deblocking", "face", TINY + ["--channels", "8", "--iters", "8"]),
    "super_resolution": ("super_resolution", "face", TINY + [
        "--channels-down", "8", "--channels-up", "8", "--scales", "3", "--iters", "6"]),
    "enhancement": ("enhancement", "face", TINY + ["--channels", "8", "--iters", "5"]),
}
VOLATILE = {"seconds", "its_per_sec", "device"}
CROSS_PLATFORM_DB = 0.02
FILES = ("log.csv", "output.png", "output_ema.png")


def images(folder: Path) -> dict[str, Path]:
    from skimage import data
    out = {"face": folder / "face.png", "cam": folder / "cam.png"}
    Image.fromarray(data.astronaut()[150:230, 180:260]).save(out["face"])   # 80×80, padded
    Image.fromarray(data.camera()[200:264, 200:264]).save(out["cam"])        # 64×64 gray
    return out


def canary() -> str:
    """sha256 of a tiny conv + Adam computation in plain torch (independent of this project)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 8, 32, 32, generator=g)
    w = (torch.rand(8, 8, 3, 3, generator=g) - 0.5).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        y = torch.nn.functional.conv2d(x, w, padding=1)
        ((y - x) ** 2).mean().backward()
        opt.step()
    return hashlib.sha256(y.detach().numpy().tobytes()).hexdigest()[:16]


def run_case(name: str, folder: Path, paths: dict) -> dict:
    """Run one case; return its fingerprint (metrics and file hashes)."""
    sys.path.insert(0, str(ROOT))
    from tasks import get_task
    from utils.cli import main
    from utils.outputs import row_of
    script, image, argv = CASES[name]
    out = folder / name
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            status = main(get_task(script), argv + ["--image", str(paths[image]), "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert status == 0, f"{name}: exit status {status}"
    d = out / image
    summary = json.loads((d / "summary.json").read_text())
    # the summary row's scalars (the record's other keys are not behaviour: utils.outputs.row_of)
    metrics = {k: v for k, v in row_of(summary).items() if k not in VOLATILE and k != "status"
               and isinstance(v, (int, float, str, type(None)))}
    files = {f: hashlib.sha256(_content(d / f)).hexdigest()[:16] for f in FILES}
    return {"metrics": metrics, "files": files}


def _content(path: Path) -> bytes:
    """A file's bytes; CSV files with their line endings normalised to "\n"."""
    data = path.read_bytes()
    return data.replace(b"\r\n", b"\n") if path.suffix == ".csv" else data


def platform() -> dict:
    """What decides the arithmetic of the pinned runs: the canary, the CPU capability, torch."""
    return {"canary": canary(), "cpu": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__}


def same_platform(a: dict, b: dict) -> bool:
    return a["canary"] == b["canary"] and a["cpu"] == b["cpu"]


def pinned_for(pins: dict, here: dict) -> tuple[dict, bool]:
    """(the pinned platform entry to compare with, whether it is this platform)."""
    for entry in pins["platforms"]:
        if same_platform(entry, here):
            return entry, True
    return pins["platforms"][0], False


def run_all(folder: Path) -> dict:
    paths = images(folder)
    return {**platform(), "cases": {n: run_case(n, folder, paths) for n in CASES}}


def close(a, b, tol=CROSS_PLATFORM_DB) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (np.isnan(a) and np.isnan(b)) or abs(a - b) <= tol
    return a == b


if __name__ == "__main__":
    import argparse
    import tempfile
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--write", action="store_true", help="behaviour changed: this platform's "
                      "pins only")
    what.add_argument("--add", action="store_true", help="same behaviour: add this platform's "
                      "pins beside the others")
    ap.add_argument("--new-capability", action="store_true", help="with --add: a CPU "
                    "capability not pinned yet (the module's docstring says when)")
    args = ap.parse_args()      # a typo stops here, before 30 s of cases or a rewrite
    if args.new_capability and not args.add:
        ap.error("--new-capability goes with --add")
    with tempfile.TemporaryDirectory() as tmp:
        entry = run_all(Path(tmp))
    if args.add:   # same behaviour: this platform's pins beside the others
        pins = json.loads(PINNED.read_text())
        kin = [e for e in pins["platforms"] if e["cpu"] == entry["cpu"]]
        ref = (kin or pins["platforms"])[0]["cases"]
        far = [(n, k) for n, c in entry["cases"].items() for k, v in c["metrics"].items()
               if not close(v, ref[n]["metrics"][k])]
        if far and (kin or not args.new_capability):
            sys.exit(f"not the same behaviour (beyond {CROSS_PLATFORM_DB} dB): {far}")
        pins["platforms"] = [e for e in pins["platforms"] if not same_platform(e, entry)]
        pins["platforms"].append(entry)
    else:
        pins = {"platforms": [entry]}
    text = json.dumps(pins, indent=1, sort_keys=True) + "\n"
    if args.write or args.add:
        PINNED.write_text(text)
        print(f"wrote {PINNED}: {len(pins['platforms'])} platform(s)")
    else:
        print(text)
