"""Behaviour pinned: fixed-seed toy runs of every task give the outputs recorded in
tests/pinned.json (bit for bit on a platform that recorded them; see tests/pin_cases.py)."""
import json

import pytest

from pin_cases import CASES, PINNED, close, images, pinned_for, platform, run_case

PINS, EXACT = pinned_for(json.loads(PINNED.read_text()), platform())


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return images(tmp_path_factory.mktemp("pin"))


@pytest.mark.parametrize("name", list(CASES))
def test_pinned_outputs(name, paths, tmp_path):
    got, want = run_case(name, tmp_path, paths), PINS["cases"][name]
    assert set(got["metrics"]) == set(want["metrics"])
    for k, v in want["metrics"].items():
        if EXACT:
            assert got["metrics"][k] == v, (k, got["metrics"][k], v)
        else:  # another platform's arithmetic: the same numbers within rounding
            assert close(got["metrics"][k], v), (k, got["metrics"][k], v)
    if EXACT:   # the files this platform pins (a file changed elsewhere loses its hash here)
        assert set(want["files"]) <= set(got["files"])
        assert {f: got["files"][f] for f in want["files"]} == want["files"]
