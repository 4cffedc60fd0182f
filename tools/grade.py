"""Grade student notebooks, one or a whole class, each in a sandbox.

Usage:
  .venv/bin/python tools/grade.py SUBMISSION.ipynb [--autograder ZIP] [--out FILE]
  .venv/bin/python tools/grade.py --class FOLDER [--out DIR] [--jobs N]
  either with [--seconds S] [--memory GIB] [--processes N]
              [--isolation auto|docker|bubblewrap] [--no-sandbox]

Each submission is matched to its autograder by the assignment name otter keeps in the
notebook's metadata (the newest zip ``make assignments`` wrote to
``_build/assignments/autograder/NAME/``), then executed top to bottom with every test,
hidden ones included. Isolation (``--isolation auto``): otter's own Docker containers
when a Docker daemon answers, else a bubblewrap sandbox (``tools/sandbox.py``: read-only
system, a private /tmp as the only writable place, no network, its own process namespace,
a wall-clock, memory and process limit); with neither, grading is refused unless
``--no-sandbox`` says to run the students' code with your own rights.

One submission writes ``SUBMISSION.score.json`` beside it (or ``--out``). A class (every
file under FOLDER; a student is a sub-folder's name, or the file's name for files at the
top) writes ``grades.csv`` (a row per student and chapter, a column per question, the
total) and ``report.html`` to ``--out`` (default ``_build/grades``). A submission that
cannot be graded (not a notebook, not an assignment, timed out, out of memory, too many
processes, crashed) gets its reason and never stops the others. Every file here is written
by this process, through a temp file and a rename, never by a submission.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import csv
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import sandbox  # noqa: E402
from sandbox import GIB, Limits, SandboxError  # noqa: E402

DEFAULT_ASSIGNMENTS = ROOT / "_build" / "assignments"
DEFAULT_OUT = ROOT / "_build" / "grades"
#: A notebook larger than this is not read (a chapter's student notebook is about 100 kB).
MAX_BYTES = 50 << 20
SKIP_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


class NotGradable(Exception):
    """A submission that cannot be graded; the message is the reason the report shows."""


@dataclass
class Graded:
    """One submission's outcome: ``status`` is 'graded' or the reason it could not be."""
    student: str
    file: str
    assignment: str | None = None
    status: str = "graded"
    score: float | None = None
    possible: float | None = None
    questions: dict = field(default_factory=dict)
    seconds: float = 0.0
    peak_memory: int | None = None
    peak_processes: int | None = None

    @property
    def graded(self) -> bool:
        return self.status == "graded"


# ---------------------------------------------------------------------------------------
# Finding submissions and their autograders
# ---------------------------------------------------------------------------------------

def assignment_name(path: Path) -> str:
    """The otter assignment name of the notebook at ``path``; ``NotGradable`` says why not."""
    if path.suffix != ".ipynb":
        raise NotGradable(f"not a notebook: {path.name} is not an .ipynb file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise NotGradable(f"not a notebook: {size / 2**20:.0f} MB, more than a notebook "
                          f"could be ({MAX_BYTES >> 20} MB)")
    try:
        nb = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NotGradable(f"not a notebook: the file is not valid JSON ({err})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotGradable("not a notebook: the JSON has no list of cells")
    otter = nb.get("metadata", {}).get("otter") if isinstance(nb.get("metadata"), dict) \
        else None
    name = otter.get("assignment_name") if isinstance(otter, dict) else None
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]{1,100}", name):
        raise NotGradable("not an assignment: the notebook has no otter assignment name in "
                          "its metadata; students must hand in the notebook from "
                          "_build/assignments/student/")
    return name


def find_autograder(submission: Path, assignments: Path = DEFAULT_ASSIGNMENTS) -> Path:
    """The newest autograder zip for the submission's assignment; ``ValueError`` if none."""
    try:
        name = assignment_name(submission)
    except NotGradable as err:
        raise ValueError(f"{submission}: {err}; or pass --autograder ZIP") from None
    return autograder_for(name, assignments)


def autograder_for(name: str, assignments: Path = DEFAULT_ASSIGNMENTS) -> Path:
    zips = sorted((assignments / "autograder" / name).glob(f"{name}-autograder_*.zip"))
    if not zips:
        raise ValueError(f"no autograder zip for {name!r} in {assignments / 'autograder'}; "
                         "run `make assignments` first, or pass --autograder ZIP")
    return zips[-1]


