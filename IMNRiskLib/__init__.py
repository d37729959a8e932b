"""IMNRisk: internal mammary lymph node metastasis risk from DCE-MRI radiomics and clinical factors.

Research use only; not a medical device. The package has no Slicer import: it runs from the
`imnrisk` command line and inside the 3D Slicer module alike.
"""

__version__ = "0.1.0"

RESEARCH_ONLY = "Research use only; not a medical device."
