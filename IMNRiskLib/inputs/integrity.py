"""Image file integrity before reading: a NRRD, MetaImage or NIfTI file whose data stream is shorter
than its header promises (a truncated copy) is refused by name, not read as zeros."""

from __future__ import annotations

import bz2
import math
import struct
import zlib
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from IMNRiskLib.core.errors import InputError
from IMNRiskLib.core.files import check_input_file

# SimpleITK's NIfTI reader zero-fills a truncated file, and no reader checks a gzip stream's CRC:
# a damaged file would be scored as if it were whole. So the data of every file we read must
# decode completely (gzip CRC, zlib/bzip2 end of stream) to at least the bytes its header promises.


NRRD_TYPE_BYTES = {**dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8",
                                    "uint8_t"), 1),
                   **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t",
                                    "ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
                   **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32",
                                    "uint32_t", "float"), 4),
                   **dict.fromkeys(("longlong", "long long", "long long int", "signed long long",
                                    "signed long long int", "int64", "int64_t", "ulonglong", "unsigned long long",
                                    "unsigned long long int", "uint64", "uint64_t", "double"), 8)}


# MET_LONG is 4 bytes or 8 by platform: take the smaller (a too small promise can only miss a cut).
MET_TYPE_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                  "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                  "MET_DOUBLE": 8}


_CHUNK = 1 << 20


def _decoded_size(fh, codec: str) -> int:
    """Bytes a compressed stream decodes to, read to its end; a cut or damaged stream raises ValueError.

    gzip: every member's CRC-32 and length are checked (zlib does it at a member's end); bytes after
    the last member that do not start another member are ignored, as gzip itself does.
    """
    def new_decoder():
        return zlib.decompressobj(31) if codec == "gzip" else (
            zlib.decompressobj() if codec == "zlib" else bz2.BZ2Decompressor())
    decoder, total, pending = new_decoder(), 0, b""
    try:
        while True:
            block = pending or fh.read(_CHUNK)
            pending = b""
            if not block:
                break
            total += len(decoder.decompress(block))
            if decoder.eof:
                rest = decoder.unused_data + fh.read(2)
                if codec == "gzip" and rest[:2] == b"\x1f\x8b":
                    decoder, pending = new_decoder(), rest
                    continue
                return total
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None
    raise ValueError("compressed data ended before the end of its stream")


