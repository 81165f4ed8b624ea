"""The one tool registry (viewer.core.tools): the workspace holds it and the viewer's model checks
its tool against it; the UI packages attach handlers to its names without importing the window."""

import subprocess
import sys

import pytest

from viewer.core import tools
from viewer.core.viewstate import ViewerModel
from viewer.core.workspace import Workspace


def test_registry_lists_every_tool_with_title_group_and_shortcut():
    reg = tools.REGISTRY
    assert reg.names("view") == ["wl", "crosshair", "zoom", "pan", "rotate"]
    assert reg.names("segment")[0] == "seg_brush" and reg["seg_brush"].shortcut == "B"
    assert reg["seg_threshold"].title == "Threshold brush (HU range)"
    assert reg["measure_length"].shortcut == "D" and reg["measure_length"].label == "length"
    assert reg["wl"].label == "window/level" and "marker" in reg


def test_model_and_workspace_use_the_one_registry():
    own = tools.ToolRegistry(tools.default_tools())
    ws = Workspace(tools=own)
    model = ViewerModel(tools=own)
    assert ws.tools is own and model.tools is own
    with pytest.raises(ValueError):
        model.set_tool("seg_smooth")
    own.register("seg_smooth", "Smooth", "segment")
    model.set_tool("seg_smooth")
    assert model.tool == "seg_smooth"
    assert "seg_smooth" not in tools.REGISTRY  # the shared registry is untouched
    assert Workspace().tools is tools.REGISTRY and ViewerModel().tools is tools.REGISTRY


def test_ui_packages_import_without_the_main_window():
    code = ("import sys, viewer.ui.segments, viewer.ui.measure, viewer.ui.ai;"
            "print('viewer.ui.mainwindow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_no_feature_package_imports_the_main_window():
    """The feature packages are given the window; importing it from them (even inside a function)
    made the import cycle mainwindow -> segments -> mainwindow.  Developer scripts run as programs
    (``python -m ...screenshot``) build a window of their own and may."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "viewer" / "ui"
    found = []
    for pkg in ("segments", "measure", "ai", "pacs"):
        for path in (root / pkg).rglob("*.py"):
            if '__name__ == "__main__"' in path.read_text():
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom):
                    names = [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                found += [f"{path.name}: {n}" for n in names if n.startswith("viewer.ui.mainwindow")]
    assert found == []
