"""A whole GPU lease in one process: first contact with CUDA, the speed table, the paper runs in
priority order, and a one-page report; at most 8 files under ``--out``.

A lent GPU gives a session 15 minutes of device time in all (start-up, idle waits and tries
counted), one command runs at most 10 minutes and at most 8 files come back, so a lease is one
prepared command of about 9 minutes that a change nobody ran cannot break: CI runs the same code
at toy scale on the CPU (tests/test_lease.py).

    python -m paper.lease --stage-data ../shared/datasets      # here: the images to carry
    python -m paper.lease --out $OUT --seconds 520             # there: the one command
    python -m paper.lease --unpack DIR                         # here: into the tree, then commit
    python -m paper.lease --toy --device cpu --out /tmp/lease --seconds 240   # the rehearsal

The steps, each with its own share of ``--seconds`` (counted from the start of the process):

1. contact: the CUDA-marked tests (``pytest -m cuda tests``, in a subprocess with a timeout),
   then a 20-iteration fit of every registered task (the paper configuration, ``--full``, on its
   embedded image; denoising once more as a batch of 2 restarts) on the device.  A failing
   test is reported (its tolerance was never tried on a GPU); a failing fit stops the lease,
   and the log, the report and what was written still come back.
2. speed: ``benchmarks.speed --no-compile --max-seconds 90`` (``--quick`` in the rehearsal):
   the cases the targets name, in order, the rest listed as skipped past the cap.
3. reproduce: ``reproduce.py --budget-s <what is left less a reserve> --pack`` in the priority
   order of ``paper.experiments.PRIORITY`` and the numeric mode ``--mode`` (tf32, PyTorch's
   default, until ``benchmarks.parity`` has a verdict), on the committed records of
   ``results/paper`` so that what earlier leases finished is skipped.
4. ``LEASE.md`` (and ``lease.json``), rewritten after every step so that a kill keeps them:
   device, versions, what each step did and took, and what is still pending with its estimated
   GPU-minutes.

The files under ``--out``: ``LEASE.md``, ``lease.json``, ``lease.log`` (everything printed, the
tests' output included), ``benchmarks-<device>.md`` and ``pack.tar.gz``."""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from utils.args import seconds as positive_seconds

ROOT = Path(__file__).resolve().parents[1]
STAGED_GROUPS = ("denoising", "inpainting", "super_resolution", "deblocking", "enhancement")
CONTACT_ITERS = 20
FILES = ("LEASE.md", "lease.json", "lease.log", "pack.tar.gz")   # + benchmarks-<device>.md
MAX_FILES = 8


