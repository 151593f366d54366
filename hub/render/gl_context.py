"""A headless OpenGL 3.3 core context for :mod:`hub.render.gl`: EGL first (a GPU device, else Mesa's
software device or surfaceless platform), OSMesa (Mesa llvmpipe into a memory buffer) where EGL fails.

PyOpenGL binds its GL entry points to one window-system platform chosen from ``PYOPENGL_PLATFORM`` when
``OpenGL`` is first imported, and it cannot change afterwards. :func:`select_platform` is the one place that
decides: it keeps a platform already fixed (by the environment or an earlier import), otherwise it probes
EGL through ctypes, before ``OpenGL`` is imported, and sets ``PYOPENGL_PLATFORM`` to ``egl`` or ``osmesa``.
Contexts are made with ctypes too, so that the probe and the real context take the same path; PyOpenGL only
supplies the GL calls. A context is current in one thread only: make, use and close it in the same thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from typing import Protocol

EGL_NONE = 0x3038
EGL_EXTENSIONS, EGL_VENDOR = 0x3055, 0x3053
EGL_SURFACE_TYPE, EGL_RENDERABLE_TYPE, EGL_PBUFFER_BIT, EGL_OPENGL_BIT = 0x3033, 0x3040, 0x0001, 0x0008
EGL_WIDTH, EGL_HEIGHT = 0x3057, 0x3056
EGL_OPENGL_API = 0x30A2
EGL_CONTEXT_MAJOR_VERSION, EGL_CONTEXT_MINOR_VERSION = 0x3098, 0x30FB
EGL_CONTEXT_OPENGL_PROFILE_MASK, EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT = 0x30FD, 0x1
EGL_PLATFORM_DEVICE_EXT, EGL_PLATFORM_SURFACELESS_MESA = 0x313F, 0x31DD

OSMESA_FORMAT, OSMESA_RGBA, OSMESA_DEPTH_BITS, OSMESA_STENCIL_BITS, OSMESA_ACCUM_BITS = 0x22, 0x1908, 0x30, 0x31, 0x32
OSMESA_PROFILE, OSMESA_CORE_PROFILE, OSMESA_CONTEXT_MAJOR_VERSION, OSMESA_CONTEXT_MINOR_VERSION = 0x33, 0x34, 0x36, 0x37
GL_UNSIGNED_BYTE = 0x1401

_lock = threading.Lock()
_platform: str | None = None
_platform_error: str | None = None


class GlUnavailable(RuntimeError):
    """No GL context can be made here, or this render cannot be done in GL: use the CPU backend."""


class Context(Protocol):
    platform: str
    description: str

    def close(self) -> None: ...


def _ints(*values: int) -> ctypes.Array[ctypes.c_int]:
    return (ctypes.c_int * len(values))(*values)


class EglContext:
    """An EGL 1.5 context with no window: GL 3.3 core on the first display that makes one."""

    platform = "egl"

    def __init__(self) -> None:
        path = ctypes.util.find_library("EGL") or "libEGL.so.1"
        try:
            egl = ctypes.CDLL(path)
        except OSError as exc:
            raise GlUnavailable(f"no libEGL: {exc}") from exc
        self._egl = egl
        vp, i = ctypes.c_void_p, ctypes.c_int
        for name, res, args in [("eglGetProcAddress", vp, [ctypes.c_char_p]), ("eglGetDisplay", vp, [vp]),
                                ("eglInitialize", i, [vp, vp, vp]), ("eglTerminate", i, [vp]),
                                ("eglQueryString", ctypes.c_char_p, [vp, i]), ("eglBindAPI", i, [ctypes.c_uint]),
                                ("eglChooseConfig", i, [vp, vp, vp, i, vp]),
                                ("eglCreateContext", vp, [vp, vp, vp, vp]),
                                ("eglCreatePbufferSurface", vp, [vp, vp, vp]), ("eglMakeCurrent", i, [vp, vp, vp, vp]),
                                ("eglDestroyContext", i, [vp, vp]), ("eglDestroySurface", i, [vp, vp]),
                                ("eglGetError", i, [])]:
            fn = getattr(egl, name)
            fn.restype, fn.argtypes = res, args
        self.display = self.context = self.surface = None
        errors = []
        for label, display in self._displays():
            try:
                self._make(display)
                vendor = (egl.eglQueryString(display, EGL_VENDOR) or b"?").decode()
                self.description = f"EGL {label} ({vendor})"
                return
            except GlUnavailable as exc:
                errors.append(f"{label}: {exc}")
                egl.eglTerminate(display)
        raise GlUnavailable("EGL: " + ("; ".join(errors) or "no display"))

    def _ext(self, name: str, res: type, args: list[type]) -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
        address = self._egl.eglGetProcAddress(name.encode())
        return ctypes.CFUNCTYPE(res, *args)(address) if address else None

    def _displays(self) -> list[tuple[str, int]]:
        """Candidate displays, GPU devices first, then software devices, then Mesa's surfaceless platform."""
        egl, vp = self._egl, ctypes.c_void_p
        client = (egl.eglQueryString(None, EGL_EXTENSIONS) or b"").decode().split()
        get_platform_display = self._ext("eglGetPlatformDisplayEXT", vp, [ctypes.c_uint, vp, vp])
        out: list[tuple[str, int]] = []
        if get_platform_display is None:
            display = egl.eglGetDisplay(None)
            return [("default display", display)] if display else []
        if "EGL_EXT_device_enumeration" in client:
            query_devices = self._ext("eglQueryDevicesEXT", ctypes.c_int, [ctypes.c_int, vp, vp])
            query_string = self._ext("eglQueryDeviceStringEXT", ctypes.c_char_p, [vp, ctypes.c_int])
            devices, count = (vp * 16)(), ctypes.c_int(0)
            if query_devices and query_devices(16, devices, ctypes.byref(count)):
                ranked = []
                for k in range(count.value):
                    exts = (query_string(devices[k], EGL_EXTENSIONS) or b"").decode() if query_string else ""
                    ranked.append(("EGL_MESA_device_software" in exts, k))
                for software, k in sorted(ranked):
                    display = get_platform_display(EGL_PLATFORM_DEVICE_EXT, devices[k], None)
                    if display:
                        out.append((f"{'software' if software else 'GPU'} device {k}", display))
        if "EGL_MESA_platform_surfaceless" in client:
            display = get_platform_display(EGL_PLATFORM_SURFACELESS_MESA, None, None)
            if display:
                out.append(("surfaceless", display))
        return out

    def _make(self, display: int) -> None:
        egl = self._egl
        major, minor = ctypes.c_int(), ctypes.c_int()
        if not egl.eglInitialize(display, ctypes.byref(major), ctypes.byref(minor)):
            raise GlUnavailable(f"eglInitialize failed (0x{egl.eglGetError():x})")
        if not egl.eglBindAPI(EGL_OPENGL_API):
            raise GlUnavailable("no desktop OpenGL API")
        config, count = ctypes.c_void_p(), ctypes.c_int(0)
        for attrs in (_ints(EGL_SURFACE_TYPE, EGL_PBUFFER_BIT, EGL_RENDERABLE_TYPE, EGL_OPENGL_BIT, EGL_NONE),
                      _ints(EGL_RENDERABLE_TYPE, EGL_OPENGL_BIT, EGL_NONE)):
            if egl.eglChooseConfig(display, attrs, ctypes.byref(config), 1, ctypes.byref(count)) and count.value:
                break
        else:
            raise GlUnavailable("no OpenGL config")
        context = egl.eglCreateContext(display, config, None, _ints(
            EGL_CONTEXT_MAJOR_VERSION, 3, EGL_CONTEXT_MINOR_VERSION, 3,
            EGL_CONTEXT_OPENGL_PROFILE_MASK, EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT, EGL_NONE))
        if not context:
            raise GlUnavailable(f"no GL 3.3 core context (0x{egl.eglGetError():x})")
        surface = None
        if not egl.eglMakeCurrent(display, None, None, context):  # EGL_KHR_surfaceless_context, else a pbuffer
            surface = egl.eglCreatePbufferSurface(display, config, _ints(EGL_WIDTH, 1, EGL_HEIGHT, 1, EGL_NONE))
            if not surface or not egl.eglMakeCurrent(display, surface, surface, context):
                egl.eglDestroyContext(display, context)
                raise GlUnavailable(f"eglMakeCurrent failed (0x{egl.eglGetError():x})")
        self.display, self.context, self.surface = display, context, surface

    def close(self) -> None:
        egl = self._egl
        if self.context:
            egl.eglMakeCurrent(self.display, None, None, None)
            egl.eglDestroyContext(self.display, self.context)
            if self.surface:
                egl.eglDestroySurface(self.display, self.surface)
            egl.eglTerminate(self.display)
            self.context = None


