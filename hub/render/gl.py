"""The OpenGL render backend: the volume as a 3D texture, one full-screen fragment pass per image.

Each output pixel walks its slab samples ``origin + c*u + r*v + (k - (n-1)/2)*w`` (voxel coordinates, see
:mod:`hub.render.plane`) and reduces them by max, min or mean. As in :mod:`hub.render.kernels`, a sample
is inside the volume when every coordinate lies between the first and last voxel centres ``[0, size - 1]``
(within 1e-3 voxel); samples outside are ignored and a pixel with none inside gets ``fill``. Interpolation
is done in the shader from ``texelFetch`` in float32, not by the texture unit (whose filter weights have
only about 8 bits on most GPUs); nearest takes ``floor(q + 0.5)``. int16 volumes stay exact in an ``R16I``
texture, anything else becomes ``R32F``.

One thread owns the GL context (:mod:`hub.render.gl_context`); :meth:`GlBackend.render` hands its request
to that thread through a queue and waits, so any number of web threads may call it. Textures are kept per
volume array (by identity, with a weak reference) in a bounded LRU and dropped when the array dies.
"""

from __future__ import annotations

import ctypes
import queue
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from hub.render.gl_context import GlUnavailable, make_context
from hub.render.gl_shaders import FRAGMENT, MODES, UNIFORMS, VERTEX
from hub.render.plane import Plane

__all__ = ["GlBackend", "GlUnavailable", "available"]


@dataclass
class _Texture:
    ref: weakref.ref[np.ndarray]
    name: int
    nbytes: int
    integer: bool
    finalizer: weakref.finalize


