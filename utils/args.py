"""Value types for the command lines of reproduce.py, baselines.py, paper.lease and benchmarks/.

A bad value (``--iters 0``, ``--budget-s nan``, ``--shard 3/2``) is then argparse's one-line
error and exit status 2 before any work, never a silent default or a traceback later.  (The task
scripts check their config entries in ``utils.config``.)
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path


def integer(low: int | None = None, high: int | None = None):
    """An argparse type: an integer in [low, high] (either bound optional)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if low is not None and value < low or high is not None and value > high:
            span = (f"at least {low}" if high is None else f"at most {high}" if low is None
                    else f"from {low} to {high}")
            raise argparse.ArgumentTypeError(f"must be {span}, not {value}")
        return value
    parse.__name__ = "integer"      # argparse names the type in its message
    return parse


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a positive finite number of seconds is "
                                         "required")
    return value


def shard(text: str) -> tuple[int, int]:
    """An argparse type: ``k/n``, this process's share of the work (0 ≤ k < n)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not k/n (e.g. 0/2)") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"{text}: k/n needs 0 <= k < n")
    return k, n


def report_path(out: str | None, quick: bool, default: str) -> Path | None:
    """Where a benchmark writes its report: ``--out``, else its committed file, but nowhere for
    a ``--quick`` (toy) run, whose numbers must not replace the committed ones."""
    return Path(out) if out else None if quick else Path(default)
