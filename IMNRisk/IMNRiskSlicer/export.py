"""The result as DICOM: the tumour as a DICOM SEG and the result as a TID 1500 SR on the chosen phase's
slices (the scoring controller's export part)."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from IMNRiskLib.core.errors import InputError


class DicomExport:
    """Whether the shown result can be written as DICOM, and writing it."""

    def __init__(self, owner, dicom_sources: Optional[Callable[[Any], List[Any]]]):
        self.owner = owner
        self.dicom_sources = dicom_sources
        self._sources_cache: Optional[tuple] = None   # (result, node ID, sources or InputError)
        self.written: Optional[Dict[str, str]] = None

    def set_sources(self, dicom_sources: Optional[Callable[[Any], List[Any]]]) -> None:
        self.dicom_sources = dicom_sources
        self._sources_cache = None

    def sources(self) -> Any:
        """The chosen phase's DICOM slices (or its frames of an Enhanced MR object: dicomout.EnhancedPhase)
        from the face's lookup, once per result and node."""
        node = self.owner.source_node()
        key = (id(self.owner.result), node.GetID() if node is not None else None)
        if self._sources_cache is None or self._sources_cache[:2] != key:
            try:
                found = self.dicom_sources(node) if (self.dicom_sources and node is not None) else []
                found = found if hasattr(found, "frames") else list(found or [])  # an Enhanced MR phase as it is
            except InputError as exc:
                found = exc
            self._sources_cache = key + (found,)
        if isinstance(self._sources_cache[2], InputError):
            raise self._sources_cache[2]
        return self._sources_cache[2]

    def image_files(self) -> List[Any]:
        """The shown phase's DICOM slices (an Enhanced MR object's dataset), [] when it is not from
        DICOM or the lookup fails."""
        try:
            found = self.sources()
        except InputError:
            return []
        return [found.dataset] if hasattr(found, "frames") else found

    def gate(self) -> Dict[str, Any]:
        """Whether the result can be exported as DICOM SEG + SR and, if not, why."""
        result, reason = self.owner.result, None
        if result is None:
            reason = "Predict first: there is no result to export."
        elif result.get("stale"):
            reason = "The result is stale (an input changed since): press Predict again before exporting."
        elif result.get("source") != "image":
            reason = "This result was scored from a features CSV: there is no image and tumour to export."
        elif not _has_highdicom():
            reason = ("DICOM export needs highdicom, which this Python lacks (Slicer 5.12 ships it; "
                      "elsewhere: pip install highdicom).")
        else:
            try:
                if self.dicom_sources is None:
                    reason = "DICOM export is not available in this view."
                elif not self.sources():
                    reason = ("The input is not from DICOM (its volume lists no DICOM instances): load the series "
                              "with Slicer's DICOM module to export DICOM SEG + SR.")
            except InputError as exc:
                reason = str(exc)
        return {"enabled": reason is None,
                "reason": reason or "Export the tumour as DICOM SEG and the result as DICOM SR (TID 1500)"}

    @staticmethod
    def would_overwrite(out_dir: str) -> List[str]:
        """The SEG/SR files that exporting into out_dir would replace (the face asks first)."""
        from IMNRiskLib.outputs import dicomout
        paths = dicomout.output_paths(out_dir)
        return [str(p) for p in (paths.seg, paths.sr) if p.exists()]

    def export(self, out_dir: str, force: bool = False) -> Dict[str, str]:
        """Write the tumour (the segment on the scored node's grid) as DICOM SEG and the result as a
        TID 1500 SR; an InputError says why not (nothing is half-written)."""
        from IMNRiskLib.outputs import dicomout
        gate = self.gate()
        if not gate["enabled"]:
            raise InputError(gate["reason"])
        owner = self.owner
        try:
            sources = dicomout.as_sources(self.sources())
            case = owner.logic.tumour(owner.displayed_node(), owner.tumour.node(), owner.tumour.segment_id,
                                      None, owner.min_voxels())
            paths = dicomout.export(out_dir, sources, case.mask, owner.result, owner.clinical.model, force)
        except OSError as exc:  # e.g. a read-only or full disk: the temporary files are gone already
            raise InputError(f"{out_dir}: cannot write the DICOM files ({exc.strerror or type(exc).__name__})") \
                from None
        self.written = {"seg": str(paths.seg), "sr": str(paths.sr)}
        return dict(self.written)


def _has_highdicom() -> bool:
    """Whether highdicom (which writes the SEG and SR) imports here."""
    try:
        import highdicom  # noqa: F401
    except ImportError:
        return False
    return True


def instance_files(node, file_for_instance: Callable[[str], str]) -> List[str]:
    """The files of a volume node's DICOM instances (its "DICOM.instanceUIDs" attribute, set by
    Slicer's DICOM module) through a database lookup; [] when the node is not from DICOM."""
    uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split() if node is not None else []
    files = [file_for_instance(uid) or "" for uid in uids]
    missing = [uid for uid, f in zip(uids, files) if not f]
    if missing:
        raise InputError(f"{len(missing)} of the {len(uids)} DICOM instances of '{node.GetName()}' are not in "
                         f"the DICOM database (e.g. {missing[0]})", field="DICOM database")
    return files
