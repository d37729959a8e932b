#!/usr/bin/env python3
"""Re-measure IBSI-1's digital phantom in a source checkout; rewrite the table shipped with
IMNRiskLib (data/ibsi_conformance.csv) and the README's conformance section.

    python tools/ibsi_phantom.py [Testing/data/ibsi]

A maintainer's tool, not part of the library: the installed package never writes its own files.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from IMNRiskLib.core.files import atomic_path, write_text  # noqa: E402
from IMNRiskLib.radiomics.ibsi import (README_START, SHIPPED_TABLE, readme_section, replace_readme_section,  # noqa: E402
                                       summary_sentence)
from IMNRiskLib.radiomics.phantom import measure_phantom  # noqa: E402


def main(argv: Optional[List[str]] = None) -> int:
    """Re-measure the phantom; rewrite the shipped table and the README's section."""
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv else ROOT / "Testing" / "data" / "ibsi"
    table = measure_phantom(folder)
    with atomic_path(SHIPPED_TABLE) as tmp:
        table.to_csv(tmp, index=False, float_format="%.10g")
    readme = ROOT / "README.md"
    if readme.exists() and README_START in readme.read_text(encoding="utf-8"):
        write_text(readme, replace_readme_section(readme.read_text(encoding="utf-8"), readme_section(table)))
    print(summary_sentence(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
