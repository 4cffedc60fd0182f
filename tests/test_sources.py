"""The Sources page against the chapters: every seed claim it lists as wrong is in its chapter."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "sources.md"
CJK = re.compile(r"[\u3400-\u9fff]")


def wrong_claims():
    """(post title, quoted claim, chapters) for each bullet under "Found wrong or imprecise"."""
    claims, post, inside, bullet = [], None, False, []

    def flush():
        text = " ".join(bullet)
        quote = next((q for q in re.findall(r'"([^"]+)"', text) if CJK.search(q)), None)
        chapters = re.findall(r"\{doc\}`chapters/([^`]+)`", text)
        if quote:
            claims.append((post, quote, chapters))

    for line in SOURCES.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            post, inside = line[4:], False
        elif line.startswith("- **Found wrong or imprecise:**"):
            inside = True
        elif inside and line.startswith("  - "):
            if bullet:
                flush()
            bullet = [line[4:]]
        elif inside and line.startswith("    ") and bullet:
            bullet.append(line.strip())
        elif inside and (line.startswith("#") or line.startswith("- ")):
            if bullet:
                flush()
            bullet, inside = [], False
    if bullet:
        flush()
    return claims


def chapter_text(stem):
    nb = json.loads((ROOT / "chapters" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    return "\n".join("".join(c["source"]) for c in nb["cells"])


def squash(text):
    return re.sub(r"\s+", "", text)


def test_the_page_lists_claims_of_all_five_posts():
    claims = wrong_claims()
    assert len({post for post, _, _ in claims}) == 5 and len(claims) >= 15


@pytest.mark.parametrize("post, quote, chapters", [
    pytest.param(*claim, id=f"{i}-{claim[2][0] if claim[2] else 'none'}")
    for i, claim in enumerate(wrong_claims())])
def test_each_wrong_claim_is_quoted_in_its_chapter(post, quote, chapters):
    assert chapters, f"{post}: {quote!r} names no chapter"
    parts = [squash(p) for p in re.split(r"…|\.\.\.", quote) if squash(p)]
    where = [c for c in chapters if all(p in squash(chapter_text(c)) for p in parts)]
    assert where, (f"the Sources page says {quote!r} ({post}) is shown wrong in {chapters}, "
                   "but no such chapter quotes it")
