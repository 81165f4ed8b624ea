"""The layers import downward only, and no modules import each other in a circle.

core (no Qt, no VTK, no torch) <- render (VTK) <- ui (Qt); ai and pacs build on core only, batch
on ai, pacs and core; the plugins see the plugin API and core, never Qt, VTK or the viewer's
windows.  Every import counts, those inside functions too (a lazy import is still a dependency);
a module-level cycle is one that Python would have to run half-initialised.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# package (or folder) -> what nothing in it may import
FORBIDDEN = {
    "viewer.core": ("viewer.render", "viewer.ui", "viewer.ai", "viewer.pacs", "viewer.batch",
                    "PySide6", "vtkmodules", "vtk", "torch", "monai"),
    "viewer.render": ("viewer.ui", "viewer.ai", "viewer.pacs", "PySide6"),
    "viewer.ai": ("viewer.ui", "viewer.render", "PySide6", "vtkmodules"),
    "viewer.pacs": ("viewer.ui", "viewer.render", "viewer.ai", "PySide6", "vtkmodules"),
    "viewer.batch": ("viewer.ui", "viewer.render", "PySide6", "vtkmodules"),
    "plugins": ("PySide6", "vtkmodules", "vtk", "viewer.ui", "viewer.render"),
}


def _modules():
    """{module name: path} of the viewer package and the bundled plugins (their code, not tests)."""
    out = {}
    for top in ("viewer", "plugins"):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(path: Path, name: str, module_level_only: bool) -> list[str]:
    """The modules ``path`` imports (relative imports resolved), skipping ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import) and (inner or not module_level_only):
                found.extend(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and (inner or not module_level_only):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - child.level + 1] + ([base] if base else []))
                found.extend(f"{base}.{a.name}" for a in child.names)
                found.append(base)
            visit(child, inner)

    visit(tree, True)
    return found


def test_no_upward_import():
    wrong = []
    for name, path in _modules().items():
        for layer, banned in FORBIDDEN.items():
            if name != layer and not name.startswith(layer + "."):
                continue
            for imported in _imports(path, name, module_level_only=False):
                if any(imported == b or imported.startswith(b + ".") for b in banned):
                    wrong.append(f"{name} imports {imported}")
    assert sorted(set(wrong)) == []


def _graph() -> dict[str, set[str]]:
    """Module -> the modules it imports at module level (other viewer and plugin modules only)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imported in _imports(path, name, module_level_only=True):
            # "from viewer.core import journal" names the module viewer.core.journal
            target = imported if imported in modules else imported.rpartition(".")[0]
            if target in modules and target != name and not name.startswith(target + "."):
                deps.add(target)  # a package's own __init__ is run first anyway: not an edge
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles, state = [], {}

    def walk(node, stack):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                walk(dep, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node, [])
    return cycles


def test_no_import_cycle():
    graph = _graph()
    assert sum(len(d) for d in graph.values()) > 300  # the graph is really read
    assert "viewer.core.workspace" in graph["viewer.core.viewstate"]
    assert _cycles(graph) == []


def test_the_check_sees_a_cycle_and_an_upward_import(tmp_path):
    """The checks above are not blind: a module importing ui from core is named, a circle is found."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]
    path = tmp_path / "x.py"
    path.write_text("from viewer.ui.mainwindow import MainWindow\nimport typing\n"
                    "if typing.TYPE_CHECKING:\n    import viewer.render\n\ndef f():\n    from . import y\n")
    assert _imports(path, "viewer.core.x", module_level_only=False) == [
        "viewer.ui.mainwindow.MainWindow", "viewer.ui.mainwindow", "typing", "viewer.core.y", "viewer.core"]
    assert _imports(path, "viewer.core.x", module_level_only=True) == [
        "viewer.ui.mainwindow.MainWindow", "viewer.ui.mainwindow", "typing"]
