"""The teacher's report of a graded class: one self-contained HTML page.

Per chapter: a figure of how much of the class got each question right (so that the
questions the class missed stand out), the table of every student's scores, and each
failure's message. Then every submission that could not be graded, with the reason.
Everything a student wrote (names, messages) is escaped; the figures are inline SVG, so the
page needs no network and no other file.
"""

from __future__ import annotations

import html
import io
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

CSS = """
body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.8em 0}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:right}td:first-child,th:first-child{text-align:left}
td.full{background:#e7f5e7}td.part{background:#fff4d6}td.zero{background:#fbe3e3}
.muted{color:#666}pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em;font-size:13px}
details{margin:.3em 0}summary{cursor:pointer}
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def question_figure(name: str, rows, questions: list[str]) -> str:
    """Inline SVG: per question, the share of the graded class with full marks (red where
    fewer than half got them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = [sum(r.questions[q]["passed"] for r in rows) / len(rows) for q in questions]
    fig, ax = plt.subplots(figsize=(max(3.5, 0.9 * len(questions) + 1.5), 2.6))
    xs = range(len(questions))
    bars = ax.bar(xs, [100 * f for f in full], color=["#c0392b" if f < 0.5 else "#2e86c1"
                                                      for f in full])
    ax.set_xticks(list(xs), questions)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of class, full marks")
    ax.set_title(f"{name}: {len(rows)} graded", fontsize=10)
    ax.bar_label(bars, labels=[f"{100 * f:.0f}%" for f in full], fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def chapter_section(name: str, rows) -> str:
    questions = sorted({q for r in rows for q in r.questions},
                       key=lambda n: (len(n), n))
    parts = [f"<h2>{esc(name)}</h2>"]
    if not rows:
        return ""
    parts.append(question_figure(name, rows, questions))
    missed = [q for q in questions
              if sum(r.questions[q]["passed"] for r in rows) < len(rows) / 2]
    if missed:
        parts.append(f"<p>Fewer than half the class got full marks on "
                     f"{esc(', '.join(missed))}.</p>")
    head = "".join(f"<th>{esc(q)}</th>" for q in questions)
    body = []
    for r in sorted(rows, key=lambda r: r.student):
        cells = []
        for q in questions:
            s, p = r.questions[q]["score"], r.questions[q]["possible"]
            kind = "full" if s == p else ("zero" if s == 0 else "part")
            cells.append(f'<td class="{kind}">{s:g}/{p:g}</td>')
        body.append(f"<tr><td>{esc(r.student)}</td>{''.join(cells)}"
                    f"<td><b>{r.score:g}</b>/{r.possible:g}</td></tr>")
    parts.append(f"<table><tr><th>student</th>{head}<th>total</th></tr>"
                 + "".join(body) + "</table>")
    failures = []
    for r in sorted(rows, key=lambda r: r.student):
        for q in questions:
            info = r.questions[q]
            if not info["passed"]:
                failures.append(
                    f"<details><summary>{esc(r.student)}, {esc(q)}: "
                    f"{esc(info.get('reason') or 'failed')}</summary>"
                    f"<pre>{esc(info.get('message', ''))}</pre></details>")
    if failures:
        parts.append("<h3>Failures</h3>" + "".join(failures))
    return "\n".join(parts)


def report_html(rows, how: str, source: str) -> str:
    """The report of ``rows`` (``grade.Graded``), graded as ``how`` says, from ``source``."""
    by_chapter = defaultdict(list)
    for r in rows:
        if r.graded:
            by_chapter[r.assignment].append(r)
    ungraded = [r for r in rows if not r.graded]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        f"<title>Grades: {esc(Path(source).name)}</title><style>{CSS}</style></head><body>",
        f"<h1>Grades: {esc(Path(source).name)}</h1>",
        f"<p>{len(rows) - len(ungraded)} of {len(rows)} submissions graded, "
        f"{esc(when)}.<br><span class=muted>Isolation: {esc(how)}.</span></p>",
    ]
    for name in sorted(by_chapter):
        parts.append(chapter_section(name, by_chapter[name]))
    parts.append("<h2>Could not be graded</h2>")
    if ungraded:
        parts.append("<table><tr><th>student</th><th>file</th><th>reason</th></tr>" + "".join(
            f"<tr><td>{esc(r.student)}</td><td>{esc(Path(r.file).name)}</td>"
            f"<td style='text-align:left'>{esc(r.status)}</td></tr>"
            for r in sorted(ungraded, key=lambda r: r.student)) + "</table>")
    else:
        parts.append("<p>None: every submission was graded.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
