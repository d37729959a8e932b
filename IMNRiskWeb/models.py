"""The model files `imnrisk web --models DIR` offers (with --trusted-key, only those it signed)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from IMNRiskLib.core.errors import InputError


def list_models(folder: Optional[str], trusted_key: Optional[str] = None) -> Dict[str, str]:
    """The model files of a folder ({file name: path}, sorted): every *.json that reads as an IMNRisk
    model, and with a trusted key only those signed by it."""
    from IMNRiskLib.scoring.modelfile import read_model_document
    from IMNRiskLib.scoring.signing import verify_model
    found: Dict[str, str] = {}
    if not folder:
        return found
    for path in sorted(Path(folder).glob("*.json")):
        try:
            doc = read_model_document(path)
            if trusted_key:
                verify_model(doc, trusted_key, str(path))
        except (InputError, OSError, ValueError):
            continue
        found[path.name] = str(path)
    return found
