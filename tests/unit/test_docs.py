"""The repository stands alone: its docs and code cite only its own documents, and those exist.

Pure file reading. Every reference to the design or the gateway's protocol names
``docs/design.md`` or ``docs/gateway.md``; every ``docs/<file>.md §<Section>`` names a heading of
that file; every Markdown link to a heading finds it; the docs show no path of one machine.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve()

TOP_DOCS = ("README.md", "RELIABILITY.md", "BENCHMARKS.md")
CODE_DIRS = ("worker", "schemas", "tests", "bench")


def _docs() -> list[Path]:
    return [ROOT / name for name in TOP_DOCS if (ROOT / name).exists()] + sorted((ROOT / "docs").glob("*.md"))


def _code() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py")
                  if "__pycache__" not in p.parts and p.resolve() != HERE)


FILES = _docs() + _code()


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _headings(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return [m.group(1).strip() for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_no_reference_outside_the_repository(path):
    text = path.read_text(encoding="utf-8")
    in_docs = path.parent == ROOT / "docs"
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if "../shared" in line or "shared/DESIGN" in line or "shared/GATEWAY" in line:
            problems.append(f"{lineno}: refers to the shared folder beside the repository")
        for match in re.finditer(r"(?i)\b(design|gateway)\.md\b", line):
            before = line[:match.start()]
            own = match.group(0) == match.group(0).lower() and (
                before.endswith("docs/") or (in_docs and before.endswith("(")))
            if not own:
                problems.append(f"{lineno}: {match.group(0)!r} is not docs/design.md or docs/gateway.md")
    assert not problems, f"{_name(path)}:\n" + "\n".join(problems)


SECTION_REF = re.compile(r"\bdocs/([\w-]+\.md) §")


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_section_references_name_existing_headings(path):
    problems = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for match in SECTION_REF.finditer(line):
            target = ROOT / "docs" / match.group(1)
            if not target.exists():
                problems.append(f"{lineno}: docs/{match.group(1)} does not exist")
                continue
            rest = line[match.end():]
            if not any(rest.startswith(heading) for heading in _headings(target)):
                problems.append(f"{lineno}: no heading of docs/{match.group(1)} starts {rest[:40]!r}")
    assert not problems, f"{_name(path)}:\n" + "\n".join(problems)


MD_LINK = re.compile(r"\]\(([^)\s]*?\.md)?#([^)\s]+)\)")


@pytest.mark.parametrize("path", _docs(), ids=_name)
def test_markdown_links_to_headings_resolve(path):
    problems = []
    for match in MD_LINK.finditer(path.read_text(encoding="utf-8")):
        target = (path.parent / match.group(1)).resolve() if match.group(1) else path
        if not target.is_file():
            problems.append(f"{match.group(0)}: no such file")
        elif match.group(2) not in {_slug(h) for h in _headings(target)}:
            problems.append(f"{match.group(0)}: no such heading in {target.name}")
    assert not problems, f"{_name(path)}:\n" + "\n".join(problems)


MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|root|home|tmp|Users)/")


@pytest.mark.parametrize("path", _docs(), ids=_name)
def test_docs_show_no_machine_paths(path):
    problems = [f"{lineno}: {line.strip()[:100]}"
                for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if MACHINE_PATH.search(line)]
    assert not problems, f"{_name(path)} shows paths of one machine (use paths relative to the repository):\n" \
        + "\n".join(problems)


def test_the_cited_documents_have_the_sections_the_code_relies_on():
    assert {"Endpoints", "Signing", "Create a checkout", "Query", "Callbacks (notify)",
            "Status and error codes", "Amounts", "Limits",
            "What the sandbox imitates"} <= set(_headings(ROOT / "docs" / "gateway.md"))
    assert {"Processes", "Queues and tasks", "Data flow", "Job states", "Submission rules",
            "Settlement rules", "Public interface"} <= set(_headings(ROOT / "docs" / "design.md"))
