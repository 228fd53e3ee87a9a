"""Command lines of the tests, each in its own process, forked from a warm interpreter.

``python denoising.py ...`` spends about 3.5 s of a test's time importing torch before the
script's first line (AVX2 CI machine), and the suite runs dozens of them.  ``run`` gives the same
process a user's command gets, without that import: a server started once per test session
imports torch and the project, then forks a child per command line; the child takes the test's
working folder, environment and argv, sends stdout and stderr (file descriptors 1 and 2) to
files, runs the script or ``-m`` module as ``__main__`` (``runpy``), and exits as the
interpreter would (``sys.exit``'s status; an uncaught exception prints its traceback and exits
1).  The server imports and computes nothing else, so the child starts with no thread pool, as a
fresh interpreter does.

What a fork cannot give is a fresh import: an environment variable read when torch or the C
runtime loads (``OMP_NUM_THREADS``, ``MALLOC_*``, ...) that differs from the server's, or a
test of what importing does, needs a fresh interpreter: ``run`` starts one for such variables,
and ``DIP_TEST_FRESH=1`` makes every command line a fresh interpreter (the suite's results must
not change with it).
"""
import atexit
import io
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# read when the interpreter, torch or the C runtime starts: a fork would not see a change
LOAD_TIME = ("OMP_", "MKL_", "KMP_", "GOMP_", "DNNL_", "ONEDNN_", "ATEN_", "TORCH_", "PYTORCH_",
             "MALLOC_", "GLIBC_", "LD_", "PYTHON", "CUDA_", "NVIDIA_")
# what the server imports: each task script's module (``tasks``), and what a run imports late
PRELOAD = ("numpy", "torch", "PIL.Image", "tasks", "utils.cli", "skimage.io", "skimage.data",
           "matplotlib.pyplot")
_server: list = [None]
_SERVER_ENV: dict = {}


def _exit_status(e: SystemExit) -> int:
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    print(e.code, file=sys.stderr)
    return 1


def _child(request: dict) -> None:
    """In the forked child: become the command line's process, run it, exit.  Never returns."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            f = os.open(path, os.O_WRONLY | os.O_TRUNC)
            os.dup2(f, fd)
            os.close(f)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.__stdout__, sys.__stderr__ = sys.stdout, sys.stderr
        argv = request["argv"]
        import runpy
        try:
            if argv[0] == "-m":
                sys.path[0] = request["cwd"]
                sys.argv = [argv[1], *argv[2:]]
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            else:
                sys.path[0] = str(Path(request["cwd"], argv[0]).resolve().parent)
                sys.argv = list(argv)
                runpy.run_path(argv[0], run_name="__main__")
            code = 0
        except SystemExit as e:
            code = _exit_status(e)
        except KeyboardInterrupt:
            traceback.print_exc()
            code = -signal.SIGINT
        except BaseException:   # noqa: B036 - the interpreter's own reaction to any exception
            traceback.print_exc()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        if code == -signal.SIGINT:    # as the interpreter does: killed by the signal
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        os._exit(code)


def serve() -> None:
    """The server's loop: one JSON request per line on stdin; answers the child's pid, then its
    exit status (negative: the signal that ended it, as ``subprocess`` says)."""
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)          # whatever else prints to stdout cannot garble the answers
    import importlib
    for name in PRELOAD:
        importlib.import_module(name)
    answer.write("ready\n")
    answer.flush()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            answer.close()
            _child(request)
        answer.write(json.dumps({"pid": pid}) + "\n")
        answer.flush()
        _, status = os.waitpid(pid, 0)
        answer.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
        answer.flush()


def _base_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _server_env() -> dict:
    """The server's environment: this one with the project on PYTHONPATH, fixed at first use
    (a test that changes a variable later does not change the server it forks from)."""
    if not _SERVER_ENV:
        _SERVER_ENV.update(_base_env())
    return _SERVER_ENV


def _start():
    p = subprocess.Popen([sys.executable, str(Path(__file__).resolve())], cwd=ROOT,
                         env=_server_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    p.pending = b""     # what was read of the answers beyond the last whole line
    if _answer(p, 120) != "ready":
        p.kill()
        raise RuntimeError("the test launcher's server did not start")
    atexit.register(p.kill)
    return p


def _answer(server, timeout):
    """The server's next line, or None if none came within ``timeout`` seconds."""
    fd = server.stdout.fileno()
    while b"\n" not in server.pending:
        if not select.select([fd], [], [], timeout)[0]:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError("the test launcher's server ended")
        server.pending += chunk
    line, server.pending = server.pending.split(b"\n", 1)
    return line.decode()


def forks(env: dict) -> bool:
    """Whether a fork of the server runs a command with this environment as a fresh interpreter
    would: no variable read at load time differs."""
    if os.environ.get("DIP_TEST_FRESH") == "1":
        return False
    base = _server_env()
    return not any(k.startswith(LOAD_TIME) for k in set(env) | set(base)
                   if env.get(k) != base.get(k))


def run(argv, env=None, cwd=ROOT, timeout=600) -> subprocess.CompletedProcess:
    """``python *argv`` (a script path or ``-m module``, then its arguments) in ``cwd`` with
    ``env`` (default: this environment, with the project on PYTHONPATH); stdout and stderr
    captured as text.  Raises ``subprocess.TimeoutExpired`` after killing it past ``timeout``."""
    argv = [str(a) for a in argv]
    env = _base_env() if env is None else dict(env)
    if not forks(env):
        return subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                              cwd=cwd, env=env, timeout=timeout)
    if _server[0] is None or _server[0].poll() is not None:
        _server[0] = _start()
    server = _server[0]
    with tempfile.TemporaryDirectory(prefix="launcher-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        out.touch()
        err.touch()
        server.stdin.write((json.dumps({"argv": argv, "cwd": str(cwd), "env": env,
                                        "stdout": str(out), "stderr": str(err)}) + "\n").encode())
        server.stdin.flush()
        pid = json.loads(_answer(server, 60))["pid"]
        line = _answer(server, timeout)
        if late := line is None:
            os.kill(pid, signal.SIGKILL)
            line = _answer(server, 60)
        status = json.loads(line)["status"]
        text = (out.read_text(encoding="utf-8", errors="replace"),
                err.read_text(encoding="utf-8", errors="replace"))
    if late:
        raise subprocess.TimeoutExpired([sys.executable, *argv], timeout, *text)
    return subprocess.CompletedProcess([sys.executable, *argv], status, *text)


if __name__ == "__main__":
    serve()
