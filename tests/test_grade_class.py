"""Grading a class in a sandbox: a prepared class of hostile submissions, each contained.

The class answers the fixture assignment (tools/fixture_chapter.py, two questions): a right
submission, a blank one, and one each that writes outside its folder, reads the teacher's
home, opens network connections, loops forever, allocates far more memory than the limit,
forks without end, deletes every file it can reach, and is not valid JSON; plus a plain
notebook that is not an assignment and a file that is not a notebook. Grading must finish
with one row each, the reason for each that could not be graded, full marks for the right
one, and nothing outside the sandboxes changed (every file the test made is hashed before
and after; the loopback server counts connections; leftover processes are looked for).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import grade  # noqa: E402
import sandbox  # noqa: E402
from fixture_chapter import HIDDEN_MESSAGE, PUBLIC_MESSAGE, assign_fixture  # noqa: E402

BWRAP = sandbox.bwrap_problem()
needs_bwrap = pytest.mark.skipif(BWRAP is not None, reason=f"no sandbox here: {BWRAP}")
RIGHT = "def triple(x):\n    return 3 * x"
LIMITS = sandbox.Limits(seconds=30, memory=3 * sandbox.GIB, processes=96)


def tree_digest(folder: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file under ``folder`` (but ``skip``) with the SHA-256 of its bytes."""
    digest = {}
    for p in sorted(folder.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        digest[str(p.relative_to(folder))] = (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
    return digest


class Listener:
    """A TCP server on the host's loopback that counts the connections it accepts."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port, self.accepted, self.running = self.sock.getsockname()[1], 0, True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()
            except OSError:
                pass

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def attacks(world: dict) -> dict[str, dict[str, str]]:
    """Each hostile student's answer cells (q1's, q2's), given the paths of the world."""
    token = world["token"]
    spawn = f"import subprocess\nsubprocess.Popen(['sleep', '{token}'])\n"
    return {
        "right": {"q1": RIGHT, "q2": "answer = 42"},
        "writes_outside": {"q1": RIGHT, "q2": (
            f"for target in [{world['outside']!r}, {world['submissions']!r} + '/x.ipynb',\n"
            f"               {world['home']!r} + '/planted', '../../escaped.txt']:\n"
            "    try:\n        open(target, 'w').write('pwned')\n"
            "    except OSError as err:\n        print(err)\n"
            f"answer = open({world['outside']!r}, 'w').write('pwned')")},
        "reads_home": {"q1": RIGHT, "q2": (
            "import os\nprint(os.listdir(os.path.expanduser('~')))\n"
            f"try:\n    answer = open({world['secret']!r}).read()\n"
            "except OSError as err:\n    answer = type(err).__name__")},
        "network": {"q1": RIGHT, "q2": (
            "import socket\n"
            "for host in [('127.0.0.1', %d), ('pypi.org', 443), ('1.1.1.1', 53)]:\n"
            "    try:\n        socket.create_connection(host, timeout=3).close()\n"
            "        print('reached', host)\n"
            "    except OSError as err:\n        print(host, err)\n"
            "try:\n"
            "    answer = socket.create_connection(('127.0.0.1', %d), timeout=3)\n"
            "except OSError as err:\n    answer = type(err).__name__"
            % (world["port"], world["port"]))},
        "loops_forever": {"q1": RIGHT, "q2": spawn + "while True:\n    pass"},
        "memory_hog": {"q1": RIGHT, "q2": (
            "hog = []\nwhile True:\n    hog.append(b'x' * (64 << 20))")},
        "fork_bomb": {"q1": RIGHT, "q2": spawn + "import os\nwhile True:\n    os.fork()"},
        "deletes_files": {"q1": RIGHT, "q2": (
            "import os, shutil, sys\n"
            f"for top in [{world['submissions']!r}, {world['home']!r}, {world['tools']!r},\n"
            "            '/grader', sys.prefix, os.path.expanduser('~'), '/usr/share']:\n"
            "    for d, _, files in os.walk(top, topdown=False):\n"
            "        for f in files:\n"
            "            try:\n                os.remove(os.path.join(d, f))\n"
            "            except OSError:\n                pass\n"
            "    shutil.rmtree(top, ignore_errors=True)\n"
            "answer = 42")},
    }


def fill(student_nb: Path, answers: dict[str, str], dest: Path) -> Path:
    """The student notebook with its two answer cells replaced."""
    nb = nbformat.read(student_nb, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("def triple"):
            cell.source = answers["q1"]
        elif cell.cell_type == "code" and cell.source.startswith("answer ="):
            cell.source = answers["q2"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return dest


@pytest.fixture(scope="module")
def fixture_assignment(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("assign")
    _, student, _ = assign_fixture(tmp, run_tests=False)
    return student / "99_fixture.ipynb", tmp / "out"


@pytest.fixture(scope="module")
def graded_class(fixture_assignment, tmp_path_factory):
    student_nb, assignments_dir = fixture_assignment
    world_dir = tmp_path_factory.mktemp("world")
    submissions, home, out = world_dir / "class", world_dir / "teacher_home", world_dir / "out"
    home.mkdir()
    secret = home / "secret.txt"
    secret.write_text(f"teacher-secret-{uuid.uuid4().hex}")
    listener = Listener()
    world = {"outside": str(world_dir / "outside.txt"), "submissions": str(submissions),
             "home": str(home), "secret": str(secret), "port": listener.port,
             "tools": str(ROOT / "tools"), "token": f"{time.time() % 1e5:.4f}"}
    for name, answers in attacks(world).items():
        fill(student_nb, answers, submissions / name / "99_fixture.ipynb")
    (submissions / "blank").mkdir()
    nbformat.write(nbformat.read(student_nb, as_version=4),
                   submissions / "blank" / "99_fixture.ipynb")
    (submissions / "not_json").mkdir()
    (submissions / "not_json" / "99_fixture.ipynb").write_text('{"cells": [ oops')
    (submissions / "not_assignment").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), submissions / "not_assignment" / "mine.ipynb")
    (submissions / "not_notebook").mkdir()
    (submissions / "not_notebook" / "answers.txt").write_text("42")
    before = tree_digest(world_dir)
    before_tools = tree_digest(ROOT / "tools")
    start = time.monotonic()
    try:
        code = grade.main([str(submissions), "--class", "--out", str(out), "--assignments",
                           str(assignments_dir), "--jobs", "2", "--quiet",
                           "--seconds", str(LIMITS.seconds),
                           "--memory", str(LIMITS.memory / sandbox.GIB),
                           "--processes", str(LIMITS.processes)])
    finally:
        listener.close()
    seconds = time.monotonic() - start
    rows = list(csv.DictReader((out / "grades.csv").open(encoding="utf-8")))
    return {"code": code, "rows": {r["student"]: r for r in rows}, "out": out,
            "world": world, "world_dir": world_dir, "before": before, "listener": listener,
            "before_tools": before_tools, "seconds": seconds}


@needs_bwrap
def test_every_submission_gets_one_row(graded_class):
    assert graded_class["code"] == 0
    assert set(graded_class["rows"]) == {
        "right", "blank", "writes_outside", "reads_home", "network", "loops_forever",
        "memory_hog", "fork_bomb", "deletes_files", "not_json", "not_assignment",
        "not_notebook"}
    print(f"graded the class in {graded_class['seconds']:.0f} s")


@needs_bwrap
def test_right_full_marks_blank_zero(graded_class):
    rows = graded_class["rows"]
    assert rows["right"]["status"] == "graded"
    assert (rows["right"]["q1"], rows["right"]["q2"], rows["right"]["total"]) == ("1", "1", "2")
    assert rows["blank"]["status"] == "graded" and rows["blank"]["total"] == "0"
    report = json.loads((graded_class["out"] / "grades.json").read_text())
    blank = next(r for r in report["rows"] if r["student"] == "blank")
    assert PUBLIC_MESSAGE in blank["questions"]["q1"]["reason"]
    assert HIDDEN_MESSAGE in blank["questions"]["q1"]["reason"]


CGROUP = sandbox.limit_method(LIMITS).startswith("cgroup")


@needs_bwrap
@pytest.mark.parametrize("student, reason", [
    ("loops_forever", "timed out"), ("memory_hog", "ran out of memory"),
    ("fork_bomb", "too many processes"), ("not_json", "not valid JSON"),
    ("not_assignment", "not an assignment"), ("not_notebook", "not a notebook"),
])
def test_reasons(graded_class, student, reason):
    row = graded_class["rows"][student]
    if not CGROUP and student in ("memory_hog", "fork_bomb") and row["status"] == "graded":
        # Under ulimit (no writable cgroup, e.g. not root) the allocation or the fork fails
        # inside the cell instead: contained, but only the lost marks tell.
        assert row["q2"] == "0", row
        return
    assert reason in row["status"], row
    assert row["total"] == ""


@needs_bwrap
def test_nothing_outside_changed(graded_class):
    world_dir = graded_class["world_dir"]
    after = tree_digest(world_dir, skip=graded_class["out"])
    assert after == graded_class["before"]
    assert tree_digest(ROOT / "tools") == graded_class["before_tools"]
    assert not Path(graded_class["world"]["outside"]).exists()
    rows = graded_class["rows"]
    for name in ("writes_outside", "reads_home", "network"):
        assert rows[name]["status"] == "graded", rows[name]
        assert rows[name]["q1"] == "1", rows[name]  # their right q1 still counts
    # Deleting its own sandbox's /tmp takes otter's working folder with it: reported.
    assert rows["deletes_files"]["status"].startswith("crashed"), rows["deletes_files"]
    for name in ("writes_outside", "reads_home", "network"):
        assert rows[name]["q2"] == "0", rows[name]


@needs_bwrap
def test_secret_and_network_contained(graded_class):
    secret = Path(graded_class["world"]["secret"]).read_text()
    out = graded_class["out"]
    for f in ("grades.csv", "grades.json", "report.html"):
        assert secret not in (out / f).read_text()
    report = json.loads((out / "grades.json").read_text())
    reasons = {r["student"]: r["questions"].get("q2", {}).get("reason") for r in report["rows"]}
    # Each answer is the error its attempt met, which the failed check shows.
    assert "got 'FileNotFoundError'" in reasons["reads_home"], reasons["reads_home"]
    assert "got 'ConnectionRefusedError'" in reasons["network"], reasons["network"]
    assert graded_class["listener"].accepted == 0


@needs_bwrap
def test_no_process_left(graded_class):
    token = graded_class["world"]["token"]
    left = subprocess.run(["pgrep", "-f", f"sleep {token}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"processes left running: {left.stdout}"


@needs_bwrap
def test_report_names_reasons_and_isolation(graded_class):
    page = (graded_class["out"] / "report.html").read_text()
    assert "bubblewrap sandbox" in page and "<svg" in page
    for reason in ("timed out", "ran out of memory", "too many processes", "not valid JSON"):
        assert reason in page
    assert "<script" not in page.lower()


def test_refuses_without_any_sandbox(monkeypatch):
    monkeypatch.setattr(grade, "docker_answers", lambda: False)
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap is not installed")
    with pytest.raises(sandbox.SandboxError, match="refusing to grade.*--no-sandbox"):
        grade.choose_isolation("auto")
    assert grade.choose_isolation("auto", no_sandbox=True) == "none"


def test_docker_used_when_daemon_answers(monkeypatch):
    monkeypatch.setattr(grade, "docker_answers", lambda: True)
    assert grade.choose_isolation("auto") == "docker"
    monkeypatch.setattr(grade, "docker_answers", lambda: False)
    with pytest.raises(sandbox.SandboxError, match="no Docker daemon"):
        grade.choose_isolation("docker")


def test_limits_refuse_nonsense():
    with pytest.raises(ValueError, match="seconds must be a number >= 1"):
        sandbox.Limits(seconds=0)
    with pytest.raises(ValueError, match="memory"):
        sandbox.Limits(memory=1000)


def test_scores_checked_against_autograder():
    points = {"q1": 2.0, "q2": 1.0}
    ok = grade.check_scores({"questions": {"q1": {"score": 2}, "q2": {"score": 0}}}, points)
    assert ok["q1"]["passed"] and not ok["q2"]["passed"]
    for bad in ({"questions": {"q1": {"score": 3}, "q2": {"score": 0}}},
                {"questions": {"q1": {"score": 2}}},
                {"questions": {"q1": {"score": "2"}, "q2": {"score": 0}}}, ["x"]):
        with pytest.raises(grade.NotGradable):
            grade.check_scores(bad, points)


def test_discover_names_students(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "01_vgg_blocks.ipynb").write_text("{}")
    (tmp_path / "bob.ipynb").write_text("{}")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "bob-checkpoint.ipynb").write_text("{}")
    assert [s for s, _ in grade.discover(tmp_path)] == ["alice", "bob"]
    with pytest.raises(ValueError, match="not a folder"):
        grade.discover(tmp_path / "nope")


def test_docker_path_reads_otters_grades(fixture_assignment, tmp_path, monkeypatch):
    # Where a Docker daemon answers, otter grade runs the containers; here a stand-in writes
    # final_grades.csv as otter 7 does, and the rows must come out of it.
    import otter.grade

    student_nb, assignments_dir = fixture_assignment
    folder = tmp_path / "class"
    fill(student_nb, {"q1": RIGHT, "q2": "answer = 42"}, folder / "ann" / "99_fixture.ipynb")
    fill(student_nb, {"q1": RIGHT, "q2": "while True: pass"},
         folder / "ben" / "99_fixture.ipynb")
    (folder / "cy.txt").write_text("x")
    calls = []

    def fake_otter_grade(*, name, paths, output_dir, autograder, containers, timeout,
                         no_network):
        calls.append((name, containers, timeout, no_network))
        files = sorted(Path(paths[0]).glob("*.ipynb"))
        rows = ["file,q1,q2,total_points_earned,percent_correct,grading_status",
                "points-per-question,1.0,1.0,2.0,--,--",
                f"{files[0]},1.0,1.0,2.0,100.0,Completed",
                f"{files[1]},0,0,0,0,Executing '{files[1]}' in docker container "
                f"timed out in {timeout} seconds"]
        (Path(output_dir) / "final_grades.csv").write_text("\n".join(rows) + "\n")

    monkeypatch.setattr(otter.grade, "main", fake_otter_grade)
    grader = grade.Grader("docker", sandbox.Limits(seconds=60), assignments_dir)
    rows = {r.student: r for r in grade.grade_class(grade.discover(folder), grader, jobs=3,
                                                     progress=False)}
    assert calls == [("99_fixture", 3, 60, True)]
    assert rows["ann"].graded and rows["ann"].score == rows["ann"].possible == 2
    assert rows["ben"].status == "timed out (limit 60 s)"
    assert rows["cy"].status.startswith("not a notebook")


@needs_bwrap
def test_sandbox_sees_binds_below_tmp_and_writes_nothing_outside(tmp_path):
    # A checkout under /tmp (as CI's clean clone) must still be visible inside, read-only,
    # above the sandbox's own empty /tmp; its result comes back through the pipe.
    script = tmp_path / "probe.py"
    script.write_text(
        "import os, json\n"
        "fd = int(os.environ['RESULT_FD'])\n"
        "try:\n    open(__file__, 'a').write('#')\n    wrote = True\n"
        "except OSError:\n    wrote = False\n"
        "os.write(fd, json.dumps({'wrote': wrote, 'tmp': sorted(os.listdir('/tmp')),\n"
        "                         'home': sorted(os.listdir(os.path.expanduser('~root')))\n"
        "                         if os.path.isdir(os.path.expanduser('~root')) else []}\n"
        "                        ).encode())\n")
    ro = {p: p for p in grade.sandbox_paths() if not p.endswith("grade_runner.py")}
    ro[str(script)] = str(script)
    out = sandbox.run_sandboxed([sys.executable, str(script)], ro_paths=ro,
                                env={"PATH": "/usr/bin:/bin"}, limits=sandbox.Limits(60))
    assert out.returncode == 0, out.log
    seen = json.loads(out.result)
    assert seen["wrote"] is False
    # Of root's home, only the folders on the way to a bound path (pyenv's Python) show.
    home = Path(os.path.expanduser("~root"))
    on_the_way = {Path(p).relative_to(home).parts[0] for p in ro if Path(p).is_relative_to(home)}
    assert set(seen["home"]) <= on_the_way, seen["home"]
    assert script.read_text().endswith("encode())\n")  # unchanged