class _Renderer:
    """GL objects and the texture cache; every method runs in the GL thread."""

    def __init__(self, max_bytes: int, max_textures: int, purge: Callable[[], None]) -> None:
        from OpenGL import GL  # after gl_context fixed PYOPENGL_PLATFORM

        self.GL, self.max_bytes, self.max_textures, self._purge = GL, max_bytes, max_textures, purge
        self.renderer = GL.glGetString(GL.GL_RENDERER).decode()
        self.max_3d = int(GL.glGetIntegerv(GL.GL_MAX_3D_TEXTURE_SIZE))
        self.max_2d = int(GL.glGetIntegerv(GL.GL_MAX_RENDERBUFFER_SIZE))
        self.programs: dict[tuple[bool, int, bool], tuple[int, dict[str, int]]] = {}
        self.vao = GL.glGenVertexArrays(1)
        self.fbo, self.rbo, self.fbo_size = GL.glGenFramebuffers(1), GL.glGenRenderbuffers(1), (0, 0)
        self.textures: OrderedDict[int, _Texture] = OrderedDict()
        self.uploads = 0
        self.program(True, 0, False)  # the thin MPR of an int16 volume: ready before the first request
        GL.glDisable(GL.GL_DITHER)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)

    def program(self, integer: bool, mode: int, nearest: bool) -> tuple[int, dict[str, int]]:
        """The shader program for one texture type, reduction and interpolation (compiled on first use)."""
        key = (integer, mode, nearest)
        if key not in self.programs:
            self.programs[key] = self._compile(FRAGMENT % {"sampler": "isampler3D" if integer else "sampler3D",
                                                            "mode": mode, "nearest": nearest})
        return self.programs[key]

    def _compile(self, fragment: str) -> tuple[int, dict[str, int]]:
        GL = self.GL
        program = GL.glCreateProgram()
        for kind, source in ((GL.GL_VERTEX_SHADER, VERTEX), (GL.GL_FRAGMENT_SHADER, fragment)):
            shader = GL.glCreateShader(kind)
            GL.glShaderSource(shader, source)
            GL.glCompileShader(shader)
            if not GL.glGetShaderiv(shader, GL.GL_COMPILE_STATUS):
                raise GlUnavailable(f"shader: {GL.glGetShaderInfoLog(shader).decode(errors='replace')}")
            GL.glAttachShader(program, shader)
            GL.glDeleteShader(shader)
        GL.glLinkProgram(program)
        if not GL.glGetProgramiv(program, GL.GL_LINK_STATUS):
            raise GlUnavailable(f"program: {GL.glGetProgramInfoLog(program).decode(errors='replace')}")
        return program, {name: GL.glGetUniformLocation(program, name) for name in UNIFORMS}

    def texture(self, data: np.ndarray) -> _Texture:
        entry = self.textures.get(id(data))
        if entry is not None and entry.ref() is data:
            self.textures.move_to_end(id(data))
            return entry
        self.purge()
        if max(data.shape) > self.max_3d:
            raise GlUnavailable(f"volume {data.shape} exceeds the 3D texture limit {self.max_3d}")
        integer = data.dtype == np.int16
        array = np.ascontiguousarray(data, dtype=np.int16 if integer else np.float32)
        if array.nbytes > self.max_bytes:
            raise GlUnavailable(f"volume of {array.nbytes} bytes exceeds the texture budget {self.max_bytes}")
        while self.textures and (len(self.textures) >= self.max_textures
                                 or sum(t.nbytes for t in self.textures.values()) + array.nbytes > self.max_bytes):
            self._drop(next(iter(self.textures)))
        entry = _Texture(weakref.ref(data), self._upload(array, integer), array.nbytes, integer,
                         weakref.finalize(data, self._purge))
        entry.finalizer.atexit = False
        self.textures[id(data)] = entry
        return entry

    def _upload(self, array: np.ndarray, integer: bool) -> int:
        GL = self.GL
        name = GL.glGenTextures(1)
        GL.glBindTexture(GL.GL_TEXTURE_3D, name)
        for key in (GL.GL_TEXTURE_MIN_FILTER, GL.GL_TEXTURE_MAG_FILTER):
            GL.glTexParameteri(GL.GL_TEXTURE_3D, key, GL.GL_NEAREST)
        GL.glTexParameteri(GL.GL_TEXTURE_3D, GL.GL_TEXTURE_MAX_LEVEL, 0)
        internal, fmt, kind = ((GL.GL_R16I, GL.GL_RED_INTEGER, GL.GL_SHORT) if integer
                               else (GL.GL_R32F, GL.GL_RED, GL.GL_FLOAT))
        nz, ny, nx = array.shape
        try:
            GL.glTexImage3D(GL.GL_TEXTURE_3D, 0, internal, nx, ny, nz, 0, fmt, kind,
                            ctypes.c_void_p(array.ctypes.data))
            GL.glFinish()
        except GL.GLError as exc:
            GL.glDeleteTextures([name])
            raise GlUnavailable(f"texture upload of {array.nbytes} bytes failed: {exc}") from exc
        self.uploads += 1
        return int(name)

    def _drop(self, key: int) -> None:
        entry = self.textures.pop(key)
        entry.finalizer.detach()
        self.GL.glDeleteTextures([entry.name])

    def purge(self) -> None:
        """Deletes the textures of arrays that no longer exist."""
        for key in [k for k, t in self.textures.items() if t.ref() is None]:
            self._drop(key)

    def forget(self, data: np.ndarray) -> None:
        entry = self.textures.get(id(data))
        if entry is not None and entry.ref() is data:
            self._drop(id(data))

    def render(self, data: np.ndarray, plane: Plane, fill: float) -> np.ndarray:
        try:
            return self._render(data, plane, fill)
        except self.GL.GLError as exc:  # e.g. GL_OUT_OF_MEMORY: this image goes to the CPU backend
            self.fbo_size = (0, 0)
            raise GlUnavailable(f"GL error while rendering: {exc}") from exc

    def _render(self, data: np.ndarray, plane: Plane, fill: float) -> np.ndarray:
        GL = self.GL
        width, height = int(plane.width), int(plane.height)
        if data.ndim != 3 or min(data.shape) < 1:
            raise ValueError(f"expected a (nz, ny, nx) volume, got shape {data.shape}")
        if width < 1 or height < 1 or plane.samples < 1:
            raise ValueError(f"empty plane {width}x{height}x{plane.samples}")
        if max(width, height) > self.max_2d:
            raise GlUnavailable(f"image {width}x{height} exceeds the GL limit {self.max_2d}")
        entry = self.texture(data)
        if self.fbo_size != (width, height):
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, self.rbo)
            GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, GL.GL_R32F, width, height)
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fbo)
            GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_RENDERBUFFER, self.rbo)
            if GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER) != GL.GL_FRAMEBUFFER_COMPLETE:
                raise GlUnavailable("R32F framebuffer incomplete")
            self.fbo_size = (width, height)
        program, loc = self.program(entry.integer, MODES[plane.mode] if plane.samples > 1 else 0,
                                    plane.interpolation == "nearest")
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fbo)
        GL.glViewport(0, 0, width, height)
        GL.glUseProgram(program)
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glBindTexture(GL.GL_TEXTURE_3D, entry.name)
        GL.glUniform1i(loc["vol"], 0)
        nz, ny, nx = data.shape
        GL.glUniform3i(loc["size"], nx, ny, nz)
        for key, vec in (("origin", plane.origin), ("du", plane.u), ("dv", plane.v), ("dw", plane.w)):
            GL.glUniform3f(loc[key], *(float(x) for x in np.asarray(vec, dtype=float).reshape(3)))
        GL.glUniform1i(loc["samples"], int(plane.samples))
        GL.glUniform1f(loc["fill"], float(fill))
        GL.glBindVertexArray(self.vao)
        GL.glDrawArrays(GL.GL_TRIANGLES, 0, 3)
        out = np.empty((height, width), dtype=np.float32)
        GL.glReadBuffer(GL.GL_COLOR_ATTACHMENT0)
        GL.glReadPixels(0, 0, width, height, GL.GL_RED, GL.GL_FLOAT, out)
        return out

    def close(self) -> None:
        GL = self.GL
        for key in list(self.textures):
            self._drop(key)
        GL.glDeleteFramebuffers(1, [self.fbo])
        GL.glDeleteRenderbuffers(1, [self.rbo])
        GL.glDeleteVertexArrays(1, [self.vao])
        for program, _ in self.programs.values():
            GL.glDeleteProgram(program)