def question_points(autograder: Path) -> dict[str, float]:
    """Each question of the autograder zip with its possible points (read by otter)."""
    from otter.test_files import OKTestFile

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(autograder) as z:
        names = [n for n in z.namelist() if re.fullmatch(r"tests/[\w.-]+\.py", n)]
        z.extractall(tmp, members=names)
        return {Path(n).stem: OKTestFile.from_file(str(Path(tmp) / n)).possible
                for n in sorted(names)}


def discover(folder: Path) -> list[tuple[str, Path]]:
    """Every submission under ``folder`` as (student, path): a file in a sub-folder belongs
    to the student named by that sub-folder, a file at the top to its own name."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of submissions")
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if (not path.is_file() or path.name in SKIP_NAMES
                or any(p.startswith(".") or p in ("__MACOSX", ".ipynb_checkpoints")
                       for p in rel.parts)):
            continue
        student = rel.parts[0] if len(rel.parts) > 1 else path.stem
        found.append((student, path))
    return found


# ---------------------------------------------------------------------------------------
# Isolation
# ---------------------------------------------------------------------------------------

def docker_answers() -> bool:
    """Whether a Docker daemon answers (the client alone is not enough)."""
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True,
                              timeout=15).returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        return False


def choose_isolation(requested: str = "auto", no_sandbox: bool = False) -> str:
    """'docker', 'bubblewrap' or 'none'; ``SandboxError`` when the request cannot be met."""
    if no_sandbox:
        return "none"
    if requested in ("auto", "docker") and docker_answers():
        return "docker"
    if requested == "docker":
        raise SandboxError("--isolation docker: no Docker daemon answers `docker info`")
    problem = sandbox.bwrap_problem()
    if problem is None:
        return "bubblewrap"
    raise SandboxError(
        f"refusing to grade: students' code would run with your rights. No Docker daemon "
        f"answers, and {problem}. Install bubblewrap or start Docker, or pass --no-sandbox "
        "to grade without isolation")


def describe_isolation(isolation: str, limits: Limits) -> str:
    """One sentence for the terminal and the report: which isolation and limits applied."""
    if isolation == "docker":
        return (f"otter's Docker containers (no network, {limits.seconds:g} s per "
                "submission; otter sets no memory or process limit)")
    method = sandbox.limit_method(limits)
    limits_text = f"{limits.describe()} by {method}"
    if isolation == "bubblewrap":
        return ("bubblewrap sandbox (system read-only, a private /tmp the only writable "
                f"place, no network, own process namespace); limits: {limits_text}")
    return f"no sandbox (--no-sandbox: students' code ran with your rights); {limits_text}"


# ---------------------------------------------------------------------------------------
# Grading one submission
# ---------------------------------------------------------------------------------------

def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{name} is not installed in {sys.prefix}")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def sandbox_paths() -> dict[str, str]:
    """Host paths the sandbox sees read-only: Python, the venv, vgg_book and the runner."""
    paths = {}
    for p in {sys.prefix, sys.base_prefix, os.path.realpath(sys.base_prefix),
              str(package_dir("vgg_book"))}:
        if not p.startswith("/usr/"):
            paths[p] = p
    paths[str(TOOLS / "grade_runner.py")] = "/grader/run.py"
    return paths


def classify(outcome: sandbox.Outcome, limits: Limits) -> str | None:
    """The reason a run could not be graded, or ``None`` when it ended normally."""
    if outcome.out_of_memory:
        return f"ran out of memory (limit {limits.memory / GIB:.3g} GiB)"
    if outcome.process_limit:
        return f"started too many processes (limit {limits.processes})"
    if outcome.timed_out:
        return f"timed out (limit {limits.seconds:g} s)"
    if outcome.returncode != 0 or not outcome.result:
        lines = [l for l in outcome.log.splitlines() if l.strip()]
        errors = [l for l in lines if re.match(r"\w*(Error|Exception)\b", l.strip())]
        last = (errors or lines or ["no output"])[-1].strip()[:300]
        if "MemoryError" in last:
            return f"ran out of memory (limit {limits.memory / GIB:.3g} GiB): {last}"
        return f"crashed (exit {outcome.returncode}): {last}"
    return None


def check_scores(data: object, points: dict[str, float]) -> dict:
    """The runner's JSON checked against the autograder: the same questions, each score
    between 0 and its points. ``NotGradable`` if the result is anything else."""
    if not isinstance(data, dict) or not isinstance(data.get("questions"), dict):
        raise NotGradable("crashed: the grader's result was not readable")
    got = data["questions"]
    if set(got) != set(points):
        raise NotGradable(f"crashed: grading reported questions {sorted(got)}, the "
                          f"autograder has {sorted(points)}")
    questions = {}
    for name, possible in points.items():
        q = got[name]
        score = q.get("score") if isinstance(q, dict) else None
        if not isinstance(score, (int, float)) or not 0 <= score <= possible:
            raise NotGradable(f"crashed: question {name}'s score {score!r} is not between "
                              f"0 and {possible:g}")
        message = str(q.get("message", ""))[:4000]
        passed = score == possible
        errors = [l.strip() for l in message.splitlines()
                  if re.match(r"\s*\w+(Error|Exception)\b", l)]
        questions[name] = {"score": float(score), "possible": float(possible),
                           "passed": passed,
                           "reason": None if passed else ("; ".join(errors)[:600] or "failed"),
                           "message": message}
    return questions


@dataclass
class Grader:
    """Grades submissions with one isolation and one set of limits."""
    isolation: str
    limits: Limits = Limits()
    assignments: Path = DEFAULT_ASSIGNMENTS

    def __post_init__(self):
        self._points: dict[Path, dict[str, float]] = {}

    def points(self, autograder: Path) -> dict[str, float]:
        if autograder not in self._points:
            self._points[autograder] = question_points(autograder)
        return self._points[autograder]

    def grade(self, student: str, path: Path, autograder: Path | None = None) -> Graded:
        """Grade one submission; never raises for anything the submission does."""
        row = Graded(student=student, file=str(path))
        try:
            row.assignment = assignment_name(path)
            autograder = autograder or autograder_for(row.assignment, self.assignments)
        except (NotGradable, ValueError, OSError) as err:
            row.status = str(err)
            return row
        start = time.monotonic()
        try:
            questions = self._run(path, autograder, row)
        except NotGradable as err:
            row.status = str(err)
            return row
        except Exception as err:  # the grader's own failure must not stop the class
            row.status = f"crashed: the grader failed: {err!r}"[:400]
            return row
        finally:
            row.seconds = time.monotonic() - start
        row.questions = questions
        row.score = sum(q["score"] for q in questions.values())
        row.possible = sum(q["possible"] for q in questions.values())
        return row

    def _run(self, path: Path, autograder: Path, row: Graded) -> dict:
        points = self.points(autograder)
        safe_name = re.sub(r"[^\w.-]", "_", path.name)
        inside = f"/grader/submission/{safe_name}"
        ro = dict(sandbox_paths(), **{str(path.resolve()): inside,
                                      str(autograder.resolve()): "/grader/autograder.zip"})
        env = {"HOME": "/tmp", "TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib",
               "MPLBACKEND": "Agg", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
               "PATH": f"{sys.prefix}/bin:/usr/bin:/bin", "PYTHONHASHSEED": "0"}
        argv = [sys.executable, "/grader/run.py", inside, "/grader/autograder.zip"]
        if self.isolation == "none":
            argv = [sys.executable, str(TOOLS / "grade_runner.py"), str(path.resolve()),
                    str(autograder.resolve())]
        outcome = sandbox.run_sandboxed(argv, ro_paths=ro, env=env, limits=self.limits,
                                        sandbox=self.isolation == "bubblewrap")
        row.peak_memory, row.peak_processes = outcome.peak_memory, outcome.peak_processes
        reason = classify(outcome, self.limits)
        if reason:
            raise NotGradable(reason)
        try:
            data = json.loads(outcome.result)
        except json.JSONDecodeError:
            raise NotGradable("crashed: the grader's result was not JSON") from None
        if data.get("error"):
            raise NotGradable(f"crashed: {str(data['error'])[:300]}")
        return check_scores(data, points)

    def grade_docker(self, items: list[tuple[str, Path]], jobs: int) -> list[Graded]:
        """otter's own container grading, one ``otter grade`` run per assignment."""
        rows, groups = [], {}
        for student, path in items:
            row = Graded(student=student, file=str(path))
            try:
                row.assignment = assignment_name(path)
                groups.setdefault(row.assignment, []).append(row)
            except NotGradable as err:
                row.status = str(err)
            rows.append(row)
        for name, group in groups.items():
            try:
                zip_path = autograder_for(name, self.assignments)
                table = self._otter_grade(name, group, zip_path, jobs)
            except Exception as err:  # no zip, or the image or otter failed: the whole group
                for row in group:
                    row.status = (str(err) if isinstance(err, ValueError)
                                  else f"crashed: otter grade failed: {err!r}"[:400])
                continue
            for i, row in enumerate(group):
                self._read_otter_row(row, table.get(f"s{i:04d}.ipynb"), self.points(zip_path))
        return rows

    def _otter_grade(self, name: str, group: list[Graded], zip_path: Path,
                     jobs: int) -> dict[str, dict]:
        """``otter grade`` on copies of the group's notebooks: final_grades.csv's rows by
        file name (``s0000.ipynb``, ... in the group's order)."""
        from otter.grade import main as otter_grade

        with tempfile.TemporaryDirectory() as tmp:
            for i, row in enumerate(group):
                shutil.copy(row.file, Path(tmp) / f"s{i:04d}.ipynb")
            otter_grade(name=name, paths=[tmp], output_dir=tmp, autograder=str(zip_path),
                        containers=jobs, timeout=int(self.limits.seconds), no_network=True)
            with open(Path(tmp) / "final_grades.csv", encoding="utf-8") as f:
                return {Path(r["file"]).name: r for r in csv.DictReader(f)}

    def _read_otter_row(self, row: Graded, found: dict | None,
                        points: dict[str, float]) -> None:
        status = (found or {}).get("grading_status", "")
        if found is None:
            row.status = "crashed: otter grade gave no result"
        elif "timed out" in status.lower():
            row.status = f"timed out (limit {self.limits.seconds:g} s)"
        elif status != "Completed":
            row.status = f"crashed: {status[:300]}"
        else:
            try:
                row.questions = check_scores({"questions": {
                    q: {"score": float(found.get(q) or 0)} for q in points}}, points)
            except (NotGradable, ValueError) as err:
                row.status = str(err)
                return
            row.score = sum(q["score"] for q in row.questions.values())
            row.possible = sum(points.values())


