"""A gzip-compressed 3-D NRRD (what Slicer saves) read in one pass that also checks it whole.

SimpleITK inflates the stream without checking its CRC, so `imaging._read` used to decode every
gzip file twice: once in SimpleITK, once in `integrity.check_file_complete` (in a thread). Here the
stream is inflated once by a gzip decoder (isal's, 2x zlib's speed, when installed), which checks
every member's CRC-32 and length, and the voxels are put on the geometry SimpleITK reads from the
header (`ReadImageInformation`: spacing, origin, direction, pixel type and the header's key/value
pairs, so `.seg.nrrd` segment names stay). Anything else (detached data, byte or line skips, 4-D,
vector pixels, another encoding) returns None and is read the usual way.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import SimpleITK as sitk

from IMNRiskLib.inputs.integrity import NRRD_TYPE_BYTES, _text_header

_NUMPY_TYPES = {sitk.sitkUInt8: "u1", sitk.sitkInt8: "i1", sitk.sitkUInt16: "u2", sitk.sitkInt16: "i2",
                sitk.sitkUInt32: "u4", sitk.sitkInt32: "i4", sitk.sitkUInt64: "u8", sitk.sitkInt64: "i8",
                sitk.sitkFloat32: "f4", sitk.sitkFloat64: "f8"}
_PLAIN_FIELDS = {"data file", "datafile", "byte skip", "byteskip", "line skip", "lineskip"}


def _attached_gzip_header(path: Path) -> Optional[tuple]:
    """(header fields, data offset) of a NRRD whose gzip data follow its header, else None."""
    with open(path, "rb") as fh:
        if not fh.read(8).startswith(b"NRRD000"):
            return None
        fh.seek(0)
        fields, offset = _text_header(fh, lambda text, f: text == "")
    if fields.get("encoding", "").lower() not in ("gzip", "gz") or _PLAIN_FIELDS & set(fields):
        return None
    return fields, offset


def _geometry(path: Path) -> Optional[sitk.ImageFileReader]:
    """SimpleITK's reading of the header, when it is a 3-D scalar image of a plain pixel type."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None  # the usual reading gives the clear error
    if reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1 or reader.GetPixelID() not in _NUMPY_TYPES:
        return None
    return reader


def _voxels(path: Path, fields: Dict[str, str], offset: int, reader: sitk.ImageFileReader) -> Optional[np.ndarray]:
    """The inflated data as a (z, y, x) array; None when the stream does not decode cleanly to the
    size the header promises (the usual reading then names the fault: truncated, corrupt, trailing)."""
    code = _NUMPY_TYPES[reader.GetPixelID()]
    dtype = np.dtype((">" if fields.get("endian", "little").lower() == "big" else "<") + code)
    if NRRD_TYPE_BYTES.get(fields.get("type", "").lower()) != dtype.itemsize:
        return None  # a header SimpleITK reads another way: leave it to SimpleITK
    with open(path, "rb") as fh:
        fh.seek(offset)
        stream = fh.read()
    try:
        data = _inflate(stream)
    except Exception:  # noqa: BLE001 - EOFError, OSError, zlib.error, BadGzipFile: the usual reading says which
        return None
    count = int(np.prod(reader.GetSize(), dtype=np.int64))
    if len(data) != count * dtype.itemsize:
        return None
    return np.frombuffer(data, dtype, count=count).reshape(reader.GetSize()[::-1])


def _inflate(stream: bytes) -> bytes:
    """The gzip stream inflated (every member's CRC-32 and length checked): by python-isal, the same
    format about twice as fast, where installed (a dependency of IMNRisk's pip install), else by zlib
    (Slicer's Python, whose scoring path loads only what Slicer and the extension ship)."""
    try:
        from isal import igzip as decoder  # optional: Slicer's Python may not have it
    except ImportError:
        decoder = gzip
    return decoder.decompress(stream)


def read_gzip_nrrd(path: Path) -> Optional[sitk.Image]:
    """The image of a single-file gzip 3-D NRRD, inflated once and checked whole by that pass; None
    for any other file (the caller then reads it with SimpleITK and checks it meanwhile)."""
    try:
        header = _attached_gzip_header(path)
    except OSError:
        return None
    reader = _geometry(path) if header else None
    if reader is None:
        return None
    voxels = _voxels(path, *header, reader)
    if voxels is None:
        return None
    image = sitk.GetImageFromArray(voxels.astype(voxels.dtype.newbyteorder("="), copy=False))
    image.SetOrigin(reader.GetOrigin())
    image.SetSpacing(reader.GetSpacing())
    image.SetDirection(reader.GetDirection())
    for key in reader.GetMetaDataKeys():
        image.SetMetaData(key, reader.GetMetaData(key))
    return image