class Tee:
    """A text stream that writes to the console and to the lease's log (flushed at each write,
    so that a kill keeps every line)."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, text):
        self.stream.write(text)
        self.log.write(text)
        self.log.flush()
        return len(text)

    def flush(self):
        self.stream.flush()
        self.log.flush()

    def isatty(self):
        return False


def shares(seconds: float, toy: bool) -> dict:
    """Each step's cap (seconds) out of the lease's total; ``reserve`` is kept after the
    paper runs for their tables, figures and the last pack."""
    return {"tests": min(90.0, 0.15 * seconds), "fits": min(75.0, 0.15 * seconds),
            "speed": min(90.0, 0.2 * seconds),
            "reserve": min(15.0 if toy else 45.0, 0.1 * seconds)}


class Lease:
    """The state of one lease: its deadline, its steps and the report written after each."""

    def __init__(self, args):
        self.args, self.out = args, Path(args.out)
        self.t0 = time.monotonic()
        self.caps = shares(args.seconds, args.toy)
        # the steps', contact fits' and pending runs' records; the speed table's lines
        self.steps, self.contact, self.pending, self.speed_table = [], [], [], []
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.meta = environment(args.device)
        self.paper_out = Path(args.paper_out) if args.paper_out else (
            Path(tempfile.mkdtemp(prefix="lease-paper-")) if args.toy else ROOT / "results/paper")

    def left(self) -> float:
        return self.args.seconds - (time.monotonic() - self.t0)

    def step(self, name, fn, cap=None):
        """Run one step: its record (status ok / failed / skipped, seconds, what it did) goes
        into the report, which is rewritten at once."""
        rec = {"step": name, "cap_s": None if cap is None else round(cap), "status": "ok"}
        t = time.monotonic()
        print(f"\n== {name} (cap {cap:.0f} s, {self.left():.0f} s of the lease left)"
              if cap is not None else f"\n== {name}", flush=True)
        try:
            rec["what"] = fn(cap) if cap is not None else fn()
            if isinstance(rec["what"], tuple):
                rec["status"], rec["what"] = rec["what"]
        except Exception as e:  # noqa: BLE001 -- a step's failure is reported, not raised
            traceback.print_exc()
            rec["status"], rec["what"] = "failed", f"{type(e).__name__}: {str(e)[:300]}"
        rec["seconds"] = round(time.monotonic() - t, 1)
        self.steps.append(rec)
        print(f"== {name}: {rec['status']} in {rec['seconds']:.0f} s: {rec['what']}", flush=True)
        self.report()
        return rec["status"] == "ok"

    def report(self):
        from utils.atomic import atomic_write_text
        record = {"started": self.started.isoformat(timespec="seconds"), "command": command(),
                  "seconds": self.args.seconds, "toy": self.args.toy, "mode": self.args.mode,
                  "reproduce_argv": selection(self.args), **self.meta, "steps": self.steps,
                  "contact": self.contact, "speed_table": self.speed_table,
                  "pending": self.pending}
        atomic_write_text(self.out / "lease.json", json.dumps(record, indent=1) + "\n")
        atomic_write_text(self.out / "LEASE.md", lease_markdown(record))


def environment(device: str) -> dict:
    import torch
    meta = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "host_cpu": platform.processor() or None}
    if device.startswith("cuda") and torch.cuda.is_available():
        meta["gpu"] = torch.cuda.get_device_name()
        meta["cudnn"] = torch.backends.cudnn.version()
    else:
        from utils.device import cpu_model
        meta["gpu"] = None
        meta["cpu"] = cpu_model()
    return meta


def command() -> str:
    """The lease's command line as typed, without this machine's paths."""
    argv = [Path(a).name if os.path.isabs(a) else a for a in sys.argv[1:]]
    return "python -m paper.lease " + " ".join(argv)


# --------------------------------------------------------------------------- 1. contact
def run_tests(lease, cap):
    """The CUDA-marked tests in a subprocess (a hang cannot eat the lease); only the files
    that hold some are collected, so that a module needing a package the lent machine lacks
    cannot fail the contact."""
    files = sorted(str(f) for f in (ROOT / "tests").glob("test_*.py")
                   if "pytest.mark.cuda" in f.read_text(encoding="utf-8"))
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files]
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=cap)
        text, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        text, rc = (out.decode() if isinstance(out, bytes) else out), None
    print(text.rstrip())
    last = next((ln.strip(" =") for ln in reversed(text.splitlines()) if ln.strip()), "")
    if rc is None:
        return "failed", f"pytest -m cuda: over its cap of {cap:.0f} s ({last})"
    return ("ok" if rc == 0 else "failed"), f"pytest -m cuda: {last} (exit {rc})"


def contact_argv(task, lease, folder: Path, extra=()) -> list[str]:
    """The command line of a task's contact fit: the paper configuration for CONTACT_ITERS
    iterations on its embedded image (an empty data folder), or the toy scale of reproduce."""
    from models import NETS
    from paper.runner import TOY
    empty = folder / "no-data"
    empty.mkdir(parents=True, exist_ok=True)
    argv = ["--quiet", "--device", lease.args.device, "--data-dir", str(empty),
            "--out", str(folder / "out"), "--stop", "none", *extra]
    if lease.args.toy:
        net = task.config.get("net", "decoder")
        argv += TOY + [a for k, v in NETS[net].toy.items()
                       for a in (f"--{k.replace('_', '-')}", str(v))]
    else:
        argv += ["--full", "--iters", str(CONTACT_ITERS)]
    return argv


def contact_fits(lease, cap):
    """A short fit of every registered task on the device, through its script's own main."""
    from tasks import all_tasks
    from utils.cli import main as task_main
    from utils.outdir import read_record
    deadline = time.monotonic() + cap
    cases = [(name, task, ()) for name, task in all_tasks().items()]
    cases.insert(1, ("denoising, 2 restarts", cases[0][1],
                     ("--restarts", "2", "--run-on", "--stop", "ratio")))
    failed = 0
    with tempfile.TemporaryDirectory(prefix="lease-contact-") as tmp:
        for k, (name, task, extra) in enumerate(cases):
            row = {"task": name}
            if time.monotonic() > deadline:
                row["status"] = "not run: the step's cap was reached"
                lease.contact.append(row)
                continue
            folder = Path(tmp) / f"case{k}"
            argv = contact_argv(task, lease, folder, extra)   # a later option wins
            t = time.monotonic()
            with contextlib.redirect_stdout(sys.stderr):  # the scripts' chatter: log only
                status = task_main(task, argv)
            row["seconds"] = round(time.monotonic() - t, 1)
            summary = next((folder / "out").glob("*/summary.json"), None)
            rec = (read_record(summary.parent) if summary else None) or {}
            row.update(status="ok" if status == 0 else f"exit {status}",
                       iterations=rec.get("iterations"), its_per_sec=rec.get("its_per_sec"),
                       device=rec.get("device"), psnr_in=rec.get("psnr_in"),
                       psnr=rec.get("psnr"))
            failed += status != 0
            lease.contact.append(row)
    ran = sum(r["status"] == "ok" for r in lease.contact)
    what = f"{ran}/{len(cases)} contact fits ok"
    return ("failed" if failed else "ok"), what


