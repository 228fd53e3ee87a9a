"""tests/launcher.py: a command line forked from the warm server ends as a fresh interpreter's
would (status, stdout, stderr, traceback, signal), and a timeout kills it and nothing after."""
import os
import subprocess
import sys

import pytest

import launcher

SCRIPT = """import os, sys
print("out", sys.argv[1:], os.getcwd() == os.environ["WANT_CWD"])
print("err", file=sys.stderr)
if sys.argv[1] == "raise":
    raise ValueError("boom")
if sys.argv[1] == "sleep":
    import time; time.sleep(60)
if sys.argv[1] == "interrupt":
    raise KeyboardInterrupt
sys.exit(int(sys.argv[1]) if sys.argv[1].isdigit() else sys.argv[1])
"""


@pytest.fixture(autouse=True)
def forking(monkeypatch):
    """These tests are of the forked path, also where DIP_TEST_FRESH=1 makes the rest fresh."""
    monkeypatch.delenv("DIP_TEST_FRESH", raising=False)


@pytest.mark.parametrize("arg", ["0", "3", "raise", "interrupt", "a message"])
def test_a_forked_run_ends_as_a_fresh_interpreter_does(tmp_path, arg):
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, WANT_CWD=str(tmp_path), PYTHONPATH=str(launcher.ROOT))
    forked = launcher.run([script, arg], env=env, cwd=tmp_path)
    fresh = subprocess.run([sys.executable, str(script), arg], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert launcher.forks(env)
    assert forked.returncode == fresh.returncode
    assert forked.stdout == fresh.stdout == f"out {[arg]!r} True\n"
    assert forked.stderr.splitlines()[0] == "err"
    assert ("Traceback" in forked.stderr) == ("Traceback" in fresh.stderr)
    assert forked.stderr.strip().splitlines()[-1] == fresh.stderr.strip().splitlines()[-1]


def test_a_module_run_and_a_timeout(tmp_path):
    r = launcher.run(["-m", "json.tool", "--help"])
    assert r.returncode == 0 and "usage:" in r.stdout
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, WANT_CWD="-", PYTHONPATH=str(launcher.ROOT))
    with pytest.raises(subprocess.TimeoutExpired):
        launcher.run([script, "sleep"], env=env, timeout=1)
    assert launcher.run([script, "4"], env=env).returncode == 4     # the server goes on


def test_a_variable_read_at_load_time_gets_a_fresh_interpreter(monkeypatch):
    assert launcher.forks(dict(os.environ, PYTHONPATH=str(launcher.ROOT), DIP_DATA_DIR="x"))
    assert not launcher.forks(dict(os.environ, PYTHONPATH=str(launcher.ROOT), OMP_NUM_THREADS="7"))
    monkeypatch.setenv("DIP_TEST_FRESH", "1")
    assert not launcher.forks(dict(os.environ, PYTHONPATH=str(launcher.ROOT)))
