"""The IMNRisk module's first start, checked inside Slicer by ctest (py_IMNRiskModuleTest, registered in
this folder's CMakeLists.txt with slicer_add_python_unittest, as the 5.12 module template does).

It runs only in a Slicer built with the extension (Slicer cannot run where this project is developed):
headless, the same behaviours are tested against slicer-core and stand-ins (Testing/test_slicer.py).
"""

import unittest

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest


class IMNRiskModuleTest(ScriptedLoadableModuleTest):
    """What a new user meets: the panel with its Segment Editor, scoring with nothing installed,
    the constraints that keep Slicer's packages, the sample data with its checksums."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for name in ("test_the_panel_makes_its_segment_editor_and_hands_the_views_over",
                     "test_scoring_needs_nothing_installed", "test_the_constraints_pin_what_slicer_ships",
                     "test_the_sample_data_loads_checked_against_its_sha256"):
            self.setUp()
            getattr(self, name)()

    def _widget(self):
        slicer.util.selectModule("IMNRisk")
        return slicer.modules.imnrisk.widgetRepresentation().self()

    def test_the_panel_makes_its_segment_editor_and_hands_the_views_over(self):
        widget = self._widget()
        editor = widget.segmentEditorWidget
        self.assertEqual(editor.className(), "qMRMLSegmentEditorWidget")
        self.assertEqual(editor.parentWidget().objectName, "segmentEditorPlaceholder")
        self.assertIn("module documentation", slicer.modules.imnrisk.helpText)
        self.assertIn(editor, widget.controller._editors)
        slicer.util.selectModule("SegmentEditor")   # Slicer's own editor takes the views and shortcuts
        self.assertNotIn(editor, widget.controller._editors)
        slicer.util.selectModule("IMNRisk")
        self.assertIn(editor, widget.controller._editors)

    def test_scoring_needs_nothing_installed(self):
        import IMNRisk
        IMNRisk.IMNRiskTest().test_score_the_sample_case_through_the_gui()

    def test_the_constraints_pin_what_slicer_ships(self):
        import numpy
        import scipy

        import IMNRisk
        from IMNRiskSlicer import dependencies
        lines = dependencies.constraint_lines()
        self.assertIn(f"numpy=={numpy.__version__}", lines)
        self.assertIn(f"scipy=={scipy.__version__}", lines)
        self.assertTrue(any(line.startswith("vtk") for line in lines), lines)
        has_pip_ensure = (slicer.app.majorVersion, slicer.app.minorVersion) >= (5, 11)
        self.assertEqual(IMNRisk.slicerPackaging() is not None, has_pip_ensure)

    def test_the_sample_data_loads_checked_against_its_sha256(self):
        import SampleData

        import IMNRisk
        IMNRisk.registerSampleData()
        loaded = SampleData.downloadSample("IMNRiskDemoDCE")
        self.assertIsNotNone(loaded)
        self.assertIsNotNone(slicer.mrmlScene.GetFirstNodeByName("IMNRiskDemoDCE"))


if __name__ == "__main__":
    unittest.main()