# --------------------------------------------------------------------------- 2. speed
def speed(lease, cap):
    from benchmarks import speed as S
    dev = "cuda" if lease.args.device.startswith("cuda") else "cpu"
    path = lease.out / f"benchmarks-{dev}.md"
    argv = ["--device", dev, "--no-compile", "--max-seconds", f"{cap:.0f}", "--out", str(path)]
    S.main(argv + (["--quick"] if lease.args.toy else []))
    table = path.read_text(encoding="utf-8").split("\n\n")
    lease.speed_table = next((b.splitlines() for b in table if b.startswith("| case")), [])
    timed = sum(1 for ln in lease.speed_table[2:] if "skipped" not in ln and "not run" not in ln)
    return f"{path.name}: {timed} of {len(lease.speed_table) - 2} cases timed"


# --------------------------------------------------------------------------- 3. reproduce
def selection(args) -> list[str]:
    """reproduce.py's options that select the runs and their scale (the unpack repeats them)."""
    return ["--mode", args.mode] + (["--toy", "--images", "2"] if args.toy else [])


def reproduce_argv(lease, budget_s=None) -> list[str]:
    out = lease.paper_out.resolve()
    here = Path.cwd().resolve()   # relative where it can be: the tables quote the command
    argv = ["--out", str(out.relative_to(here) if out.is_relative_to(here) else out),
            *selection(lease.args)]
    if budget_s is not None:
        argv += ["--budget-s", f"{budget_s:.0f}", "--pack", str(lease.out / "pack.tar.gz")]
    return argv


def paper_runs(lease):
    import dataset
    import reproduce
    if not lease.args.toy:
        data = dataset.resolve_data_dir()
        if data is None or not dataset.task_images(data, "denoising"):
            return "failed", ("no paper images here: stage them with `python -m paper.lease "
                              "--stage-data DIR` and carry the dataset/ folders it names")
    budget = lease.left() - lease.caps["reserve"]
    if budget < 10:
        return "skipped", f"{lease.left():.0f} s left: no time for the paper runs"
    status = reproduce.main(reproduce_argv(lease, budget))
    pack = lease.out / "pack.tar.gz"
    size = f"{pack.stat().st_size / 2**20:.2f} MiB" if pack.is_file() else "no pack"
    return ("ok" if status == 0 else "failed"), f"reproduce.py exit {status}; {pack.name}: {size}"


def pending_runs(lease) -> list[dict]:
    """Every run with images still to fit, and a bound of their GPU-minutes (no early stop):
    the budget's estimate, from this device's finished records where they exist."""
    import reproduce
    from paper.budget import Budget, device_name, work
    from paper.experiments import all_runs
    from paper.runner import Context, pending_images, run_config
    from tasks import all_tasks
    tasks = all_tasks()
    parts = [*tasks, "figures"]
    argv = reproduce_argv(lease)
    args = reproduce.build_parser(parts).parse_args(argv)
    ctx = Context(args, argv)
    budget = Budget(0.0, device_name(), reproduce.finished_records(ctx.out))
    out = []
    for run in all_runs(tasks, parts, args.seeds, args.toy):
        paths = ctx.images(run.group)
        if paths == []:
            continue
        cfg = run_config(run, ctx)
        todo = pending_images(run, ctx, paths, cfg)
        if todo:
            n = len(paths) if paths is not None else len(tasks[run.script].defaults)
            minutes = sum(budget.estimate(cfg, work(p, cfg)) for p, _ in todo) / 60
            out.append({"run": run.name, "pending": len(todo), "of": n,
                        "gpu_minutes": round(minutes, 1)})
    return out


