"""The layout rule, checked: the four stages never import each other, nor ``learnpulse``.

``schemas`` imports nothing of ours; ``producers``, ``streams``, ``sinks`` and ``reporting``
import only themselves and ``schemas``. Every import counts, also one inside a function
(a lazy import is still a dependency) and relative ones (resolved against the module).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OURS = {"schemas", "producers", "streams", "sinks", "reporting", "learnpulse"}
ALLOWED = {
    "schemas": {"schemas"},
    "producers": {"producers", "schemas"},
    "streams": {"streams", "schemas"},
    "sinks": {"sinks", "schemas"},
    "reporting": {"reporting", "schemas"},
}


def _module_parts(path: Path) -> list[str]:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """``(top-level package, line)`` of every import of one of our packages in ``path``."""
    found: set[tuple[str, int]] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_parts(path) if path.name == "__init__.py" else _module_parts(path)[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in OURS:
                found.add((top, node.lineno))
    return found


def violations(stage: str) -> list[str]:
    bad = []
    for path in sorted((REPO / stage).rglob("*.py")):
        for top, line in sorted(imported_packages(path), key=lambda found: found[1]):
            if top not in ALLOWED[stage]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {top}")
    return bad


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_layout_stage_imports_only_itself_and_schemas(stage: str) -> None:
    assert violations(stage) == []


def test_layout_checker_sees_lazy_and_relative_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The checker itself must be able to fail: a lazy absolute import and a relative import
    # climbing out of the stage are both reported.
    stage = tmp_path / "sinks"
    (stage / "inner").mkdir(parents=True)
    (stage / "__init__.py").write_text("")
    (stage / "inner" / "__init__.py").write_text("")
    (stage / "inner" / "mod.py").write_text(
        "from schemas import topics\n"
        "def f():\n    from reporting.lrs import LrsStore\n    return LrsStore\n"
        "from ...learnpulse import settings\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert violations("sinks") == [
        "sinks/inner/mod.py:3 imports reporting",
        "sinks/inner/mod.py:5 imports learnpulse",
    ]
