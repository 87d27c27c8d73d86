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


# -- the README a newcomer follows (issue 22) -------------------------------------------------------
README = ROOT / "README.md"
PENDING: set[str] = set()  # files a README link may name before they exist (none)


def test_the_readme_opens_with_the_two_commands_then_a_short_quickstart():
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"^```\n(.*?)^```", text, flags=re.S | re.M).group(1)
    assert [line.split()[0] for line in first_block.splitlines()] == ["./scripts/demo", "./scripts/test"]
    assert (ROOT / "scripts" / "demo").is_file() and (ROOT / "scripts" / "test").is_file()
    assert [h for h in _headings(README) if not h.startswith("vexora-checkout")][:1] == ["Quickstart"]
    quickstart_end = text.index("\n## ", text.index("\n## Quickstart\n") + 1)
    assert text[:quickstart_end].count("\n") <= 100, "the Quickstart (with the commands) is at most ~100 lines"
    quickstart = text[:quickstart_end]
    for target in ("docs/console.md", "docs/first-hour.md", "docs/console-home.png", "docs/console-jobs.png",
                   "docs/console-job.png", "docs/console-webhooks.png"):
        assert f"]({target})" in quickstart, target
    for word in ("/ops", "Flower", "webhook", "env file"):
        assert word in quickstart, word


def test_the_readme_is_quickstart_integrate_operate_deploy():
    top = [h for h in re.findall(r"^## (.+)$", re.sub(r"^```.*?^```", "", README.read_text(encoding="utf-8"),
                                                        flags=re.S | re.M), flags=re.M)]
    assert top[:4] == ["Quickstart", "Integrate", "Operate", "Deploy"], top
    headings = set(_headings(README))
    assert {"Use it from Python", "Use it over HTTP", "Receive webhooks", "Use it from other languages",
            "The console", "The review queue", "Metrics", "Alerts and dashboard",
            "Run the parts", "Configuration", "Compose, Procfile and the image",
            "High availability: Redis Sentinel", "RabbitMQ as the broker"} <= headings
    # moved to docs/: the README keeps a pointer, not the text
    assert {"Submission rules, as built", "Upgrading", "Redis Cluster"}.isdisjoint(headings)
    for moved in ("submission.md", "sentinel.md", "redis-cluster.md", "upgrading.md"):
        assert (ROOT / "docs" / moved).is_file() and f"](docs/{moved})" in README.read_text(encoding="utf-8")


def test_every_file_the_readme_links_or_shows_exists():
    text = README.read_text(encoding="utf-8")
    targets = {m.split("#", 1)[0] for m in re.findall(r"\]\(([^)\s]+)\)", text)
               if not re.match(r"[a-z]+:", m) and not m.startswith("#")}
    missing = sorted(t for t in targets if not (ROOT / t).exists() and t not in PENDING)
    assert not missing, missing
