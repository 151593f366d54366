"""Transfer syntax conversion (PS3.5 10) for retrieval (PS3.18 8.7.3.5.2) and ``/modify``'s
``Transcode``: a data set rewritten in an uncompressed syntax (decompressing where pydicom's own
decoders can) or in RLE Lossless. The one place the hub changes a transfer syntax."""

from __future__ import annotations

import io
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from hub.errors import HubError
from hub.imaging.decode import ImageInfo, decoding_plugin

NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
# Compressed syntaxes pydicom decodes here without extra plugins: RLE (its own decoder) and 8-bit JPEG
# baseline (Pillow).
DECODABLE = {"1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50"}
TARGETS = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}


UNCOMPRESSED_TARGETS = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"}


def transcode_dataset(ds: Dataset, target: str) -> None:
    """Rewrite ``ds`` (with its file meta) in ``target`` in place: an uncompressed syntax, or RLE
    Lossless. ``ValueError`` (or a decoder's error) when this cannot be done here."""
    source = str(ds.file_meta.TransferSyntaxUID)
    if target not in UNCOMPRESSED_TARGETS and target != RLELossless:
        raise ValueError(f"no encoder for {target}")
    if source not in UNCOMPRESSED_TARGETS:
        if "PixelData" in ds:  # with the decoder the image routes use (Pillow for JPEG baseline, never pylibjpeg)
            ds.decompress(decoding_plugin=decoding_plugin(source, ImageInfo.of(ds).bits_stored))
        ds.file_meta.TransferSyntaxUID = UID(ExplicitVRLittleEndian)
    if target == RLELossless:
        if "PixelData" not in ds:
            raise ValueError("no pixel data to compress")
        ds.compress(RLELossless)
    else:
        ds.file_meta.TransferSyntaxUID = UID(target)


def can_transcode(source: str, target: str) -> bool:
    return source == target or (target in TARGETS and (source in NATIVE or source in DECODABLE))


def transcode(path: Path, target: str) -> bytes:
    """The Part 10 file at ``path`` written in ``target`` (Explicit or Implicit VR Little Endian)."""
    if target not in TARGETS:
        raise HubError("not_acceptable", f"cannot transcode to {target}")
    ds = dcmread(path)
    source = str(ds.file_meta.TransferSyntaxUID)
    if source == target:
        return path.read_bytes()
    try:
        transcode_dataset(ds, target)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
    except Exception as exc:  # a decoder missing or failing on this object
        raise HubError("not_acceptable", f"cannot transcode from {source}: {type(exc).__name__}") from None
    return out.getvalue()
