"""The import graph: no cycle, and no arrow from a lower layer to a higher one (ARCHITECTURE.md).

Imports inside functions count (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` count for layering but not for cycles (they never run).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "models", "serving")

# Lowest first. A module may import its own layer and the layers below; the first prefix that
# matches a module name decides its layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("features.errors", "features.params", "features.keys", "features.yamlio", "features.notes"),
    ("features.intake",),
    ("features.pipeline", "features.families", "features.synthetic"),
    ("features.cli", "features"),
    ("models",),
    # the sandbox runs the pipeline like the CLI; the notebooks' workspace falls back on it
    ("models.cli", "models.sandbox", "models.workspace"),
    ("serving",),
    ("serving.cli", "serving.main"),
)


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    assert best >= 0, f"{module} is in no layer of tests/test_architecture.py"
    return best


def project_modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported project module, runs at runtime) for every import in ``module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = _type_checking_lines(tree)
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [n if n in known else node.module for n in names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name.split(".")[0] in PACKAGES:
                out.append((name, node.lineno not in typing_only))
    return out


def graph() -> dict[str, list[tuple[str, bool]]]:
    known = project_modules()
    return {module: imports_of(module, path, known) for module, path in known.items()}


def test_no_arrow_points_up_a_layer() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in graph().items()
        for target, _ in targets
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    edges = {m: sorted({t for t, runtime in ts if runtime}) for m, ts in graph().items()}
    # Tarjan's strongly connected components; any component of 2+ modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_layers_cover_every_module() -> None:
    for module in project_modules():
        layer_of(module)


@pytest.mark.xdist_group("loadgroup_check")
def test_xdist_groups_reach_the_scheduler(request: pytest.FixtureRequest) -> None:
    """Grouped tests (live servers, shared stores) must share a worker under `make test`."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or not request.config.getvalue("loadgroup"):
        pytest.skip("only meaningful under pytest -n N --dist loadgroup")
    assert request.node.nodeid.endswith("@loadgroup_check")
