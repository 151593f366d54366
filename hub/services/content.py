"""Per-instance content of Orthanc's REST API: the stored file, its tags, its frames and images.

An instance is named by its Orthanc id (``/instances/{id}``); its blob is read as stored. Tags and
frames are read from the header and the file offsets (:mod:`hub.dicomfile`, :mod:`hub.imaging.frames`)
without decoding pixels; images decode one frame (:mod:`hub.imaging`). Errors follow Orthanc 1.10:
unknown id 404, frame out of range 404 for images and 400 for raw frames, undecodable 415.
"""

from __future__ import annotations

import glob
import io
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

from hub import imaging
from hub.dicomfile import DEFLATED, Header, read_header
from hub.errors import HubError
from hub.imaging import frames as rawframes
from hub.store.blobs import BlobStore
from hub.store.lookup import LookupRepository
from mappings.ascii import is_digits
from mappings.dicom_to_orthanc_tags import (
    PIXEL_DATA,
    TagDictionary,
    dataset_to_orthanc_tags,
    element_value_bytes,
    file_meta_to_orthanc_header,
    parse_tag,
    shorten,
    simplify,
)

TagFormat = Literal["full", "simplify", "short"]
ImageKind = Literal["preview", "uint8", "uint16", "int16", "rendered"]
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
CONTENT_DEFER = 64 * 1024  # values above this are read from the file only when asked for


@dataclass(frozen=True)
class StoredDicom:
    public_id: str
    path: Path
    size: int
    filename: str  # Orthanc names the download after the attachment's UUID


@dataclass(frozen=True)
class RenderOptions:
    """Query arguments of ``/rendered`` (Orthanc 1.10): window, target size, smoothing."""

    window_center: float | None = None
    window_width: float | None = None
    width: int = 0
    height: int = 0
    smooth: bool = False
    voi: str = "orthanc"  # "dicom": PS3.3 C.11.2.1.2.1 through the render service's window (DICOMweb)


@dataclass(frozen=True)
class ContentAnswer:
    """``/content/{path}``: a JSON list (tags, item or fragment indexes) or a value to stream."""

    listing: list[str] | None = None
    chunks: Iterable[bytes] | None = None
    length: int = 0


@lru_cache(maxsize=1)
def default_dictionary() -> TagDictionary:
    """DCMTK's ``dicom.dic`` and ``private.dic`` (DCMDICTPATH, else the system's libdcmtk copy), the
    dictionary Orthanc names tags from; pydicom's dictionary when DCMTK's is not installed."""
    paths = [p for p in os.environ.get("DCMDICTPATH", "").split(":") if p]
    if not paths:
        for folder in sorted(glob.glob("/usr/share/libdcmtk*"), reverse=True):
            found = [os.path.join(folder, n) for n in ("dicom.dic", "private.dic")]
            if all(os.path.isfile(p) for p in found):
                paths = found
                break
    texts = []
    for p in paths:
        try:
            texts.append(Path(p).read_text(encoding="latin-1"))
        except OSError:
            continue
    return TagDictionary.from_dcmtk(texts) if texts else TagDictionary()


