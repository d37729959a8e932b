"""Uploads from the page: a file input that refuses a file over --max-upload-mb before sending it and
then sends it in chunks (trame-slicer's chunk loader), and the server side that gathers the chunks
of one upload under the same limit. The study and the segmentation inputs both use them."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from . import study


class ChunkedUpload:
    """The chunks of one upload as they arrive (the page sends ~10 MB at a time; an empty list ends
    it). Beyond the limit the rest is dropped and the upload refused."""

    def __init__(self, limit_mb: int):
        self.limit_mb = limit_mb
        self._files: List[Dict[str, Any]] = []
        self._bytes = 0

    def add(self, files: List[Dict[str, Any]]) -> Optional[Tuple[List[Dict[str, Any]], Optional[str]]]:
        """Take one chunk; at the end (an empty chunk) return (files, refusal or None), else None."""
        limit = self.limit_mb * 1_000_000
        if files:
            if self._bytes <= limit:
                self._bytes += sum(len(study._content(f)) for f in files)
                self._files = self._files + list(files) if self._bytes <= limit else []
            return None
        files, size = self._files, self._bytes
        self._files, self._bytes = [], 0
        if size > limit:
            return [], study.upload_refusal(size, self.limit_mb)
        return files, None


def upload_input(trigger: str, element_id: str, error_state: str, folder: bool = False, title: str = "") -> None:
    """A file (or folder) input sending its files to the trigger `trigger` in chunks; an upload over
    imn_max_upload_mb is refused on the page (in `error_state`) before anything is sent."""
    from trame.widgets import vuetify3 as v
    send = ("const files = $event.target.files; if (!files || !files.length) return;"
            " const total = [...files].reduce((s, f) => s + f.size, 0);"
            f" if (total > imn_max_upload_mb * 1e6) {{ {error_state} = 'Refused: the upload is '"
            " + Math.ceil(total / 1e6) + ' MB; this server accepts at most ' + imn_max_upload_mb"
            " + ' MB (imnrisk web --max-upload-mb).'; return; }"
            f" {error_state} = ''; imn_uploading = true;"
            f" window.load_files_by_chunks(files, {{ trigger_name: '{trigger}' }})"
            ".finally(() => { imn_uploading = false; });")
    # hide_input: the chosen file's name (often the patient's) is not shown on the page
    v.VFileInput(multiple=True, prepend_icon="mdi-folder-upload" if folder else "mdi-file-upload",
                 hide_input=True, hide_details=True, id=element_id, change=send, disabled=("imn_uploading",),
                 raw_attrs=["webkitdirectory"] if folder else [],
                 title=title or ("Upload a DICOM folder" if folder else "Upload a file"), style="flex: 0 0 auto;")
