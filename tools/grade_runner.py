"""Inside the sandbox: grade one submission with otter and send the scores up a pipe.

Usage (by tools/grade.py, never by hand):  python grade_runner.py SUBMISSION AUTOGRADER_ZIP
with ``$RESULT_FD`` naming a pipe's write end. The JSON sent is ``{"questions": {name:
{"score", "possible", "passed", "message"}}, "error": ...}``; the grader outside checks it
against the autograder and writes every file itself. The pipe is not inherited by the
kernel that runs the student's code, and this process is made non-dumpable so that code
in the same sandbox cannot open the pipe through /proc.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys


def no_peeking() -> None:
    """prctl(PR_SET_DUMPABLE, 0): other processes of this user cannot read /proc/PID/fd."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main() -> int:
    fd = int(os.environ["RESULT_FD"])
    os.set_inheritable(fd, False)
    no_peeking()
    submission, autograder = sys.argv[1], sys.argv[2]
    from otter.api import grade_submission

    results = grade_submission(submission, autograder, quiet=True)
    questions = {}
    for name in sorted(results.test_files):
        result = results.get_result(name)
        questions[name] = {"score": result.score, "possible": result.possible,
                           "passed": result.passed_all,
                           "message": result.summary(public_only=False).strip()}
    error = results.catastrophic_error
    data = {"questions": questions, "error": repr(error) if error else None}
    with os.fdopen(fd, "w", encoding="utf-8") as pipe:
        json.dump(data, pipe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