class OsMesaContext:
    """Mesa's off-screen context (llvmpipe), current on a 1x1 RGBA buffer; rendering goes to an FBO."""

    platform = "osmesa"

    def __init__(self) -> None:
        path = ctypes.util.find_library("OSMesa")
        try:
            lib = ctypes.CDLL(path or "libOSMesa.so.8", mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise GlUnavailable(f"no libOSMesa: {exc}") from exc
        vp = ctypes.c_void_p
        lib.OSMesaCreateContextAttribs.restype, lib.OSMesaCreateContextAttribs.argtypes = vp, [vp, vp]
        lib.OSMesaMakeCurrent.restype = ctypes.c_ubyte
        lib.OSMesaMakeCurrent.argtypes = [vp, vp, ctypes.c_uint, ctypes.c_int, ctypes.c_int]
        lib.OSMesaDestroyContext.restype, lib.OSMesaDestroyContext.argtypes = None, [vp]
        self._lib = lib
        self.context = lib.OSMesaCreateContextAttribs(_ints(
            OSMESA_FORMAT, OSMESA_RGBA, OSMESA_DEPTH_BITS, 0, OSMESA_STENCIL_BITS, 0, OSMESA_ACCUM_BITS, 0,
            OSMESA_PROFILE, OSMESA_CORE_PROFILE, OSMESA_CONTEXT_MAJOR_VERSION, 3, OSMESA_CONTEXT_MINOR_VERSION, 3,
            0), None)
        if not self.context:
            raise GlUnavailable("OSMesa: no GL 3.3 core context")
        self._buffer = (ctypes.c_ubyte * 4)()
        if not lib.OSMesaMakeCurrent(self.context, self._buffer, GL_UNSIGNED_BYTE, 1, 1):
            lib.OSMesaDestroyContext(self.context)
            raise GlUnavailable("OSMesaMakeCurrent failed")
        self.description = "OSMesa"

    def close(self) -> None:
        if self.context:
            self._lib.OSMesaDestroyContext(self.context)
            self.context = None


def select_platform() -> str:
    """The PyOpenGL platform of this process, ``egl`` or ``osmesa``, fixed before ``OpenGL`` is imported.

    Probing EGL makes (and drops) a context in the calling thread. Raises :class:`GlUnavailable`."""
    global _platform, _platform_error
    with _lock:
        if _platform is None and _platform_error is None:
            try:
                _platform = _decide()
            except GlUnavailable as exc:
                _platform_error = str(exc)
        if _platform is None:
            raise GlUnavailable(_platform_error or "no GL platform")
        return _platform


def _decide() -> str:
    fixed = os.environ.get("PYOPENGL_PLATFORM", "").lower()
    if "OpenGL.platform" in sys.modules:  # imported earlier: whatever it bound to is final
        name = type(sys.modules["OpenGL.platform"].PLATFORM).__name__
        fixed = "egl" if name.startswith("EGL") else "osmesa" if name.startswith("OSMesa") else name
    if fixed and fixed not in ("egl", "osmesa"):
        raise GlUnavailable(f"PyOpenGL platform {fixed!r} is not headless (want egl or osmesa)")
    errors = []
    for name, factory in (("egl", EglContext), ("osmesa", OsMesaContext)):
        if fixed and name != fixed:
            continue
        try:
            factory().close()
        except GlUnavailable as exc:
            errors.append(str(exc))
            continue
        os.environ["PYOPENGL_PLATFORM"] = name
        return name
    raise GlUnavailable("; ".join(errors))


def make_context() -> Context:
    """A GL 3.3 core context current in the calling thread, on the platform :func:`select_platform` chose."""
    return EglContext() if select_platform() == "egl" else OsMesaContext()
