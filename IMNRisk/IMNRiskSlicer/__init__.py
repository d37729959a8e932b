"""The Slicer side of IMNRisk: MRML <-> SimpleITK glue and the module's logic (no Qt here, so the
logic runs and is tested headless with the slicer-core wheel); the GUI lives in IMNRisk.py."""
