"""The import graph of the project's Python code runs one way (docs: README, "Layout"):
the core library (``stat_guard``, the scheduled engine included) imports nothing of the
fleet; ``workers`` imports the core, never ``tasks``; ``tasks`` imports both and only
Celery's discovery imports ``tasks``. No module imports itself back through others.

Every module is read with ``ast``: imports inside functions count, and importing
``a.b.c`` counts as importing the packages ``a`` and ``a.b`` as well.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stat_guard", "workers", "tasks", "demo")
TOP_LEVEL_MODULES = ("beat_schedule",)
# Entry points nobody imports: they may use any package, but no package may use them.
SCRIPT_DIRS = ("azure", "bench", "scripts", "deploy")
CORE = ("stat_guard",)


def _project_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    for name in TOP_LEVEL_MODULES:
        modules[name] = ROOT / f"{name}.py"
    return modules


def _scripts() -> dict[str, Path]:
    return {str(path.relative_to(ROOT)): path for folder in SCRIPT_DIRS
            for path in sorted((ROOT / folder).rglob("*.py"))}


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imported_names(module: str, path: Path) -> Iterator[str]:
    """Every dotted name an import statement of the file can load, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if _is_package(path) else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            for alias in node.names:
                yield f"{base}.{alias.name}"  # a submodule, when it is one


def _edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports, each with the packages above it."""
    targets: set[str] = set()
    for dotted in _imported_names(name, path):
        parts = dotted.split(".")
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            if prefix in modules:
                targets.add(prefix)
    targets.discard(name)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _project_modules()
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_sees_every_package_and_its_imports():
    graph = _graph()
    assert {_top(name) for name in graph} == {*PACKAGES, *TOP_LEVEL_MODULES}
    assert "stat_guard.scheduled.engine" in graph
    assert "stat_guard.scheduled.connection" in graph["stat_guard.scheduled.engine"]
    assert {"workers", "workers.celery_app"} <= graph["tasks.reactions"]


def test_the_core_imports_nothing_of_the_fleet():
    offending = {name: sorted(t for t in targets if _top(t) not in CORE)
                 for name, targets in _graph().items() if _top(name) in CORE}
    assert {name: targets for name, targets in offending.items() if targets} == {}


def test_workers_never_import_tasks():
    offending = {name: sorted(t for t in targets if _top(t) in {"tasks", "beat_schedule", "demo"})
                 for name, targets in _graph().items() if _top(name) == "workers"}
    assert {name: targets for name, targets in offending.items() if targets} == {}


def test_nothing_but_celery_imports_tasks():
    modules = _project_modules()
    importers = {**{name: _edges(name, path, modules) for name, path in modules.items()
                    if _top(name) != "tasks"},
                 **{script: _edges(script, path, modules)
                    for script, path in _scripts().items()}}
    offending = {name: sorted(t for t in targets if _top(t) == "tasks")
                 for name, targets in importers.items()}
    assert {name: targets for name, targets in offending.items() if targets} == {}


def test_celery_includes_every_task_module():
    app_source = ast.parse((ROOT / "workers" / "celery_app.py").read_text())
    included = {element.value for node in ast.walk(app_source)
                if isinstance(node, ast.keyword) and node.arg == "include"
                for element in ast.walk(node.value) if isinstance(element, ast.Constant)}
    task_modules = {name for name in _project_modules() if name.startswith("tasks.")}
    assert included == task_modules


def test_no_import_cycles():
    graph = _graph()
    cycles = [component for component in _strongly_connected(graph) if len(component) > 1]
    assert cycles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph is small, but recursion depth is not)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components
