"""Render the content tree of an IMNRisk DICOM SR (TID 1500) as a PNG, for the README.

    python docs/sr_tree.py RESULTS/imnrisk_report_sr.dcm docs/sr-tree.png

The lines come from IMNRiskLib.outputs.dicomout.tree_lines (long runs of measurements shortened).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from IMNRiskLib.outputs.dicomout import tree_lines  # noqa: E402
from IMNRiskLib.core.files import atomic_path  # noqa: E402

COLOURS = {"CONTAINER": "#1f4e79", "NUM": "#7a3e00", "CODE": "#2e6b30", "TEXT": "#555555",
           "IMAGE": "#8b1a1a", "UIDREF": "#555555"}


def colour(text: str) -> str:
    """Colour of a line by its value type (the second or third word)."""
    for word in text.split()[:4]:
        if word in COLOURS:
            return COLOURS[word]
    return "#000000"


def render(sr_path: Path, png_path: Path) -> None:
    lines = tree_lines(sr_path)
    height = 0.24 * len(lines) + 0.6
    fig = plt.figure(figsize=(13, height), dpi=110)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.axis("off")
    for i, (depth, text) in enumerate(lines):
        shown = text if len(text) < 150 else text[:147] + "..."
        ax.text(0.01 + 0.025 * depth, 1 - (i + 1) / (len(lines) + 1.5), ("└ " if depth else "") + shown,
                family="monospace", fontsize=8, color=colour(text), va="center", transform=ax.transAxes)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    render(Path(sys.argv[1]), Path(sys.argv[2]))
