"""Everything that needs a GPU, in one command that fits a short loan of a GPU machine.

Usage:  python tools/gpu_check.py [--out DIR] [--data-root DIR] [--wheels DIR]
                                  [--parts tests,bench,chapters,experiments] [--dry-run]

Parts, each with its own time budget (together under 8 minutes), each printing one summary
line:
- ``tests``: ``pytest -m cuda`` (tests/test_cuda.py: bf16 and fp16+GradScaler steps,
  channels_last, torch.compile, a real out-of-memory error, one-process NCCL DDP);
- ``bench``: ``python -m vgg_book.bench --device cuda --compile`` (the full benchmark);
- ``chapters``: the reader notebooks of chapters 5 and 7 executed on the GPU (their GPU
  branches: the full recipes), from ``DIR/chapters`` so that their runs land there; their
  run times go to ``DIR/chapter-times-cuda-DATE.json`` (the intro page's GPU column);
- ``experiments``: ``python -m vgg_book.experiments batch-norm --size gpu`` (the GPU-sized
  version of chapter 5's batch-norm experiment: 5 paired seeds of the CPU recipe's network
  at full length; the other experiments do not fit this budget: run them on a longer loan).
Everything goes to ``DIR`` (default ``_build/gpu-check``): JSON results, executed notebooks,
``cuda-tests.xml``, ``gpu-check.log`` (all output) and ``summary.json``. The machine needs no
network: ``--wheels`` unpacks a folder of wheels carried along (``make gpu-wheels`` fills
``.whl/`` with what ``tools/gpu-requirements.txt`` lists, and d2l without its pinned
dependencies) into ``--site`` and puts it first on the path, and ``--data-root`` points at
the four Fashion-MNIST files. ``docs/GPU.md`` has the exact invocation.

``--dry-run`` runs the same plumbing on the CPU in seconds: the CUDA tests (skipped), a quick
CPU benchmark (a smoke test) and only the set-up and import cells of the two chapters.
Exit status 1 when any part failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from vgg_book.results import notebook_seconds  # noqa: E402
PARTS = ("tests", "bench", "chapters", "experiments")
# seconds, under 9 minutes in all (chapter 7 shows stored experiments: no GPU training)
BUDGET_S = {"tests": 90, "bench": 240, "chapters": 120, "experiments": 90}
GPU_EXPERIMENT = "batch-norm"
CHAPTERS = ("05_training", "07_after_vgg")


class Log:
    """Writes to the terminal and to ``gpu-check.log``."""

    def __init__(self, path: Path):
        self.file = path.open("a", encoding="utf-8")

    def __call__(self, text: str, echo: bool = True) -> None:
        self.file.write(text.rstrip("\n") + "\n")
        self.file.flush()
        if echo:
            print(text.rstrip("\n"), flush=True)


def run_logged(cmd: list, log: Log, timeout: int, env: dict, cwd: Path = ROOT):
    """Run ``cmd`` with its output in the log; (return code or None on time-out, output)."""
    log(f"$ {' '.join(map(str, cmd))}", echo=False)
    try:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                              cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else err.stdout or ""
        log(out, echo=False)
        return None, out
    log(proc.stdout + proc.stderr, echo=False)
    return proc.returncode, proc.stdout + proc.stderr


def install_wheels(wheels: Path, site: Path, log: Log, env: dict) -> str | None:
    """Unpack the carried wheels into ``site`` (no index, no dependency resolution: the folder
    holds them all) and put it first on the path of this process and its children; None when
    fine, else what went wrong."""
    files = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if not files:
        return f"no wheels in {wheels}: run `make gpu-wheels` here and carry .whl/"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
           "--no-compile", "--no-cache-dir", "--upgrade", "--target", site, *files]
    code, out = run_logged(cmd, log, 300, env)
    if code != 0:
        return f"pip failed: {out.strip().splitlines()[-1] if out.strip() else code}"
    sys.path.insert(0, str(site))
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return None


def part_tests(out: Path, log: Log, env: dict, dry: bool) -> tuple[bool, str]:
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider",
           ROOT / "tests" / "test_cuda.py", "--junitxml", out / "cuda-tests.xml"]
    code, text = run_logged(cmd, log, BUDGET_S["tests"], env)
    last = [l for l in text.strip().splitlines() if " in " in l and ("passed" in l
            or "skipped" in l or "failed" in l)]
    summary = last[-1].strip("= ") if last else f"exit {code}"
    if code is None:
        return False, f"timed out after {BUDGET_S['tests']} s"
    if dry:  # on a CPU every CUDA test must be skipped, none may fail
        return code == 0 and "skipped" in summary and "failed" not in summary, summary
    return code == 0 and "skipped" not in summary, summary


def part_bench(out: Path, log: Log, env: dict, dry: bool, data_root: str | None):
    cmd = [sys.executable, "-m", "vgg_book.bench", "--out-dir", out]
    cmd += ["--device", "cpu", "--quick"] if dry else ["--device", "cuda", "--compile"]
    if data_root:
        cmd += ["--data-root", data_root]
    code, text = run_logged(cmd, log, BUDGET_S["bench"], env)
    if code is None:
        return False, f"timed out after {BUDGET_S['bench']} s"
    files = sorted(out.glob("bench-*.json"))
    if code != 0 or not files:
        return False, f"exit {code}: {text.strip().splitlines()[-1] if text.strip() else ''}"
    result = json.loads(files[-1].read_text())
    ours = result["ours"]["images_per_s"]
    speedup = result["speedup_vs_d2l"]
    return True, (f"{files[-1].name}: ours {ours:,.0f} images/s"
                  + (f", {speedup:.2f}x d2l" if speedup else ", d2l not measured"))


def part_experiments(out: Path, log: Log, env: dict, dry: bool) -> tuple[bool, str]:
    cmd = [sys.executable, "-m", "vgg_book.experiments", GPU_EXPERIMENT, "--out-dir", out,
           "--size", "tiny" if dry else "gpu"]
    code, text = run_logged(cmd, log, BUDGET_S["experiments"], env)
    if code is None:
        return False, f"timed out after {BUDGET_S['experiments']} s"
    path = out / f"experiment-{GPU_EXPERIMENT}-{'tiny' if dry else 'gpu'}.json"
    if code != 0 or not path.is_file():
        return False, f"exit {code}: {text.strip().splitlines()[-1] if text.strip() else ''}"
    result = json.loads(path.read_text())
    first = result["comparisons"][0]
    return True, (f"{path.name}: {first['a']} - {first['b']} {first['mean']:+.4f}, "
                  f"{first['verdict']} ({result['machine']['device_name']})")


def part_chapters(out: Path, log: Log, env: dict, dry: bool) -> tuple[bool, str]:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    work = out / "chapters"
    work.mkdir(exist_ok=True)
    done, deadline, seconds = [], time.monotonic() + BUDGET_S["chapters"], {}
    for name in CHAPTERS:
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        if dry:  # the set-up and import cells only
            code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"][:2]
            nb.cells = nb.cells[:code[-1] + 1]
        left = int(deadline - time.monotonic())
        if left <= 0:
            return False, f"{', '.join(done) or 'none'} done; out of time before {name}"
        t0 = time.perf_counter()
        client = NotebookClient(nb, timeout=left, kernel_name="python3",
                                resources={"metadata": {"path": str(work)}})
        try:
            client.execute(env=env)
        except CellExecutionError as err:
            nbformat.write(nb, work / f"{name}.ipynb")
            return False, f"{name}: {str(err).strip().splitlines()[-1][:200]}"
        except TimeoutError:
            return False, f"{name}: timed out ({BUDGET_S['chapters']} s for both chapters)"
        nbformat.write(nb, work / f"{name}.ipynb")
        done.append(f"{name} {time.perf_counter() - t0:.0f} s")
        seconds[name] = round(notebook_seconds(nb), 1)
    write_chapter_times(out, seconds, dry)
    return True, ", ".join(done) + (" (set-up and imports only)" if dry else "")


def write_chapter_times(out: Path, seconds: dict, dry: bool) -> Path:
    """``chapter-times-<device>-<date>.json``: each chapter's run time, for the intro page."""
    import torch

    device = "cpu" if dry else "cuda"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (dry run)"
    path = out / f"chapter-times-{device}-{time.strftime('%Y-%m-%d')}.json"
    record = {"device": device, "device_name": name, "date": time.strftime("%Y-%m-%d"),
              "dry_run": dry, "seconds": seconds}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "gpu-check")
    parser.add_argument("--data-root", help="folder with the four Fashion-MNIST files")
    parser.add_argument("--wheels", type=Path, help="install the carried wheels from here")
    parser.add_argument("--site", type=Path, default=Path("/tmp/vgg-book-site"),
                        help="where --wheels are unpacked (put first on PYTHONPATH)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, from {', '.join(PARTS)}")
    parser.add_argument("--dry-run", action="store_true", help="the plumbing, on the CPU")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if args.data_root and not Path(args.data_root).is_dir():
        parser.error(f"--data-root {args.data_root} is not a folder")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu-check.log")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    if args.data_root:
        env["VGG_BOOK_DATA"] = str(Path(args.data_root).resolve())  # the chapters' loader too
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA GPU here; use --dry-run to check the plumbing on a CPU")
    summary, failed = {}, 0
    if args.wheels:
        problem = install_wheels(args.wheels.resolve(), args.site.resolve(), log, env)
        summary["wheels"] = {"ok": problem is None, "summary": problem or "installed"}
        log(f"{'FAIL' if problem else 'ok  '} wheels: {problem or 'installed'}")
        if problem:
            log("gpu-check: 0 passed, 1 failed (the wheels would not install)")
            return 1
    for part in parts:
        t0 = time.perf_counter()
        if part == "tests":
            ok, text = part_tests(out, log, env, args.dry_run)
        elif part == "bench":
            ok, text = part_bench(out, log, env, args.dry_run, args.data_root)
        elif part == "experiments":
            ok, text = part_experiments(out, log, env, args.dry_run)
        else:
            ok, text = part_chapters(out, log, env, args.dry_run)
        seconds = time.perf_counter() - t0
        summary[part] = {"ok": ok, "summary": text, "seconds": round(seconds, 1)}
        log(f"{'ok  ' if ok else 'FAIL'} {part} ({seconds:.0f} s): {text}")
        failed += not ok
    summary["dry_run"] = args.dry_run
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"gpu-check{' (dry run)' if args.dry_run else ''}: {len(parts) - failed} passed, "
        f"{failed} failed; results in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
