"""Grade a submitted chapter notebook and write its score as JSON.

Usage:  .venv/bin/python tools/grade.py SUBMISSION.ipynb [--autograder ZIP] [--out FILE]

The submission is executed top to bottom here (no Docker), then every test of the
assignment, hidden ones included, is run against it. The autograder zip defaults to the
newest one ``make assignments`` wrote for the submission's assignment (otter stores the
assignment name in the notebook's metadata). The JSON (default: next to the submission,
``SUBMISSION.score.json``) holds the total, the possible points and, per question, its
score and otter's message; the exit status is 0 whenever grading ran, whatever the score.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ASSIGNMENTS = ROOT / "_build" / "assignments"


def find_autograder(submission: Path, assignments: Path = DEFAULT_ASSIGNMENTS) -> Path:
    """The newest autograder zip for the submission's assignment; ``ValueError`` if none."""
    nb = nbformat.read(submission, as_version=4)
    name = nb.metadata.get("otter", {}).get("assignment_name")
    if not name:
        raise ValueError(
            f"{submission} has no otter assignment name in its metadata; grade a notebook "
            "from _build/assignments/student/, or pass --autograder ZIP")
    zips = sorted((assignments / "autograder" / name).glob(f"{name}-autograder_*.zip"))
    if not zips:
        raise ValueError(f"no autograder zip for {name!r} in {assignments / 'autograder'}; "
                         "run `make assignments` first, or pass --autograder ZIP")
    return zips[-1]


def grade(submission: Path, autograder: Path) -> dict:
    """Run the submission and all tests; return a JSON-ready dict with the scores."""
    from otter.api import grade_submission  # heavy import: only when grading

    results = grade_submission(str(submission), str(autograder), quiet=True)
    questions = {}
    for name in sorted(results.test_files):
        result = results.get_result(name)
        message = result.summary(public_only=False).strip()
        # The failing asserts' own messages, e.g. "AssertionError: expected 12, got None".
        errors = [l.strip() for l in message.splitlines() if re.match(r"\s*\w+Error\b", l)]
        questions[name] = {"score": result.score, "possible": result.possible,
                           "passed": result.passed_all,
                           "reason": None if result.passed_all else ("; ".join(errors) or "failed"),
                           "message": message}
    return {"submission": str(submission), "autograder": autograder.name,
            "score": results.total, "possible": results.possible,
            "error": repr(results.catastrophic_error) if results.catastrophic_error else None,
            "questions": questions}


def write_json(data: dict, path: Path) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("submission", type=Path)
    parser.add_argument("--autograder", type=Path, help="autograder zip (default: newest)")
    parser.add_argument("--out", type=Path, help="score JSON (default: SUBMISSION.score.json)")
    args = parser.parse_args(argv)
    if not args.submission.is_file() or args.submission.suffix != ".ipynb":
        parser.error(f"{args.submission} is not a notebook file (.ipynb)")
    try:
        autograder = args.autograder or find_autograder(args.submission)
    except ValueError as err:
        parser.error(str(err))
    data = grade(args.submission.resolve(), autograder.resolve())
    out = args.out or args.submission.with_suffix(".score.json")
    write_json(data, out)
    print(f"{args.submission.name}: {data['score']:g} / {data['possible']:g} -> {out}")
    for name, q in data["questions"].items():
        print(f"  {name}: {q['score']:g} / {q['possible']:g}"
              + (f"  ({q['reason']})" if q["reason"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
