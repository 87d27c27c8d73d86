"""The layer order of the design document (docs/design.md), checked on the code's own imports.

Every ``import`` and ``from ... import`` in ``worker/`` counts, at module level or inside a
function (a lazy import is still a dependency). A module may import from its own unit and from the
layers below its own; two units of one layer (the store and the gateway, say) do not import each
other. The import graph has no cycle. ``schemas/`` imports nothing of ``worker``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "worker"

# Lowest first: the same table as the design document's (test_the_design_doc_draws_these_layers).
LAYERS: list[tuple[str, ...]] = [
    ("worker", "worker.logs", "worker.waiting"),  # the package (its version) and the shared helpers
    ("worker.domain",),
    ("worker.config",),
    ("worker.store", "worker.gateway"),
    ("worker.webhooks",),
    ("worker.flows", "worker.ops"),
    ("worker.runtime", "worker.celery"),  # the wiring and the Celery app (one unit: see UNITS)
    ("worker.client", "worker.events", "worker.signing"),
    ("worker.tasks", "worker.web"),
    ("worker.sandbox", "worker.local"),
    ("worker.cli",),
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}
SHARED_HELPERS = ("worker.logs", "worker.waiting")
# ``worker.celery`` keeps its public name (``celery -A worker``) but is the runtime's Celery app:
# the wiring sends with it, the dead-letter tools read its queues.
UNITS = {"worker.celery": "worker.runtime"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(WORKER.rglob("*.py"))}


def unit_of(name: str) -> str:
    """``worker.store.jobs`` -> ``worker.store``; a top-level module is its own unit."""
    parts = name.split(".")
    unit = ".".join(parts[:2]) if len(parts) > 1 else name
    return UNITS.get(unit, unit)


def imports(name: str, path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of ``worker``/``schemas`` in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = modules()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if sub in known else target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, t) for line, t in found if t.split(".")[0] in ("worker", "schemas")]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {t for _, t in imports(name, path) if t in known} for name, path in known.items()}


def test_every_unit_has_a_layer():
    units = {".".join(name.split(".")[:2]) for name in modules()}
    assert units <= set(LAYER), sorted(units - set(LAYER))


def test_no_module_imports_a_layer_above_its_own_or_a_peer():
    wrong: list[str] = []
    for name, path in modules().items():
        mine = unit_of(name)
        for line, target in imports(name, path):
            if target.startswith("schemas"):
                continue
            theirs = unit_of(target)
            if theirs == mine:
                continue
            if LAYER[theirs] >= LAYER[mine] and not any(f"{path.relative_to(ROOT)}:{line} " in w for w in wrong):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} "
                             f"({'a peer' if LAYER[theirs] == LAYER[mine] else 'a higher layer'})")
    assert not wrong, "\n".join(wrong)


def test_the_shared_helpers_import_nothing_else_of_worker():
    for name in SHARED_HELPERS:
        path = modules()[name]
        assert [t for _, t in imports(name, path) if t.startswith("worker")] == [], name


def test_the_import_graph_has_no_cycle():
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert cycles == []


def test_schemas_import_nothing_of_worker():
    for path in sorted((ROOT / "schemas").rglob("*.py")):
        assert [t for _, t in imports(module_name(path), path) if t.startswith("worker")] == [], path


def test_the_top_level_stays_small():
    top = sorted(p.name for p in WORKER.glob("*.py"))
    assert len(top) <= 8, top


def test_no_lua_in_python():
    found = [f"{p.relative_to(ROOT)}:{i}" for p in sorted(ROOT.glob("*/**/*.py"))
             if ".venv" not in p.parts
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"redis\.p?call\(", line)]
    assert found == []


def _unit_named(path: str) -> str:
    """``worker/domain/`` -> ``worker.domain``; ``worker/__init__.py`` -> ``worker``."""
    return path.removesuffix("/").removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def test_the_design_doc_draws_these_layers():
    """The design document's layer table names every unit, in this order."""
    text = (ROOT / "docs/design.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"^\| \d+ \|", line)]
    drawn = {int(row.split("|")[1]): {_unit_named(path) for path in re.findall(r"`(worker/[\w./]*)`", row.split("|")[2])}
             for row in rows}
    assert drawn == {i: set(units) for i, units in enumerate(LAYERS)}


@pytest.mark.parametrize("name", ["create", "move", "flag", "count_attempt", "renew_leases", "schedule_check",
                                  "ip_take", "release_lock", "webhook_claim_due", "webhook_fan_out",
                                  "webhook_settle", "unflag", "annotate", "orphan", "dismiss"])
def test_every_script_says_what_it_takes(name):
    from worker.store import scripts
    text = (WORKER / "store" / "lua" / f"{name}.lua").read_text(encoding="utf-8")
    head = [line for line in text.splitlines() if line.startswith("--")]
    assert any(line.startswith("-- KEYS:") for line in head), name
    assert any(line.startswith("-- ARGV") for line in head), name
    assert name in scripts.names()


def test_the_move_scripts_named_argv_match_its_locals():
    from worker.store import scripts
    text = scripts.source("move")
    unpacked = re.search(r"local ([\w,\s]+?) =\s*unpack\(ARGV\)", text).group(1)
    assert tuple(n.strip() for n in unpacked.split(",")) == scripts.argv_names("move")
    with pytest.raises(TypeError, match="missing"):
        scripts.argv("move", target="paying")
