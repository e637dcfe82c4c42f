"""The documents the code relies on live in the repository and say what the code does: every
citation of docs/ points at a file and section that exist, and the published JSON Schema of
config.json is the one the library validates with."""

from __future__ import annotations

import json
import re
from pathlib import Path

from qpm_zoo.config import json_schema

REPO = Path(__file__).resolve().parents[1]
CITED_FROM = ("qpm_zoo", "training", "export", "tests", "configs")
CITATION = re.compile(r"docs/([\w.-]+\.md)((?: §\d+(?:-§?\d+)?)?)")


def _citations() -> list[tuple[str, str, str]]:
    files = [p for d in CITED_FROM for p in (REPO / d).rglob("*") if p.suffix in (".py", ".yaml")]
    files += [REPO / "README.md", REPO / "MODEL_CARD.md"]
    return [
        (str(path.relative_to(REPO)), m.group(1), m.group(2).strip())
        for path in files
        for m in CITATION.finditer(path.read_text(encoding="utf-8"))
    ]


def test_every_cited_document_and_section_exists():
    citations = _citations()
    assert len(citations) > 20  # the method is cited throughout the code
    missing = []
    for where, doc, section in citations:
        path = REPO / "docs" / doc
        if not path.is_file():
            missing.append(f"{where}: docs/{doc}")
            continue
        headings = set(re.findall(r"^## (\d+)\.", path.read_text(encoding="utf-8"), re.MULTILINE))
        for number in re.findall(r"\d+", section):
            if number not in headings:
                missing.append(f"{where}: docs/{doc} §{number}")
    assert missing == []


def test_no_citation_of_documents_outside_the_repository():
    bare = re.compile(r"(?<![/\w.-])(method|architecture|environment)\.md")
    files = [p for d in CITED_FROM for p in (REPO / d).rglob("*") if p.suffix in (".py", ".yaml")]
    found = [str(p.relative_to(REPO)) for p in files if bare.search(p.read_text(encoding="utf-8"))]
    assert found == []


def test_published_schema_is_the_one_the_library_validates_with():
    published = json.loads((REPO / "docs" / "config.schema.json").read_text(encoding="utf-8"))
    assert published == json_schema(), "regenerate it: qpm schema > docs/config.schema.json"
