"""Just enough of Slicer's application layer (PythonQt's `qt`, ScriptedLoadableModule, the parameter
node wrapper, slicer.app/modules) for IMNRisk.py's widget to run headless on slicer-core's real MRML
scene: its bindings to the controller are then exercised by tests, not only read.

Widgets are recording stand-ins built from IMNRisk.ui: PythonQt-style properties (`box.currentIndex =
1` emits currentIndexChanged), `connect("signal(args)", slot)`, and the few methods the widget calls.
This checks the binding code (names, state keys, signal wiring); it cannot check Qt's rendering.
"""

from __future__ import annotations

import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Dict, List

# property -> signal it emits when it changes, as Qt's widgets do
SIGNALS = {"currentIndex": "currentIndexChanged(int)", "value": "valueChanged(int)", "checked": "toggled(bool)",
           "currentPath": "currentPathChanged(QString)"}


class FakeWidget:
    """A recording stand-in for a Qt / CTK / MRML widget."""

    def __init__(self, cls: str = "QWidget", name: str = ""):
        d = self.__dict__
        d.update(cls=cls, name=name, handlers={}, calls=[], items=[], children=[], _layout=None,
                 currentIndex=-1, value=0, maximum=99, checked=False, currentPath="", text="", enabled=True,
                 visible=True, toolTip="", styleSheet="", format="", placeholderText="", pixmap=None,
                 _node=None, _segment=None, _table=None, _source=None, _segmentation=None, plain=[])

    # ---- PythonQt-style properties that emit signals
    def __setattr__(self, key, value):
        old = self.__dict__.get(key)
        self.__dict__[key] = value
        if key in SIGNALS and old != value:
            self.emit(SIGNALS[key], value)

    def connect(self, signal: str, slot: Callable) -> None:
        self.handlers.setdefault(signal, []).append(slot)

    def emit(self, signal: str, *args) -> None:
        for slot in list(self.handlers.get(signal, [])):
            slot(*args[:slot_arity(slot, len(args))])

    def click(self) -> None:
        if self.enabled:
            self.emit("clicked(bool)", False)

    # ---- combo boxes
    @property
    def count(self) -> int:
        return len(self.items)

    def addItem(self, text, data=None):
        self.items.append((text, data))
        if self.currentIndex < 0:
            self.currentIndex = 0

    def addItems(self, texts):
        for text in texts:
            self.addItem(text)

    def clear(self):
        self.__dict__["items"] = []
        self.currentIndex = -1
        self.__dict__["pixmap"] = None
        self.__dict__["plain"] = []

    def itemText(self, k):
        return self.items[k][0]

    def itemData(self, k):
        return self.items[k][1] if 0 <= k < len(self.items) else None

    def findData(self, data):
        return next((k for k, (_, d) in enumerate(self.items) if d == data), -1)

    def findText(self, text):
        return next((k for k, (t, _) in enumerate(self.items) if t == text), -1)

    @property
    def currentText(self):
        return self.items[self.currentIndex][0] if 0 <= self.currentIndex < len(self.items) else ""

    # ---- MRML selectors, segment editor, table view, labels, logs
    def setCurrentNode(self, node):
        if node is not self._node:
            self.__dict__["_node"] = node
            self.emit("currentNodeChanged(vtkMRMLNode*)", node)

    def currentNode(self):
        return self._node

    def setCurrentSegmentID(self, segment_id):
        self.__dict__["_segment"] = segment_id

    def currentSegmentID(self):
        return self._segment

    def setMRMLTableNode(self, node):
        self.__dict__["_table"] = node

    def mrmlTableNode(self):
        return self._table

    def setPixmap(self, pixmap):
        self.__dict__["pixmap"] = pixmap

    def appendPlainText(self, line):
        self.plain.append(line)

    def setSegmentationNode(self, node):
        self.calls.append(("setSegmentationNode", node.GetID() if node else None))

    def setSourceVolumeNode(self, node):
        self.calls.append(("setSourceVolumeNode", node.GetID() if node else None))
        self.__dict__["_source"] = node

    def sourceVolumeNodeID(self):
        return self._source.GetID() if self._source else None

    def layout(self):
        if self._layout is None:
            self.__dict__["_layout"] = FakeFormLayout()
        return self._layout

    @property
    def width(self):
        return 420

    def __getattr__(self, name):  # any other method: recorded, returns None
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, args))


