"""PACS exchange (DIMSE with pynetdicom): find a study's MR series (C-FIND), retrieve it (C-GET,
or C-MOVE to our own storage SCP), score it, and store the SEG and SR back (C-STORE).

Settings (AE titles, host, port) come from a YAML file, never from the command line; DIMSE has
no passwords (secure the link with the site's TLS or VPN).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.files import Setting, atomic_path, check_can_write, check_settings, read_yaml

RETRIEVE_MODES = ("get", "move")
SUCCESS = 0x0000
PENDING = (0xFF00, 0xFF01)


@dataclass
class PacsSettings:
    """Where the PACS is and who we are (the `imnrisk pacs --config` file)."""

    called_ae: str
    host: str
    port: int
    calling_ae: str = "IMNRISK"
    retrieve: str = "get"
    move_port: int = 11113
    move_bind: str = "127.0.0.1"
    move_bind_allow_remote: bool = False
    timeout: float = 30.0
    source: str = ""


# Every key of the settings file, its type and range (files.check_settings applies them before use).
SETTINGS_SPEC = {
    "called_ae": Setting("text", required=True, max_length=16), "host": Setting("text", required=True, max_length=253),
    "port": Setting("integer", required=True, low=1, high=65535), "calling_ae": Setting("text", max_length=16),
    "retrieve": Setting("choice", choices=RETRIEVE_MODES), "move_port": Setting("integer", low=1, high=65535),
    "move_bind": Setting("text", max_length=253), "move_bind_allow_remote": Setting("boolean"),
    "timeout": Setting("number", above=0, high=3600),
}


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1): only this machine can connect."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip()).is_loopback
    except ValueError:
        return False


def load_pacs_settings(path: Union[str, Path]) -> PacsSettings:
    """Read and check the settings file (one line naming the file and the key on error). The C-MOVE
    listener binds to loopback unless `move_bind_allow_remote: true` says another address is meant."""
    source = str(path)
    doc = check_settings(read_yaml(path, "PACS settings file"), SETTINGS_SPEC, source, "PACS settings")
    for name in ("called_ae", "calling_ae"):
        if name in doc and ("\\" in doc[name] or not doc[name].isprintable()):
            raise InputError("an AE title has no backslash or control characters", file=source, field=name)
    if not is_loopback(doc.get("move_bind", "127.0.0.1")) and not doc.get("move_bind_allow_remote"):
        raise InputError(f"{doc['move_bind']} is not a loopback address: the C-MOVE listener would accept "
                         "connections from other hosts; add move_bind_allow_remote: true to mean it",
                         file=source, field="move_bind")
    return PacsSettings(**{k: (v.strip() if isinstance(v, str) else v) for k, v in doc.items()}, source=source)


def _pynetdicom():
    try:
        import pynetdicom  # optional dependency (extra dicom)
    except ImportError:
        raise InputError("PACS exchange needs pynetdicom: pip install 'imnrisk[dicom]'") from None
    return pynetdicom


def _associate(settings: PacsSettings, contexts: Sequence[str], roles=None, handlers=None):
    """An association with the PACS, or an InputError naming the settings file."""
    pn = _pynetdicom()
    ae = pn.AE(ae_title=settings.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.timeout
    for uid in contexts:
        ae.add_requested_context(uid)
    assoc = ae.associate(settings.host, settings.port, ae_title=settings.called_ae, ext_neg=roles or None,
                         evt_handlers=handlers or None)
    if not assoc.is_established:
        raise InputError(f"no association with {settings.called_ae}@{settings.host}:{settings.port} "
                         "(is the PACS up, and does it know our AE title?)", file=settings.source, field="host")
    return assoc


def _query(**attributes):
    from pydicom.dataset import Dataset  # optional dependency (extra dicom)
    ds = Dataset()
    for key, value in attributes.items():
        setattr(ds, key, value)
    return ds


def find_series(settings: PacsSettings, study_uid: str) -> List[Dict[str, Any]]:
    """C-FIND at SERIES level: the study's series (UID, modality, description, number)."""
    # optional dependency (extra dicom)
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND
    assoc = _associate(settings, [FIND])
    try:
        query = _query(QueryRetrieveLevel="SERIES", StudyInstanceUID=study_uid, SeriesInstanceUID="",
                       Modality="", SeriesDescription="", SeriesNumber="", PatientID="")
        found = []
        for status, identifier in assoc.send_c_find(query, FIND):
            if status and status.Status in PENDING and identifier is not None:
                found.append({"series_uid": str(identifier.SeriesInstanceUID),
                              "modality": str(identifier.get("Modality", "")),
                              "description": str(identifier.get("SeriesDescription", "")),
                              "patient_id": str(identifier.get("PatientID", ""))})
    finally:
        assoc.release()
    return found


def choose_series(series: List[Dict[str, Any]], study_uid: str, wanted: Optional[str]) -> Dict[str, Any]:
    """The series to score: the one asked for, else the study's only MR series."""
    if wanted:
        match = [s for s in series if s["series_uid"] == wanted]
        if not match:
            raise InputError(f"series {wanted} is not in study {study_uid}", field="--series")
        return match[0]
    mr = [s for s in series if s["modality"] == "MR"]
    if len(mr) != 1:
        listing = "; ".join(f"{s['series_uid']} ({s['description']})" for s in mr) or "none"
        raise InputError(f"study {study_uid} has {len(mr)} MR series ({listing}); choose one with --series",
                         field="--series")
    return mr[0]