class ContentService:
    def __init__(self, lookup: LookupRepository, blobs: BlobStore, dictionary: TagDictionary | None = None) -> None:
        self.lookup = lookup
        self.blobs = blobs
        self._dictionary = dictionary

    @property
    def dictionary(self) -> TagDictionary:
        if self._dictionary is None:
            self._dictionary = default_dictionary()
        return self._dictionary

    # ------------------------------------------------------------------ the file
    def locate(self, instance_id: str) -> StoredDicom:
        """The stored file of ``/instances/{instance_id}``; 404 when unknown."""
        found = self.lookup.instance_file(instance_id)
        if found is None or found.public_id != instance_id.strip():
            raise HubError("unknown_resource", "Unknown resource")
        path = self.blobs.path(found.blob_key)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise HubError("unknown_resource", "Unknown resource") from None
        key = found.blob_key.ljust(32, "0")[:32]
        uuid = f"{key[0:8]}-{key[8:12]}-{key[12:16]}-{key[16:20]}-{key[20:32]}"
        return StoredDicom(found.public_id, path, size, f"{uuid}.dcm")

    def _header(self, instance_id: str) -> tuple[StoredDicom, Header]:
        stored = self.locate(instance_id)
        try:
            return stored, read_header(stored.path)
        except FileNotFoundError:
            raise HubError("unknown_resource", "Unknown resource") from None

    # ------------------------------------------------------------------ tags
    def tags(self, instance_id: str, fmt: TagFormat = "full", ignore_length: Iterable[str] = ()) -> dict[str, Any]:
        """``/instances/{id}/tags`` (``?simplify``, ``?short``, ``?ignore-length=tag,tag``) and
        ``/simplified-tags``."""
        ignore = frozenset(self._tag(t) for t in ignore_length)
        stored, header = self._header(instance_id)
        ds, pixel_tag = header.dataset, int(header.pixel_data_tag, 16) if header.pixel_data_tag else None
        if header.transfer_syntax_uid in DEFLATED:
            ds = self._read(stored.path, stop_before_pixels=False)
            pixel_tag = None
        full = dataset_to_orthanc_tags(ds, self.dictionary, pixel_data_tag=pixel_tag,
                                       ignore_length=ignore)
        return _formatted(full, fmt)

    def header(self, instance_id: str, fmt: TagFormat = "full") -> dict[str, Any]:
        """``/instances/{id}/header``: the File Meta Information."""
        _, header = self._header(instance_id)
        return _formatted(file_meta_to_orthanc_header(header.dataset.file_meta, self.dictionary), fmt)

    # ------------------------------------------------------------------ frames
    def frame_count(self, instance_id: str) -> int:
        _, header = self._header(instance_id)
        try:
            return rawframes.frame_count(header.dataset, header.transfer_syntax_uid)
        except rawframes.BadPixelData as exc:
            raise HubError("bad_file_format", str(exc)) from None

    def raw_frame(self, instance_id: str, index: int) -> tuple[bytes, str]:
        """``/frames/{n}/raw``: the frame's bytes as stored and their MIME type."""
        stored, header = self._header(instance_id)
        try:
            return rawframes.raw_frame(stored.path, header, index)
        except imaging.FrameOutOfRange:
            raise HubError("bad_request", "Parameter out of range") from None
        except rawframes.BadPixelData as exc:
            raise HubError("bad_file_format", str(exc)) from None

    def image(self, instance_id: str, index: int, kind: ImageKind, encoding: imaging.encode.Encoding = "png", *,
              quality: int = 90, options: RenderOptions | None = None) -> tuple[bytes, str]:
        """``/preview``, ``/image-uint8|uint16|int16`` and ``/rendered`` of frame ``index``."""
        stored, header = self._header(instance_id)
        ds = header.dataset
        if header.transfer_syntax_uid in DEFLATED:
            ds = self._read(stored.path, stop_before_pixels=True)
        if encoding == "jpeg" and kind not in ("preview", "uint8", "rendered"):
            raise HubError("unknown_resource", "JPEG is only available for 8-bit images")
        invert = str(ds.get("PhotometricInterpretation", "") or "").strip().upper() == "MONOCHROME1"
        try:
            frame = imaging.decode_frame(stored.path, ds, index)
            if kind == "preview":
                pixels = imaging.preview(frame, invert=invert)
            elif kind == "rendered":
                pixels = self._render(frame, ds, index, invert, options or RenderOptions())
            else:
                pixels = imaging.extract(frame, kind)
            return imaging.encode(pixels, encoding, quality=quality), imaging.MIME[encoding]
        except imaging.FrameOutOfRange as exc:
            raise HubError("unknown_resource", str(exc)) from None
        except imaging.Undecodable as exc:
            raise HubError("sop_class_not_supported", f"Cannot decode the image: {exc}") from None
        except imaging.NotEncodable as exc:
            raise HubError("unknown_resource", str(exc)) from None

    def numpy(self, instance_id: str, index: int | None, *, rescale: bool = True, compress: bool = False) -> bytes:
        """``/frames/{n}/numpy`` (height, width, channels) and ``/numpy`` (frames, height, width,
        channels): grayscale as float32 ``slope * value + intercept`` unless ``rescale=false``."""
        stored, header = self._header(instance_id)
        ds = header.dataset
        count = self.frame_count(instance_id) if index is None else 1
        if index is None and count == 0:
            raise HubError("bad_file_format", "Empty DICOM instance")
        arrays = []
        for n in range(count) if index is None else [index]:
            frame = self._decode(stored, ds, n)
            pixels = frame.pixels if frame.pixels.ndim == 3 else frame.pixels[:, :, None]
            if rescale and not frame.is_color:
                w = imaging.frame_windowing(ds, n)
                pixels = pixels.astype(np.float32) * np.float32(w.slope) + np.float32(w.intercept)
            arrays.append(pixels)
        if len({(a.shape, a.dtype) for a in arrays}) > 1:
            raise HubError("bad_request", "The size or pixel format of the frames varies across the instance")
        array = arrays[0] if index is not None else np.stack(arrays)
        buf = io.BytesIO()
        if compress:
            np.savez_compressed(buf, array)
        else:
            np.save(buf, array)
        return buf.getvalue()

    def matlab(self, instance_id: str, index: int) -> str:
        """``/frames/{n}/matlab``: the decoded values as an Octave/Matlab expression for ``eval()``."""
        stored, header = self._header(instance_id)
        frame = self._decode(stored, header.dataset, index)
        pixels = frame.pixels
        if frame.is_color:
            rows, columns = pixels.shape[:2]
            values = " ".join(str(v) for v in pixels.reshape(-1).tolist())
            return f"double(permute(reshape([ {values} ], [ 3 {columns} {rows} ]), [ 3 2 1 ]))"
        lines = [" ".join(str(v) for v in row) + " " for row in pixels.tolist()]
        return "double([ " + "; ".join(lines) + "])"

    def _decode(self, stored: StoredDicom, ds: Dataset, index: int) -> imaging.Frame:
        try:
            return imaging.decode_frame(stored.path, ds, index)
        except imaging.FrameOutOfRange:
            raise HubError("bad_request", "Parameter out of range") from None
        except imaging.Undecodable as exc:
            raise HubError("sop_class_not_supported", f"Cannot decode the image: {exc}") from None

    @staticmethod
    def _render(frame: imaging.Frame, ds: Dataset, index: int, invert: bool, options: RenderOptions) -> Any:
        window = imaging.frame_windowing(ds, index)
        center = options.window_center if options.window_center is not None else window.center
        width = options.window_width if options.window_width is not None else window.width
        window = imaging.Windowing(center, width, window.slope, window.intercept)
        return imaging.render(frame, window, invert=invert, width=options.width, height=options.height,
                              smooth=options.smooth, voi="dicom" if options.voi == "dicom" else "orthanc")

    # ------------------------------------------------------------------ content, pdf
    def content(self, instance_id: str, parts: list[str]) -> ContentAnswer:
        """``/content/{path}`` (ParsedDicomFile::SendPathValue): tags of an item, items of a
        sequence, fragments of the pixel data, or a raw value; 404 when the path leads nowhere."""
        stored, header = self._header(instance_id)
        nowhere = HubError("unknown_resource", "Unknown resource")
        if parts and len(parts) <= 2 and self._tag(parts[0]) == PIXEL_DATA:
            return self._pixel_content(stored, header, parts[1] if len(parts) == 2 else None)
        item: Dataset = self._read(stored.path, stop_before_pixels=False)
        for pos in range(len(parts) // 2):
            if not is_digits(parts[2 * pos + 1]):
                raise nowhere
            index, tag = int(parts[2 * pos + 1]), self._tag(parts[2 * pos])
            seq = item.get(tag) if tag in item else None
            if seq is None or seq.VR != "SQ" or index >= len(seq.value):
                raise nowhere
            item = seq.value[index]
        if len(parts) % 2 == 0:
            return ContentAnswer(listing=[f"{int(t) >> 16:04x}-{int(t) & 0xFFFF:04x}" for t in sorted(item.keys())])
        tag = self._tag(parts[-1])
        if tag not in item:
            raise nowhere
        if item[tag].VR == "SQ":
            return ContentAnswer(listing=[str(i) for i in range(len(item[tag].value))])
        value = element_value_bytes(item, tag, self.dictionary)
        return ContentAnswer(chunks=[value], length=len(value))

    def _pixel_content(self, stored: StoredDicom, header: Header, block: str | None) -> ContentAnswer:
        nowhere = HubError("unknown_resource", "Unknown resource")
        if header.transfer_syntax_uid in DEFLATED or header.pixel_data_offset is None:
            ds = self._read(stored.path, stop_before_pixels=False)
            if header.pixel_data_offset is None and PIXEL_DATA not in ds:
                raise nowhere
            data = element_value_bytes(ds, PIXEL_DATA, self.dictionary)
            if block is None:
                return ContentAnswer(listing=["0"])
            if block != "0":
                raise nowhere
            return ContentAnswer(chunks=[data], length=len(data))
        with open(stored.path, "rb") as f:
            items = rawframes.pixel_element(f, header)
        if block is None:
            return ContentAnswer(listing=[str(i) for i in range(len(items) if items is not None else 1)])
        if not is_digits(block) or int(block) >= (len(items) if items is not None else 1):
            raise nowhere
        if items is not None:
            span = items[int(block)]
            return ContentAnswer(chunks=_stream(stored.path, span), length=span.length)
        if header.transfer_syntax_uid == "1.2.840.10008.1.2.2":  # big endian: words swapped in memory
            ds = self._read(stored.path, stop_before_pixels=False)
            data = element_value_bytes(ds, PIXEL_DATA, self.dictionary)
            return ContentAnswer(chunks=[data], length=len(data))
        with open(stored.path, "rb") as f:
            span = rawframes.value_span(f, header)
        return ContentAnswer(chunks=_stream(stored.path, span), length=span.length)

    def pdf(self, instance_id: str) -> bytes:
        """``/pdf``: the Encapsulated Document of an Encapsulated PDF instance (its pad byte dropped
        when the document does not end with CR or LF, as Orthanc); 404 for anything else."""
        stored, header = self._header(instance_id)
        ds = header.dataset
        if header.transfer_syntax_uid in DEFLATED:
            ds = self._read(stored.path, stop_before_pixels=False)
        sop = str(ds.get("SOPClassUID", "") or "").strip()
        mime = str(ds.get("MIMETypeOfEncapsulatedDocument", "") or "").strip()
        if sop != ENCAPSULATED_PDF or mime != "application/pdf" or "EncapsulatedDocument" not in ds:
            raise HubError("unknown_resource", "Not an encapsulated PDF")
        pdf = bytes(ds.EncapsulatedDocument or b"")
        if pdf and pdf[-1] not in (10, 13):  # a PDF ends with %%EOF and CR/LF; else a pad byte
            pdf = pdf[:-1]
        return pdf

    # ------------------------------------------------------------------ helpers
    def _tag(self, text: str) -> int:
        tag = parse_tag(text, self.dictionary)
        if tag is None:
            raise HubError("bad_request", f"Unknown DICOM tag: {text}")
        return tag

    @staticmethod
    def _read(path: Path, *, stop_before_pixels: bool) -> Dataset:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return dcmread(path, stop_before_pixels=stop_before_pixels, defer_size=CONTENT_DEFER)
        except FileNotFoundError:
            raise HubError("unknown_resource", "Unknown resource") from None
        except Exception as exc:  # noqa: BLE001 - a stored file pydicom cannot read
            raise HubError("bad_file_format", f"unreadable DICOM file: {type(exc).__name__}") from None


def _formatted(full: dict[str, Any], fmt: TagFormat) -> dict[str, Any]:
    if fmt == "simplify":
        return simplify(full)
    if fmt == "short":
        return shorten(full)
    return full


def _stream(path: Path, span: rawframes.Span) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from rawframes.iter_span(f, span)