def _nifti_promise(header: bytes) -> Optional[int]:
    """Bytes a NIfTI-1/2 file must hold (vox_offset + voxels x bytes per voxel), None if not NIfTI."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            bitpix = struct.unpack(order + "h", header[72:74])[0]
            offset = struct.unpack(order + "f", header[108:112])[0]
        elif len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            dims = struct.unpack(order + "8q", header[16:80])
            bitpix = struct.unpack(order + "h", header[14:16])[0]
            offset = struct.unpack(order + "q", header[168:176])[0]
        else:
            continue
        if not 1 <= dims[0] <= 7 or bitpix <= 0 or not math.isfinite(offset):
            return None
        return int(offset) + int(np.prod([max(int(d), 1) for d in dims[1:dims[0] + 1]], dtype=np.int64)) * bitpix // 8
    return None


def _text_header(fh, end_of_header) -> Tuple[Dict[str, str], int]:
    """Key/value lines of an NRRD or MetaImage header and the byte offset where the data start."""
    fields: Dict[str, str] = {}
    offset = 0
    for _ in range(4096):
        line = fh.readline(65536)
        if not line:
            break
        offset += len(line)
        text = line.decode("latin-1").rstrip("\r\n")
        if end_of_header(text, fields):
            break
        for sep in (":=", ":", "="):
            if sep in text and not text.startswith("#"):
                key, value = text.split(sep, 1)
                fields[key.strip().lower()] = value.strip()
                break
        if end_of_header(text, fields):
            break
    return fields, offset


def _data_source(path: Path, name: Optional[str]) -> Optional[Path]:
    """The data file a detached header names (None for LIST or numbered patterns we do not follow)."""
    if not name or name.upper().startswith("LIST") or "%" in name or " " in name.strip():
        return None
    data = Path(name) if Path(name).is_absolute() else path.parent / name
    check_input_file(data, "image data file")
    return data


def _check_stream(path: Path, data: Path, offset: int, codec: Optional[str], promised: Optional[int]) -> None:
    """Decode `data` from `offset` and compare with the promised size; raise ValueError when short."""
    with open(data, "rb") as fh:
        fh.seek(offset)
        if codec is None:
            available = data.stat().st_size - offset
        else:
            available = _decoded_size(fh, codec)
    if promised is not None and available < promised:
        raise ValueError(f"{'decodes to' if codec else 'holds'} {available} bytes of image data, "
                         f"the header promises {promised}")


def check_file_complete(path: Path, what: str = "image") -> None:
    """Refuse a truncated or corrupt image file (NIfTI, NIfTI.gz, NRRD/NHDR, MHA/MHD) naming it."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(8)
            fh.seek(0)
            if magic[:2] == b"\x1f\x8b":  # a gzipped file (.nii.gz): decode it all, NIfTI header first
                try:
                    header = zlib.decompressobj(31).decompress(fh.read(1 << 16), 544)
                except zlib.error as exc:
                    raise ValueError(str(exc)) from None
                fh.seek(0)
                decoded = _decoded_size(fh, "gzip")
                promised = _nifti_promise(header)
                if promised is not None and decoded < promised:
                    raise ValueError(f"decodes to {decoded} bytes, the NIfTI header promises {promised}")
                return
            if magic.startswith(b"NRRD"):
                fields, offset = _text_header(fh, lambda text, f: text == "")
                _check_nrrd(path, fields, offset)
                return
            header = fh.read(348 + 192)
            fh.seek(0)
            promised = _nifti_promise(header)
            if promised is not None:
                if path.stat().st_size < promised:
                    raise ValueError(f"holds {path.stat().st_size} bytes, the NIfTI header promises {promised}")
                return
            if path.name.lower().endswith((".mha", ".mhd")):
                fields, offset = _text_header(fh, lambda text, f: "elementdatafile" in f)
                _check_metaimage(path, fields, offset)
    except ValueError as exc:
        raise InputError(f"cannot read {what}: the file is truncated or corrupt ({str(exc)[:160]})",
                         file=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read {what} ({exc.strerror or exc})", file=str(path)) from None


def _check_nrrd(path: Path, fields: Dict[str, str], offset: int) -> None:
    """NRRD: the attached or detached data must decode to sizes x type bytes."""
    try:
        sizes = [int(x) for x in fields.get("sizes", "").split()]
    except ValueError:
        return
    type_bytes = NRRD_TYPE_BYTES.get(fields.get("type", "").lower())
    promised = int(np.prod(sizes, dtype=np.int64)) * type_bytes if sizes and type_bytes else None
    encoding = fields.get("encoding", "raw").lower()
    codec = {"raw": None, "gzip": "gzip", "gz": "gzip", "bzip2": "bz2", "bz2": "bz2"}.get(encoding, "skip")
    if codec == "skip":  # ascii/hex: the reader itself counts values
        return
    detached = fields.get("data file") or fields.get("datafile")
    data = _data_source(path, detached) if detached else path
    if data is None:
        return
    skip = fields.get("byte skip", "0")
    if data is not path and codec is None and skip not in ("0", ""):
        return  # a raw file with a header of its own: the reader checks its length
    _check_stream(path, data, 0 if data is not path else offset, codec, promised)


def _check_metaimage(path: Path, fields: Dict[str, str], offset: int) -> None:
    """MetaImage: LOCAL or detached data, zlib-compressed or raw, must hold DimSize x channels x type bytes."""
    try:
        sizes = [int(x) for x in fields.get("dimsize", "").split()]
        channels = int(fields.get("elementnumberofchannels", "1") or 1)
    except ValueError:
        return
    type_bytes = MET_TYPE_BYTES.get(fields.get("elementtype", "").upper())
    promised = int(np.prod(sizes, dtype=np.int64)) * channels * type_bytes if sizes and type_bytes else None
    codec = "zlib" if fields.get("compresseddata", "false").lower() == "true" else None
    name = fields.get("elementdatafile", "")
    data = path if name.upper() == "LOCAL" else _data_source(path, name)
    if data is None:
        return
    _check_stream(path, data, offset if data is path else 0, codec, promised)