def slot_arity(slot, n_args: int) -> int:
    """How many of a signal's arguments a slot takes (Qt drops the rest)."""
    import inspect
    try:
        params = [p for p in inspect.signature(slot).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
        if any(p.kind == p.VAR_POSITIONAL for p in inspect.signature(slot).parameters.values()):
            return n_args
        return min(len(params), n_args)
    except (TypeError, ValueError):
        return n_args


class FakeFormLayout:
    def __init__(self):
        self.rows: List[tuple] = []
        self.widgets: List[Any] = []

    def addWidget(self, widget):
        self.widgets.append(widget)

    def addRow(self, label, widget):
        self.rows.append((label, widget))

    def count(self):
        return len(self.rows)

    def takeAt(self, k):
        label, widget = self.rows.pop(k)
        return types.SimpleNamespace(widget=lambda: widget)


def load_ui(path: str) -> FakeWidget:
    root = FakeWidget("qMRMLWidget", "IMNRisk")
    for element in ET.parse(path).iter("widget"):
        child = FakeWidget(element.get("class"), element.get("name"))
        for prop in element.findall("property"):
            if prop.get("name") == "enabled" and prop.find("bool") is not None:
                child.__dict__["enabled"] = prop.find("bool").text == "true"
        root.children.append(child)
    return root


def child_widget_variables(root: FakeWidget):
    return types.SimpleNamespace(**{w.name: w for w in root.children})


class WaitCursor:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def install(monkeypatch, scene, sequences_logic) -> Dict[str, Any]:
    """Put the stand-ins in place for one test (monkeypatch undoes it); returns what they record."""
    import slicer
    import slicer.util
    record: Dict[str, Any] = {"shown": [], "errors": [], "app_connections": [], "editors": [], "confirm": [],
                              "pip": [], "restarts": 0, "loop_level": 1}
    qt = types.ModuleType("qt")

    class QThread:
        """Only what the widget asks: the current thread's event-loop depth (0 once the loop ended)."""

        @staticmethod
        def currentThread():
            return types.SimpleNamespace(loopLevel=lambda: record["loop_level"])

    class QTimer(FakeWidget):
        def __init__(self):
            super().__init__("QTimer")

    class QSettings:
        store: Dict[str, Any] = {}

        def value(self, key):
            return self.store.get(key)

        def setValue(self, key, value):
            self.store[key] = value

    qt.QTimer, qt.QSettings, qt.QThread = QTimer, QSettings, QThread
    qt.QComboBox = type("QComboBox", (FakeWidget,), {"__init__": lambda self: FakeWidget.__init__(self, "QComboBox")})
    qt.QLineEdit = type("QLineEdit", (FakeWidget,), {"__init__": lambda self: FakeWidget.__init__(self, "QLineEdit")})
    qt.QPixmap = lambda path: ("pixmap", path)
    qt.QDesktopServices = types.SimpleNamespace(openUrl=lambda url: record.setdefault("opened", []).append(url))
    qt.QUrl = types.SimpleNamespace(fromLocalFile=lambda p: p)
    monkeypatch.setitem(sys.modules, "qt", qt)

    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent or types.SimpleNamespace(isEntered=True)

        def setup(self):
            self.layout = FakeWidget("QVBoxLayout")

        def resourcePath(self, relative):
            return str(Path(__file__).resolve().parents[1] / "IMNRisk" / "Resources" / relative)

    class ScriptedLoadableModuleLogic:
        def __init__(self):
            pass

        def getParameterNode(self):
            node = scene.GetSingletonNode("IMNRisk", "vtkMRMLScriptedModuleNode")
            if node is None:
                node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
                node.SetSingletonTag("IMNRisk")
            return node

    slm.ScriptedLoadableModule, slm.ScriptedLoadableModuleWidget = ScriptedLoadableModule, ScriptedLoadableModuleWidget
    slm.ScriptedLoadableModuleLogic, slm.ScriptedLoadableModuleTest = ScriptedLoadableModuleLogic, object
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", slm)

    pnw = types.ModuleType("slicer.parameterNodeWrapper")

    def parameterNodeWrapper(cls):
        defaults = {k: getattr(cls, k) for k in cls.__annotations__}

        class Wrapped:
            def __init__(self, node):
                self.__dict__.update(defaults, _node=node)

            def connectGui(self, ui):
                return "gui-tag"

            def disconnectGui(self, tag):
                pass
        Wrapped.__name__ = cls.__name__
        return Wrapped

    pnw.parameterNodeWrapper = parameterNodeWrapper
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", pnw)

    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    def segment_editor_widget():
        editor = FakeWidget("qMRMLSegmentEditorWidget", "segmentEditorWidget")
        record["editors"].append(editor)
        return editor

    factory = FakeWidget("qSlicerSegmentEditorEffectFactory")
    monkeypatch.setattr(slicer, "qMRMLSegmentEditorWidget", segment_editor_widget, raising=False)
    monkeypatch.setattr(slicer, "qSlicerSegmentEditorEffectFactory",
                        types.SimpleNamespace(instance=lambda: factory), raising=False)
    record["effect_factory"] = factory
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(
        applicationVersion="5.10.0", processEvents=lambda: None, temporaryPath=record.get("temporary_path", ""),
        connect=lambda signal, slot: record["app_connections"].append((signal, slot)),
        disconnect=lambda signal, slot: record["app_connections"].remove((signal, slot))
        if (signal, slot) in record["app_connections"] else None), raising=False)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(
        sequences=types.SimpleNamespace(logic=lambda: sequences_logic)), raising=False)
    monkeypatch.setattr(slicer.util, "loadUI", load_ui)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", child_widget_variables)
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers",
                        lambda background=None, fit=False: record["shown"].append(background))
    monkeypatch.setattr(slicer.util, "WaitCursor", WaitCursor)
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, *a, **k: record["errors"].append(text))
    record["answer"] = True
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay",
                        lambda text, *a, **k: record["confirm"].append(text) or record["answer"])
    monkeypatch.setattr(slicer.util, "confirmYesNoDisplay",
                        lambda text, *a, **k: record["confirm"].append(text) or record["answer"], raising=False)
    monkeypatch.setattr(slicer.util, "pip_install", lambda args: record["pip"].append(list(args)), raising=False)
    monkeypatch.setattr(slicer.util, "restart", lambda: record.__setitem__("restarts", record["restarts"] + 1),
                        raising=False)
    return record


def import_module(monkeypatch, path: Path):
    """IMNRisk.py imported fresh (removed again by monkeypatch)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("IMNRisk", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "IMNRisk", module)
    spec.loader.exec_module(module)
    return module