def _saver(folder: Path, received: List[Path]) -> Callable:
    """A C-STORE handler that writes each received instance atomically into `folder`."""
    def handle(event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        with atomic_path(path) as tmp:
            ds.save_as(str(tmp), enforce_file_format=True)
        received.append(path)
        return SUCCESS
    return handle


STORAGE_CLASSES = ("1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1")  # MR, Enhanced MR


def retrieve_series(settings: PacsSettings, study_uid: str, series_uid: str, folder: Union[str, Path]) -> List[Path]:
    """Bring one series into `folder` by C-GET or C-MOVE (settings.retrieve); the written files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    received: List[Path] = []
    query = _query(QueryRetrieveLevel="SERIES", StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid)
    if settings.retrieve == "move":
        statuses = _move(settings, query, folder, received)
    else:
        statuses = _get(settings, query, folder, received)
    failed = [s for s in statuses if s not in (SUCCESS,) + PENDING]
    if failed or not received:
        raise InputError(f"retrieving series {series_uid} failed (status 0x{(failed or [0])[0]:04X}, "
                         f"{len(received)} instance(s) received)", file=settings.source, field="retrieve")
    return received


def _get(settings: PacsSettings, query, folder: Path, received: List[Path]) -> List[int]:
    from pynetdicom import build_role, evt  # optional dependency (extra dicom)
    # optional dependency (extra dicom)
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET
    roles = [build_role(uid, scp_role=True) for uid in STORAGE_CLASSES]
    assoc = _associate(settings, [GET, *STORAGE_CLASSES], roles, [(evt.EVT_C_STORE, _saver(folder, received))])
    try:
        return [s.Status for s, _ in assoc.send_c_get(query, GET) if s]
    finally:
        assoc.release()


def _move(settings: PacsSettings, query, folder: Path, received: List[Path]) -> List[int]:
    """C-MOVE to ourselves: a storage SCP listens on move_port while the PACS sends."""
    from pynetdicom import evt  # optional dependency (extra dicom)
    # optional dependency (extra dicom)
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE
    pn = _pynetdicom()
    scp = pn.AE(ae_title=settings.calling_ae)
    for uid in STORAGE_CLASSES:
        scp.add_supported_context(uid)
    server = scp.start_server((settings.move_bind, settings.move_port), block=False,
                              evt_handlers=[(evt.EVT_C_STORE, _saver(folder, received))])
    try:
        assoc = _associate(settings, [MOVE])
        try:
            return [s.Status for s, _ in assoc.send_c_move(query, settings.calling_ae, MOVE) if s]
        finally:
            assoc.release()
    finally:
        server.shutdown()


def store(settings: PacsSettings, paths: Sequence[Union[str, Path]]) -> None:
    """C-STORE each file to the PACS; any status but success is an error naming the file."""
    import pydicom  # optional dependency (extra dicom)
    datasets = [(Path(p), pydicom.dcmread(str(p))) for p in paths]
    assoc = _associate(settings, sorted({str(ds.SOPClassUID) for _, ds in datasets}))
    try:
        for path, ds in datasets:
            status = assoc.send_c_store(ds)
            if not status or status.Status != SUCCESS:
                code = f"0x{status.Status:04X}" if status else "no answer"
                raise InputError(f"the PACS refused to store it ({code})", file=str(path), field="C-STORE")
    finally:
        assoc.release()


def score_study(settings: PacsSettings, model_path: Union[str, Path], study_uid: str, mask: Union[str, Path],
                out_dir: Union[str, Path], clinical: Dict[str, Any], series_uid: Optional[str] = None,
                phase: Optional[int] = None, label: Union[int, str] = 1, send: bool = True,
                force: bool = False) -> Tuple[Dict[str, Any], List[str]]:
    """The round trip: find and retrieve the study's MR series, score it (the scoring core), write SEG
    + SR into out_dir and store them back on the PACS. Returns the `predict --json` result (+ files)
    and the Prediction's text lines (verdict first)."""
    from IMNRiskLib.outputs import dicomout  # start-up time: loaded when this step runs
    from IMNRiskLib.scoring.modelfile import ScoringModel  # start-up time: loaded when this step runs
    from IMNRiskLib.scoring import Options, score_case  # start-up time: loaded when this step runs
    from IMNRiskLib.scoring.core import case_from_files, check_request  # start-up time: loaded when this step runs
    model = ScoringModel.load(model_path)
    check_request(model, clinical, Options())  # before anything is retrieved
    out = Path(out_dir)
    series = choose_series(find_series(settings, study_uid), study_uid, series_uid)
    source = out / "source" / series["series_uid"]
    targets = dicomout.output_paths(out)
    for p in (targets.seg, targets.sr):
        check_can_write(p, force)
    retrieve_series(settings, study_uid, series["series_uid"], source)
    prediction = score_case(model, case_from_files(model, source, mask, phase, label), clinical)
    result = prediction.to_dict()
    written = dicomout.export_case(out, source, mask, result, model, label, force)
    if send:
        store(settings, [written.seg, written.sr])
    result["files"] = {"seg": str(written.seg), "sr": str(written.sr), "source": str(source)}
    result["stored"] = bool(send)
    return result, prediction.lines()
