"""A real Orthanc (Debian package `orthanc`) on loopback for the PACS round-trip tests: its own
JSON configuration, a temporary storage folder and free ports; its REST API for upload and read-back."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
AET = "ORTHANC"
CLIENT_AET = "IMNRISK"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def why_unavailable() -> Optional[str]:
    """None if Orthanc can run here, else the reason (for the skip message)."""
    if not Path(ORTHANC).exists():
        return "Orthanc is not installed (Debian: apt-get install orthanc; .ci/run does it as root)"
    return None


@dataclass
class Orthanc:
    """A running server: DICOM port, HTTP port, process."""

    dicom_port: int
    http_port: int
    process: subprocess.Popen
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url(path), timeout=30) as r:
            return r.read()

    def get_json(self, path: str):
        return json.loads(self.get(path))

    def post(self, path: str, body: bytes) -> dict:
        request = urllib.request.Request(self.url(path), data=body, method="POST")
        with urllib.request.urlopen(request, timeout=60) as r:
            return json.loads(r.read())

    def upload(self, files: List[Path]) -> None:
        for f in files:
            self.post("/instances", f.read_bytes())

    def series_files(self, study_uid: str, modality: str) -> List[bytes]:
        """Every instance (Part 10 bytes) of the study's series of one modality."""
        study = self.post("/tools/lookup", study_uid.encode())
        study_id = next(x["ID"] for x in study if x["Type"] == "Study")
        out = []
        for series in self.get_json(f"/studies/{study_id}/series"):
            if series["MainDicomTags"].get("Modality") == modality:
                out += [self.get(f"/instances/{i}/file") for i in series["Instances"]]
        return out


def write_config(folder: Path, dicom_port: int, http_port: int, client_port: int) -> Path:
    """Orthanc's JSON configuration: loopback HTTP without remote access, our AE as a modality."""
    config = {
        "Name": "IMNRisk test PACS", "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"), "DicomAet": AET, "DicomPort": dicom_port,
        "HttpPort": http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True, "Plugins": [], "StableAge": 1, "ConcurrentJobs": 1,
        "DicomModalities": {"imnrisk": [CLIENT_AET, "127.0.0.1", client_port]},
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def start(folder: Path, timeout_s: float = 60.0) -> Iterator[Orthanc]:
    """Start Orthanc, wait until its REST API answers, yield it, stop it (generator for a fixture)."""
    folder.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port, client_port = free_port(), free_port(), free_port()
    config = write_config(folder, dicom_port, http_port, client_port)
    log = folder / "orthanc.log"
    with open(log, "wb") as out:
        # DCMTK (inside Orthanc) sets TCP_NODELAY only when told: without it each retrieved instance
        # waits ~40 ms on Nagle against delayed ACKs (measured: 16 s instead of 4 s for 320 slices).
        process = subprocess.Popen([ORTHANC, str(config)], stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TCP_NODELAY": "1"})
    server = Orthanc(dicom_port, http_port, process, log)
    server.client_port = client_port
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({process.returncode}): {log.read_text(errors='replace')[-800:]}")
            try:
                server.get("/system")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not answer in {timeout_s:.0f} s")
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
