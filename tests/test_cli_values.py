"""Bad values on the command lines of reproduce.py and benchmarks/ are argparse's one-line
error (exit 2) or one ``error:`` line before any work, and a report of nothing never replaces a
committed one (utils/args.py)."""
import argparse
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.args import integer, seconds, shard  # noqa: E402


def test_value_types():
    assert integer(1)("3") == 3 and integer(0, 2)("2") == 2 and integer()("-4") == -4
    for parse, text in ((integer(1), "0"), (integer(1), "x"), (integer(0, 2), "3"),
                        (seconds, "0"), (seconds, "-5"), (seconds, "nan"), (seconds, "inf"),
                        (seconds, "x"), (shard, "3/2"), (shard, "1"), (shard, "0/0"),
                        (shard, "-1/2")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    assert seconds("2.5") == 2.5 and shard("1/3") == (1, 3)


@pytest.mark.parametrize("module, argv, message", [
    ("benchmarks.speed", ["--iters", "0"], "--iters: must be at least 1"),
    ("benchmarks.speed", ["--threads", "0"], "--threads: must be at least 1"),
    ("benchmarks.measures", ["--size", "0"], "--size: must be at least 16"),
    ("benchmarks.measures", ["--repeat", "0"], "--repeat: must be at least 1"),
    ("benchmarks.decay", ["--shard", "3/2"], "k/n needs 0 <= k < n"),
    ("benchmarks.stopping", ["--threads", "0"], "--threads: must be at least 1"),
    ("benchmarks.robustness", ["--images", "nosuch"], "not an image of skimage.data"),
    ("benchmarks.robustness", ["--images", "download_all"], "not an image of skimage.data"),
    ("benchmarks.parity", ["--iters", "0"], "--iters: must be at least 1"),
    ("reproduce", ["--budget-s", "nan"], "finite number of seconds"),
    ("reproduce", ["--budget-s", "0"], "finite number of seconds"),
    ("reproduce", ["--seeds", "-1"], "--seeds: must be at least 0"),
])
def test_a_bad_value_is_argparses_error(module, argv, message, capsys):
    main = __import__(module, fromlist=["main"]).main
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_report_only_of_an_empty_cache_writes_nothing(tmp_path):
    from benchmarks import decay, stopping
    for m in (decay, stopping):
        out = tmp_path / f"{m.__name__}.md"
        out.write_text("committed\n")
        with pytest.raises(SystemExit, match="no finished record to report"):
            m.main(["--report-only", "--cache", str(tmp_path / "none"), "--out", str(out)])
        assert out.read_text() == "committed\n" and not (tmp_path / "none").exists()


def test_compare_refuses_a_csv_of_another_benchmark(tmp_path):
    from benchmarks import compare
    other = tmp_path / "decay.csv"
    other.write_text("sigma,remedy,peak\n50,none,30\n")
    with pytest.raises(SystemExit, match="not a benchmarks.robustness CSV"):
        compare.main([str(other), str(other)])