# --------------------------------------------------------------------------- report
def lease_markdown(rec: dict) -> str:
    dev = rec.get("gpu") or f"CPU {rec.get('cpu')}"
    lines = [f"# {'Toy rehearsal of a' if rec['toy'] else 'GPU'} lease, {rec['started']}", "",
             f"- device: {dev}; torch {rec['torch']}, CUDA {rec['cuda'] or '—'}"
             + (f", cuDNN {rec['cudnn']}" if rec.get("cudnn") else "")
             + f", Python {rec['python']}",
             f"- command: `{rec['command']}` ({rec['seconds']:.0f} s in all)",
             f"- numeric mode of the paper runs: {rec['mode']}"
             + (" (on a CPU: fp32; TF32 is CUDA's)" if rec["mode"] == "tf32" and not rec.get("gpu")
                else ""), "",
             "| step | status | seconds | cap (s) | what |", "|---|---|---|---|---|"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']:.0f} | {s['cap_s'] or '—'} | "
              f"{str(s['what']).replace('|', '/')} |" for s in rec["steps"]]
    if rec["contact"]:
        lines += ["", "## Contact fits", "", "| task | status | iterations | it/s | seconds | "
                  "PSNR in → out |", "|---|---|---|---|---|---|"]
        for c in rec["contact"]:
            psnr = (f"{c['psnr_in']:.2f} → {c['psnr']:.2f}"
                    if c.get("psnr_in") is not None and c.get("psnr") is not None else "—")
            its = f"{c['its_per_sec']:.1f}" if c.get("its_per_sec") else "—"
            lines.append(f"| {c['task']} | {c['status']} | {c.get('iterations') or '—'} | "
                         f"{its} | {c.get('seconds', '—')} | {psnr} |")
    if rec.get("speed_table"):
        lines += ["", "## Speed (the table of benchmarks-*.md)", "", *rec["speed_table"]]
    if rec["pending"]:
        total = sum(p["gpu_minutes"] for p in rec["pending"])
        lines += ["", f"## Still pending: {len(rec['pending'])} runs, ≤ {total:.0f} GPU-minutes",
                  "", "Bounds without early stops, at the rates of this device's records where "
                  "they exist (else the budget's prior).", "",
                  "| run | images pending | ≤ GPU-minutes |", "|---|---|---|"]
        lines += [f"| {p['run']} | {p['pending']}/{p['of']} | {p['gpu_minutes']:.1f} |"
                  for p in rec["pending"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main
def run_lease(args) -> int:
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if args.device == "cpu":   # the rehearsal: no GPU, in this process and in the tests'
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        return _lease(args)
    finally:
        if hidden is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = hidden


def _lease(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "lease.log", "a", encoding="utf-8") as log, \
            contextlib.redirect_stdout(Tee(sys.stdout, log)), \
            contextlib.redirect_stderr(Tee(sys.stderr, log)):
        lease = Lease(args)
        print(f"lease: {command()}; {args.seconds:.0f} s; out {out}")
        lease.report()
        try:
            return _steps(lease, out)
        finally:
            if args.toy and not args.paper_out:   # the rehearsal's runs live in the pack
                shutil.rmtree(lease.paper_out, ignore_errors=True)


def _steps(lease, out) -> int:
    """The four steps; 0 when contact and the paper runs went well.  A failing CUDA test is
    reported (a tolerance never tried on a GPU must not cost the whole lease); a contact fit
    that fails stops the lease, since the paper runs go through the same code."""
    tests = lease.step("contact: CUDA tests", lambda cap: run_tests(lease, cap),
                       lease.caps["tests"])
    if not lease.step("contact: a fit of every task", lambda cap: contact_fits(lease, cap),
                      lease.caps["fits"]):
        print("contact failed: a fit failed on the device; the lease stops here (see the log)")
        return 1
    lease.step("speed table", lambda cap: speed(lease, cap), lease.caps["speed"])
    ok = lease.step("paper runs", lambda: paper_runs(lease)) and tests
    lease.step("pending", lambda: _pending(lease))
    extra = sorted(p.name for p in out.iterdir()
                   if p.name not in FILES and not p.name.startswith("benchmarks-"))
    if extra or len(list(out.iterdir())) > MAX_FILES:
        print(f"warning: {out} holds more than the lease's files: {extra}")
    return 0 if ok else 1


def _pending(lease):
    lease.pending = pending_runs(lease)
    total = sum(p["gpu_minutes"] for p in lease.pending)
    return f"{len(lease.pending)} runs pending, ≤ {total:.0f} GPU-minutes"


def stage_data(src: Path, groups=STAGED_GROUPS) -> list[str]:
    """Copy the paper's images of ``groups`` from a local copy into ``dataset/`` (git-ignored),
    each checked against the manifest's sha256; returns the folders to carry."""
    import dataset
    from dataset.fetch import is_present
    copied = present = 0
    for group in groups:
        for row in dataset.select(dataset.manifest(), group):
            target = dataset.PACKAGE_DIR / row["path"]
            if is_present(row, target):
                present += 1
                continue
            source = src / row["path"]
            if not source.is_file():
                raise FileNotFoundError(f"{source}: not in the local copy")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            if not is_present(row, target):
                target.unlink()
                raise ValueError(f"{source}: its sha256 is not the manifest's")
            copied += 1
    print(f"{copied} copied, {present} already there")
    return [f"dataset/{g}" for g in groups]


def unpack_lease(folder: Path, root: Path = ROOT) -> int:
    """Bring a lease's files into the tree at ``root``: the pack into results/paper
    (``reproduce.py --unpack``, with the lease's selection of runs), the speed table into
    results/, the report into results/paper/leases/<start>.md; a rehearsal's all into the
    git-ignored results/toy/."""
    import reproduce
    from utils.atomic import atomic_write_text
    info = folder / "lease.json"
    try:
        rec = json.loads(info.read_text(encoding="utf-8"))
        argv = [str(a) for a in rec["reproduce_argv"]]
        stamp = datetime.datetime.fromisoformat(rec["started"]).strftime("%Y-%m-%dT%H%M%S")
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {info}: not a lease's record ({type(e).__name__}: {e})", file=sys.stderr)
        return 2
    results = root / "results" / ("toy" if rec.get("toy") else "")
    paper = results / ("" if rec.get("toy") else "paper")
    if (folder / "pack.tar.gz").is_file():
        status = reproduce.main(["--unpack", str(folder / "pack.tar.gz"), "--out", str(paper),
                                 *argv])
        if status:
            return status
    written = [atomic_write_text(results / b.name, b.read_text(encoding="utf-8"))
               for b in sorted(folder.glob("benchmarks-*.md"))]
    if (folder / "LEASE.md").is_file():
        written.append(atomic_write_text(paper / "leases" / f"{stamp}.md",
                                         (folder / "LEASE.md").read_text(encoding="utf-8")))
    print("written: " + ", ".join(str(p.relative_to(root)) for p in written))
    print("a rehearsal: not to commit" if rec.get("toy") else "commit them: git add results/")
    return 0


def main(argv=None) -> int:
    from paper.runner import MODES
    p = argparse.ArgumentParser(prog="python -m paper.lease",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="the folder that comes back ($OUT): at most 8 files")
    p.add_argument("--seconds", type=positive_seconds, default=520.0, help="the whole lease, "
                   "at least 30, from the start of this process (leave a minute of the "
                   "command's limit; default 520)")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda where present")
    p.add_argument("--mode", default="tf32", choices=list(MODES), help="numeric mode of the "
                   "paper runs (reproduce.py --mode; default tf32)")
    p.add_argument("--toy", action="store_true", help="the CPU rehearsal: tiny nets, toy "
                   "crops, 2 images, speed --quick, the paper runs in a temporary folder")
    p.add_argument("--paper-out", help="the paper runs' folder (default results/paper; a "
                   "temporary one with --toy)")
    p.add_argument("--stage-data", type=Path, metavar="DIR", help="copy the paper images from "
                   "a local copy into dataset/ and print the folders to carry; no lease")
    p.add_argument("--unpack", type=Path, metavar="DIR", help="bring a lease's files into the "
                   "tree; no lease")
    args = p.parse_args(argv)
    if args.stage_data:
        try:
            carry = stage_data(args.stage_data)
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print("carry: " + json.dumps(carry))
        return 0
    if args.unpack:
        return unpack_lease(args.unpack)
    if not args.out:
        p.error("--out is required for a lease")
    if args.seconds < 30:
        p.error("--seconds must be at least 30")
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        p.error(f"--out {args.out}: cannot be the folder that comes back ({e.strerror or e})")
    if args.device is None:
        import torch
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return run_lease(args)


if __name__ == "__main__":
    sys.exit(main())