def grade_class(items: list[tuple[str, Path]], grader: Grader, jobs: int = 1,
                progress: bool = True) -> list[Graded]:
    """Grade every (student, path), ``jobs`` at once, with a progress bar on stderr."""
    from tqdm import tqdm

    if grader.isolation == "docker":
        return grader.grade_docker(items, jobs)
    rows: list[Graded | None] = [None] * len(items)
    with futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, \
            tqdm(total=len(items), unit="notebook", disable=not progress,
                 desc="grading") as bar:
        todo = {pool.submit(grader.grade, s, p): i for i, (s, p) in enumerate(items)}
        for done in futures.as_completed(todo):
            rows[todo[done]] = row = done.result()
            bar.set_postfix_str(f"{row.student}: "
                                + (f"{row.score:g}/{row.possible:g}" if row.graded
                                   else row.status.split(":")[0]))
            bar.update()
    return rows


# ---------------------------------------------------------------------------------------
# Writing the results
# ---------------------------------------------------------------------------------------

def write_atomic(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` through a temp file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(data: dict, path: Path) -> None:
    write_atomic(json.dumps(data, indent=2) + "\n", path)


def question_columns(rows: list[Graded]) -> list[str]:
    """Every question name, in natural order (q2 before q10)."""
    names = {q for r in rows for q in r.questions}
    return sorted(names, key=lambda n: [int(t) if t.isdigit() else t
                                        for t in re.split(r"(\d+)", n)])


def grades_csv(rows: list[Graded]) -> str:
    """A row per student and chapter, a column per question, the total and the status."""
    columns = question_columns(rows)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["student", "chapter", "file", *columns, "total", "possible", "status"])
    for r in sorted(rows, key=lambda r: (r.student, r.assignment or "", r.file)):
        scores = [f"{r.questions[q]['score']:g}" if q in r.questions else ""
                  for q in columns]
        w.writerow([r.student, r.assignment or "", r.file, *scores,
                    "" if r.score is None else f"{r.score:g}",
                    "" if r.possible is None else f"{r.possible:g}", r.status])
    return out.getvalue()


def single(args, parser) -> int:
    if not args.target.is_file() or args.target.suffix != ".ipynb":
        parser.error(f"{args.target} is not a notebook file (.ipynb)")
    try:
        autograder = args.autograder or find_autograder(args.target, args.assignments)
        isolation = choose_isolation(args.isolation, args.no_sandbox)
    except (ValueError, SandboxError) as err:
        parser.error(str(err))
    if isolation == "docker":
        row = Grader(isolation, args.limits, args.assignments).grade_docker(
            [(args.target.stem, args.target)], 1)[0]
    else:
        row = Grader(isolation, args.limits, args.assignments).grade(
            args.target.stem, args.target, autograder.resolve())
    out = args.out or args.target.with_suffix(".score.json")
    data = {"submission": str(args.target), "autograder": autograder.name,
            "isolation": isolation, "status": row.status, "score": row.score,
            "possible": row.possible, "questions": row.questions}
    write_json(data, out)
    print(describe_isolation(isolation, args.limits))
    if not row.graded:
        print(f"{args.target.name}: not graded: {row.status} -> {out}")
        return 0
    print(f"{args.target.name}: {row.score:g} / {row.possible:g} -> {out}")
    for name, q in row.questions.items():
        print(f"  {name}: {q['score']:g} / {q['possible']:g}"
              + (f"  ({q['reason']})" if q["reason"] else ""))
    return 0


def whole_class(args, parser) -> int:
    import grade_report

    try:
        items = discover(args.target)
        isolation = choose_isolation(args.isolation, args.no_sandbox)
    except (ValueError, SandboxError) as err:
        parser.error(str(err))
    if not items:
        parser.error(f"{args.target} holds no files to grade")
    how = describe_isolation(isolation, args.limits)
    print(f"grading {len(items)} submissions from {args.target}: {how}", file=sys.stderr)
    grader = Grader(isolation, args.limits, args.assignments)
    rows = grade_class(items, grader, jobs=args.jobs, progress=not args.quiet)
    out = args.out or DEFAULT_OUT
    write_atomic(grades_csv(rows), out / "grades.csv")
    write_atomic(grade_report.report_html(rows, how, str(args.target)), out / "report.html")
    write_json({"isolation": isolation, "how": how, "limits": asdict(args.limits),
                "rows": [asdict(r) for r in rows]}, out / "grades.json")
    graded = sum(r.graded for r in rows)
    print(f"{graded} of {len(rows)} graded; {out / 'grades.csv'}, {out / 'report.html'}")
    for r in rows:
        if not r.graded:
            print(f"  not graded: {r.student} ({Path(r.file).name}): {r.status}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="a submitted notebook, or with --class a "
                        "folder of them")
    parser.add_argument("--class", dest="whole_class", action="store_true",
                        help="grade every file under the folder TARGET")
    parser.add_argument("--autograder", type=Path, help="autograder zip (one submission)")
    parser.add_argument("--assignments", type=Path, default=DEFAULT_ASSIGNMENTS,
                        help="where `make assignments` wrote the autograders")
    parser.add_argument("--out", type=Path, help="score JSON (one) or output folder (class)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded at once")
    parser.add_argument("--seconds", type=float, default=Limits.seconds,
                        help="wall-clock limit per submission (default %(default)g)")
    parser.add_argument("--memory", type=float, default=Limits.memory / GIB,
                        help="memory limit per submission in GiB (default %(default)g)")
    parser.add_argument("--processes", type=int, default=Limits.processes,
                        help="process limit per submission (default %(default)d)")
    parser.add_argument("--isolation", choices=["auto", "docker", "bubblewrap"],
                        default="auto")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run students' code unisolated, with your rights")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        args.limits = Limits(seconds=args.seconds, memory=int(args.memory * GIB),
                             processes=args.processes)
    except ValueError as err:
        parser.error(str(err))
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    return whole_class(args, parser) if args.whole_class else single(args, parser)


if __name__ == "__main__":
    sys.exit(main())