class _Worker(threading.Thread):
    """The thread that owns the context; runs queued calls on the :class:`_Renderer` one at a time."""

    def __init__(self, max_bytes: int, max_textures: int) -> None:
        super().__init__(name="gl-render", daemon=True)
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], Future[Any] | None] | None] = (
            queue.SimpleQueue())
        self._ready = threading.Event()
        self._limits = (max_bytes, max_textures)
        self.error: str | None = None
        self.description = ""
        self.renderer: _Renderer | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self.start()
        self._ready.wait()
        if self.error is not None:
            raise GlUnavailable(self.error)

    def run(self) -> None:
        context = None
        try:
            context = make_context()
            renderer = _Renderer(*self._limits, purge=self.post_purge)
        except Exception as exc:  # GlUnavailable, a missing PyOpenGL, a driver refusing the shader
            self.error = f"{type(exc).__name__}: {exc}"
            if context is not None:
                context.close()
            self._ready.set()
            return
        self.renderer, self.description = renderer, f"{context.description}: {renderer.renderer}"
        self._ready.set()
        while (item := self._queue.get()) is not None:
            fn, args, future = item
            if future is None:
                fn(*args)
            elif future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)
            del item, fn, args, future  # no reference to the last volume while waiting
        renderer.close()
        context.close()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        future: Future[Any] = Future()
        with self._lock:  # nothing is queued behind the stop sentinel
            if self._stopped or not self.is_alive():
                raise GlUnavailable("the GL thread has stopped")
            self._queue.put((fn, args, future))
        return future.result()

    def post_purge(self) -> None:
        """Called by a dying array's finaliser, in any thread: the GL thread deletes its texture later."""
        with self._lock:
            if self.renderer is not None and not self._stopped:
                self._queue.put((self.renderer.purge, (), None))

    def stop(self) -> None:
        with self._lock:
            if self._stopped or not self.is_alive():
                return
            self._stopped = True
            self._queue.put(None)
        self.join()


class GlBackend:
    """:class:`hub.render.plane.Backend` on OpenGL. Raises :class:`GlUnavailable` when no context can be made
    (at construction) or when one render cannot be done in GL (a volume over the texture size limit, GL out
    of memory): the caller renders that one on the CPU instead."""

    name = "gl"

    def __init__(self, *, max_bytes: int = 2 << 30, max_textures: int = 4) -> None:
        self._worker = _Worker(max_bytes, max_textures)

    @property
    def description(self) -> str:
        """E.g. ``EGL software device 1 (Mesa Project): llvmpipe (LLVM 15.0.6, 256 bits)``."""
        return self._worker.description

    @property
    def software(self) -> bool:
        """True on a CPU rasteriser (Mesa llvmpipe/softpipe), where the numba backend is about as fast."""
        name = self._worker.renderer.renderer.lower() if self._worker.renderer else ""
        return any(k in name for k in ("llvmpipe", "softpipe", "swrast", "swiftshader"))

    @property
    def uploads(self) -> int:
        """How many volumes were uploaded as textures so far."""
        return self._worker.renderer.uploads if self._worker.renderer else 0

    @property
    def textures(self) -> int:
        """How many volume textures are cached now."""
        return len(self._worker.renderer.textures) if self._worker.renderer else 0

    @property
    def max_texture_size(self) -> int:
        """GL_MAX_3D_TEXTURE_SIZE: a volume longer than this along any axis is not rendered in GL."""
        return self._worker.renderer.max_3d if self._worker.renderer else 0

    def render(self, data: np.ndarray, plane: Plane, fill: float) -> np.ndarray:
        assert self._worker.renderer is not None
        return self._worker.call(self._worker.renderer.render, data, plane, fill)

    def forget(self, data: np.ndarray) -> None:
        """Drops the texture of ``data``: call it when the array's content changed (slices decoded later)."""
        assert self._worker.renderer is not None
        self._worker.call(self._worker.renderer.forget, data)

    def close(self) -> None:
        self._worker.stop()


_available: bool | None = None
_reason = ""
_available_lock = threading.Lock()


def available() -> bool:
    """Whether a GL context can be made in this process (tried once, then remembered)."""
    global _available, _reason
    with _available_lock:
        if _available is None:
            try:
                GlBackend(max_textures=1).close()
                _available = True
            except GlUnavailable as exc:
                _available, _reason = False, str(exc)
        return _available


def unavailable_reason() -> str:
    """Why :func:`available` said no (empty when it said yes or was not asked)."""
    return _reason
