"""The package's layers: imports run downwards only (DESIGN.md), lazy imports inside functions included.

Bottom: the registry, plugins, the built-in plugin and ``infra/``; then ``common/`` (math only), the safe loader, the
algorithms and the run engine; on top the zoo bridge, the bench, sweeps and the command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sbx_lecture

PACKAGE = Path(sbx_lecture.__file__).parent
#: The top layer: nothing below imports these.
TOP = ("sbx_lecture.zoo", "sbx_lecture.zoo_samplers", "sbx_lecture.bench", "sbx_lecture.sweep", "sbx_lecture.cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """The package's modules that ``tree`` imports, anywhere but under ``if TYPE_CHECKING:``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []  # the type checker's imports are not imports
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name if name in modules else node.module for name in names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            while name and name not in modules:  # sbx_lecture.bench.stats.x -> sbx_lecture.bench.stats
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def _import_graph() -> dict[str, set[str]]:
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {name: _imports(ast.parse(path.read_text()), modules) - {name} for name, path in files.items()}


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def test_no_import_circle() -> None:
    graph = _import_graph()
    finished: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(module) :], module]))
        if module not in finished:
            for target in sorted(graph[module]):
                visit(target, [*path, module])
            finished.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_imports_run_downwards() -> None:
    upward = []
    for module, targets in sorted(_import_graph().items()):
        for target in sorted(targets):
            if _within(module, ("sbx_lecture.common",)) and not _within(
                target, ("sbx_lecture.common", "sbx_lecture.infra")
            ):
                upward.append(f"{module} -> {target} (common/ is math: it may use infra/ only)")
            if _within(target, TOP) and not _within(module, TOP):
                upward.append(f"{module} -> {target} (the zoo bridge, bench, sweep and cli are the top layer)")
            if target == "sbx_lecture.cli":
                upward.append(f"{module} -> {target} (nothing imports the command line)")
    assert not upward, "\n".join(upward)


def test_the_graph_reader_sees_lazy_imports() -> None:
    """Imports inside functions count (they made the circles before); the type checker's imports do not."""
    source = (
        "if TYPE_CHECKING:\n    from sbx_lecture.bench import stats\n"
        "def f():\n    from sbx_lecture.bench.figures import FIGURES\nimport sbx_lecture.cli\n"
    )
    tree = ast.parse(source)
    modules = {"sbx_lecture.bench.figures", "sbx_lecture.bench.stats", "sbx_lecture.cli", "sbx_lecture.bench"}
    assert _imports(tree, modules) == {"sbx_lecture.bench.figures", "sbx_lecture.cli"}
