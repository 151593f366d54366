"""Pixel decoding, windowing and image encoding (numpy + Pillow, no web code), shared by the Orthanc
image routes and, later, DICOMweb ``/rendered`` and the render service."""

from hub.imaging.decode import COLOR, GRAYSCALE, Frame, FrameOutOfRange, ImageInfo, Undecodable, decode_frame
from hub.imaging.encode import MIME, NotEncodable, encode
from hub.imaging.process import Windowing, default_windowing, extract, frame_windowing, preview, render

__all__ = [
    "COLOR", "GRAYSCALE", "MIME", "Frame", "FrameOutOfRange", "ImageInfo", "NotEncodable", "Undecodable", "Windowing",
    "decode_frame", "default_windowing", "encode", "extract", "frame_windowing", "preview", "render",
]
