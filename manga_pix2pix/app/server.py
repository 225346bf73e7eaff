"""The `serve` web app: a page for painting colour strokes over a sketch, and its API.

The page (`static/`: one HTML, one JS and one CSS file, no build step, nothing from a CDN)
sends the sketch and the painted cue layer, a PNG with alpha, to `POST /api/colorize` after
each stroke and shows the PNG it gets back. The colouring is exactly `colorize --cues`'s: the
same decoding (`manga_pix2pix.imageio.decode_image`) and the same `Colorizer`.

API:
    * `POST /api/colorize`: multipart form with `sketch` (an image file), optional `cues` (an
      image, normally a PNG with alpha: strokes where alpha > 0), optional `no_cues`
      (`1`/`true`/`on`) and optional `background` (`auto`, `model` or `paper`, as `colorize
      --background`; default: `serve --background`) or, instead, `paper` (`1`: `paper`, `0`:
      `model`).
      Returns `image/png`, RGB at the sketch's size.
    * `GET /api/model`: the model's facts as JSON.
    * `GET /healthz`: `{"status": "ok"}`.
    Errors are JSON `{"error": "..."}`: 400 not an image, truncated or a malformed form; 403 a
    refused `Host` or `Origin`; 408 a body that took too long to arrive; 409 cues given to a
    model trained without cues; 413 over the upload cap or over the decoded-pixel cap; 415 not
    a multipart form or not an accepted image type; 503 the queue is full; 504 the colouring
    took too long. No response ever holds a traceback.

Safety, for a server that may be left running:
    * `serve` binds to loopback by default. Requests whose `Host` is not the bound address,
      `localhost`, `127.0.0.1` or `::1` are refused, so a web page elsewhere cannot reach it
      through DNS rebinding; requests with an `Origin` of another site are refused too.
    * Nothing from a request is written to disk: bodies are read into memory up to the upload
      cap (whether the client sends a `Content-Length` or chunks), and multipart parts are
      kept in memory (Starlette would spool large ones to temporary files).
    * One model instance runs on one worker thread, so the event loop keeps answering while it
      works. Each request holds a slot from the moment it arrives until it is answered; when
      all `queue_size` slots are taken, the answer is 503 at once. Memory is bounded by
      `queue_size` times the upload cap, plus the sketch being coloured and the last one
      decoded (the page sends the same sketch with every stroke; it is decoded once).
    * Timeouts: `body_timeout` for the body to arrive (408), `request_timeout` for a colouring
      from arrival to answer (504). A request whose client went away (the page cancels the
      older request when a newer stroke ends) is dropped from the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import socket
import threading
import webbrowser
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import (
    MAX_PIXELS,
    decode_image,
    encode_image,
    image_format,
    image_size_from_header,
)
from manga_pix2pix.inference.regions import BACKGROUNDS

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: Default upload cap, in MB (`serve --max-upload-mb`).
DEFAULT_MAX_UPLOAD_MB = 25
#: Host names always accepted in the `Host` header, besides the bound address.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: Image formats the API decodes: those whose size `image_size_from_header` reads, so the pixel
#: cap is checked before anything is decoded.
ACCEPTED_FORMATS = "PNG, JPEG, WebP, BMP or GIF"
_TRUE = ("1", "true", "on", "yes")
_FALSE = ("", "0", "false", "off", "no")
_FIELDS = ("sketch", "cues", "no_cues", "background", "paper")
# Sent with every response: the page runs only its own files, in no frame of another site.
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
        b"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


@dataclass(frozen=True)
class ServeSettings:
    """Limits and the address of the server.

    Attributes:
        host: the address the server is bound to; accepted in the `Host` header.
        max_upload_bytes: the largest request body accepted (413 above).
        max_pixels: the largest decoded image, in pixels (413 above); `colorize`'s cap.
        queue_size: requests held at once, the one being coloured included (503 above).
        request_timeout: seconds from a colouring request's arrival to its answer (504 after).
        body_timeout: seconds for a request body to arrive (408 after).
    """

    host: str = "127.0.0.1"
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    max_pixels: int = MAX_PIXELS
    queue_size: int = 32
    request_timeout: float = 120.0
    body_timeout: float = 30.0

    def __post_init__(self):
        if self.max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes: must be positive, got {self.max_upload_bytes}")
        if self.queue_size < 1:
            raise ValueError(f"queue_size: must be at least 1, got {self.queue_size}")
        if self.request_timeout <= 0 or self.body_timeout <= 0:
            raise ValueError("request_timeout and body_timeout: must be positive")

    @property
    def allowed_hosts(self) -> frozenset[str]:
        """Host names accepted in the `Host` and `Origin` headers (lower case, no brackets)."""
        return frozenset((*LOOPBACK_NAMES, _bare_host(self.host)))


@dataclass(frozen=True)
class ModelInfo:
    """The facts `GET /api/model` reports.

    Attributes:
        image_size: the model's training size.
        uses_cues: False for a model trained with `train --no-cues`.
        use_cue_mask: whether the generator takes the cue mask channel.
        preset: the training preset (`paper`, `small`, ...), or None when unknown.
        work_size: the short side at which colours are computed.
        norm_stats: batch norm's statistics at inference (`moving` or `image`).
        name: the model's file or folder name.
        kind: `run`, `keras` or `savedmodel`.
        background: `auto`, `model` or `paper`, what a request without a `background` or
            `paper` field gets (the page's *Background* choice starts there).
    """

    image_size: int
    uses_cues: bool
    use_cue_mask: bool
    preset: str | None
    work_size: int
    norm_stats: str
    name: str
    kind: str
    background: str = "auto"


class ApiError(Exception):
    """An error answered as JSON `{"error": message}` with an HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _bare_host(host: str) -> str:
    host = host.strip().lower()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _host_of(header: str) -> str:
    """The host name of a `Host` header value (`name`, `name:port`, `[v6]:port`)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) only listens on this machine."""
    host = _bare_host(host)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def network_warning(host: str) -> str | None:
    """The warning `serve` prints when bound to an address other machines can reach."""
    if is_loopback(host):
        return None
    return (
        f"serving on {host}: anyone who can reach this machine on the network can use the "
        "model and see what is sent to it (there is no password); use --host 127.0.0.1 to "
        "keep it to this machine"
    )


class GuardMiddleware:
    """Refuses foreign `Host` and `Origin` headers; adds the security headers to responses."""

    def __init__(self, app, allowed_hosts: frozenset[str]):
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        headers = Headers(scope=scope)
        host = _host_of(headers.get("host", ""))
        origin = headers.get("origin")
        problem = None
        if host not in self.allowed_hosts:
            problem = f"Host {host!r} is not served here; open the address serve printed"
        elif origin is not None and (urlsplit(origin).hostname or "") not in self.allowed_hosts:
            problem = f"requests from the origin {origin!r} are not accepted"
        if problem is not None:
            await JSONResponse({"error": problem}, status_code=403)(
                scope, receive, send_with_headers
            )
            return
        await self.app(scope, receive, send_with_headers)


class ModelWorker:
    """One worker thread for the model and a bounded count of requests held.

    Args:
        queue_size: requests held at once (waiting or being coloured).
    """

    def __init__(self, queue_size: int):
        self.queue_size = queue_size
        self._held = 0
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    @contextlib.contextmanager
    def slot(self):
        """Holds one place in the queue for a request, or raises a 503 `ApiError`."""
        with self._lock:
            if self._held >= self.queue_size:
                raise ApiError(
                    503, f"busy: {self.queue_size} requests are waiting; try again shortly"
                )
            self._held += 1
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1

    @property
    def held(self) -> int:
        """Requests held now (waiting or being coloured)."""
        with self._lock:
            return self._held

    def submit(self, func: Callable[[], Any]) -> asyncio.Future:
        """Runs `func` on the worker thread; cancelling the future drops it if not started."""
        with self._lock:
            # Made on first use, so that an app served again after a shutdown works again.
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="colorize")
            executor = self._executor
        return asyncio.wrap_future(executor.submit(func))

    def close(self) -> None:
        """Drops the waiting jobs; the one running, if any, finishes on its own."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class _InMemoryMultiPartParser(MultiPartParser):
    """Starlette's parser, with file parts kept in memory (the body is capped already)."""

    def __init__(self, *args, memory_bytes: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.spool_max_size = memory_bytes + 1


async def _read_body(request: Request, settings: ServeSettings) -> bytes:
    """The whole body, capped at `max_upload_bytes` whether chunked or not."""
    limit = settings.max_upload_bytes
    too_large = ApiError(413, f"the upload is over the limit of {limit / 2**20:g} MB "
                              "(serve --max-upload-mb)")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise ApiError(400, "bad Content-Length header")
        if int(length) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0

    async def read():
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), settings.body_timeout)
    except asyncio.TimeoutError:
        raise ApiError(
            408, f"the upload did not arrive within {settings.body_timeout:g} s"
        ) from None
    return b"".join(chunks)


async def _read_form(request: Request, settings: ServeSettings) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        raise ApiError(415, "expected a multipart/form-data body with a `sketch` file")
    body = await _read_body(request, settings)

    async def once():
        yield body

    parser = _InMemoryMultiPartParser(
        request.headers, once(), max_files=2, max_fields=3, max_part_size=1024,
        memory_bytes=settings.max_upload_bytes,
    )
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise ApiError(400, f"malformed multipart form: {err.message}") from None
    fields: dict[str, Any] = {}
    for name, value in form.multi_items():
        if name not in _FIELDS:
            raise ApiError(400, f"unknown form field {name!r}; expected {', '.join(_FIELDS)}")
        if name in fields:
            raise ApiError(400, f"the form field {name!r} is given twice")
        fields[name] = value
    return fields


async def _image_bytes(value: Any, name: str) -> bytes:
    if not isinstance(value, UploadFile):
        raise ApiError(400, f"{name}: expected a file, got a text field")
    declared = (value.content_type or "").split(";")[0].strip().lower()
    if declared and not (declared.startswith("image/") or declared == "application/octet-stream"):
        raise ApiError(415, f"{name}: {declared} is not an image type; send {ACCEPTED_FORMATS}")
    return await value.read()


def check_image_bytes(data: bytes, name: str, max_pixels: int) -> None:
    """Refuses, before decoding, what `decode_image` should not be given.

    Raises:
        ApiError: 400 empty or not an image, 415 a format the API does not decode, 413 over
            `max_pixels` (read from the header, so nothing is decoded).
    """
    if not data:
        raise ApiError(400, f"{name}: the file is empty")
    kind = image_format(data)
    if kind in ("tiff", "pnm"):
        raise ApiError(415, f"{name}: {kind.upper()} is not accepted here; "
                            f"send {ACCEPTED_FORMATS}")
    size = image_size_from_header(data)
    if size is None:
        raise ApiError(400, f"{name}: not an image ({ACCEPTED_FORMATS}), or it is truncated")
    width, height = size
    if width * height > max_pixels:
        raise ApiError(413, f"{name}: {width}x{height} is over the limit of {max_pixels} pixels")


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, str) or value.strip().lower() not in (*_TRUE, *_FALSE):
        raise ApiError(400, f"{name}: expected 1 or 0 (true/false, on/off)")
    return value.strip().lower() in _TRUE


def _background(fields: Any, default: str) -> str:
    """The form's `background` (or its older `paper` flag), else `default`."""
    if "background" in fields and "paper" in fields:
        raise ApiError(400, "give either `background` or `paper`, not both")
    if "paper" in fields:
        return "paper" if _flag(fields["paper"], "paper") else "model"
    if "background" not in fields:
        return default
    value = fields["background"]
    if not isinstance(value, str) or value.strip().lower() not in BACKGROUNDS:
        raise ApiError(400, f"background: expected one of {', '.join(BACKGROUNDS)}")
    return value.strip().lower()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status,
                        headers={"cache-control": "no-store"})


def create_app(
    colorize: Callable[[np.ndarray, np.ndarray | None, str], np.ndarray],
    info: ModelInfo,
    settings: ServeSettings | None = None,
) -> Starlette:
    """The ASGI app: the page, its static files and the API.

    Args:
        colorize: uint8 sketch `[H, W, 3]`, optional uint8 RGBA cues and the background
            (`model` or `paper`) -> uint8 RGB result; called on one worker thread only
            (normally a `Colorizer`).
        info: what `GET /api/model` reports.
        settings: limits and the bound address (default: `ServeSettings()`).
    """
    settings = settings or ServeSettings()
    worker = ModelWorker(settings.queue_size)
    facts = {
        **asdict(info),
        "max_upload_bytes": settings.max_upload_bytes,
        "max_pixels": settings.max_pixels,
    }

    # The page sends the same sketch with every stroke: its last decoding is kept (only the
    # worker thread touches it).
    last_sketch: dict[str, Any] = {}

    def decode_sketch(data: bytes) -> np.ndarray:
        key = hashlib.sha256(data).digest()
        if last_sketch.get("key") != key:
            last_sketch.clear()
            image = decode_image(data, name="sketch", max_pixels=settings.max_pixels)
            image.setflags(write=False)
            last_sketch.update(key=key, image=image)
        return last_sketch["image"]

    def job(sketch_data: bytes, cue_data: bytes | None, background: str) -> bytes:
        try:
            sketch = decode_sketch(sketch_data)
            cues = None
            if cue_data is not None:
                cues = decode_image(cue_data, name="cues", keep_alpha=True,
                                    max_pixels=settings.max_pixels)
        except UserError as err:
            raise ApiError(400, str(err)) from None
        return encode_image(colorize(sketch, cues, background), ".png")

    async def colorize_endpoint(request: Request) -> Response:
        with worker.slot():
            try:
                fields = await _read_form(request, settings)
            except ClientDisconnect:
                return Response(status_code=400)
            if "sketch" not in fields:
                raise ApiError(400, "no `sketch` file in the form")
            sketch_data = await _image_bytes(fields["sketch"], "sketch")
            check_image_bytes(sketch_data, "sketch", settings.max_pixels)
            no_cues = _flag(fields["no_cues"], "no_cues") if "no_cues" in fields else False
            background = _background(fields, info.background)
            cue_data = None
            if "cues" in fields and not no_cues:
                if not info.uses_cues:
                    raise ApiError(409, "this model was trained without cues (--no-cues); "
                                        "send no cues, or no_cues=1")
                cue_data = await _image_bytes(fields["cues"], "cues")
                check_image_bytes(cue_data, "cues", settings.max_pixels)
            return await _answer(
                request, worker.submit(lambda: job(sketch_data, cue_data, background))
            )

    async def _answer(request: Request, future: asyncio.Future) -> Response:
        async def client_gone():
            while (await request.receive())["type"] != "http.disconnect":
                pass

        gone = asyncio.ensure_future(client_gone())
        try:
            done, _ = await asyncio.wait(
                {future, gone}, timeout=settings.request_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            gone.cancel()
        if future not in done:
            future.cancel()
            if gone in done:
                return Response(status_code=499)
            raise ApiError(504, f"the colouring took longer than {settings.request_timeout:g} s")
        return Response(future.result(), media_type="image/png",
                        headers={"cache-control": "no-store"})

    async def model_endpoint(request: Request) -> Response:
        return JSONResponse(facts, headers={"cache-control": "no-store"})

    async def health_endpoint(request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers={"cache-control": "no-store"})

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.message)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, exc.detail)

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("colouring failed", exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has details")

    @contextlib.asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        yield
        worker.close()

    routes = [
        Route("/", page, methods=["GET", "HEAD"]),
        Route("/api/colorize", colorize_endpoint, methods=["POST"]),
        Route("/api/model", model_endpoint, methods=["GET"]),
        Route("/healthz", health_endpoint, methods=["GET", "HEAD"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={ApiError: api_error, HTTPException: http_error,
                            Exception: internal_error},
        lifespan=lifespan,
    )
    app.add_middleware(GuardMiddleware, allowed_hosts=settings.allowed_hosts)
    app.state.worker = worker
    return app


def _preset_of(loaded) -> str | None:
    """The training preset of a loaded model: its run's config, else the matching preset."""
    from manga_pix2pix.config import PRESETS, Config

    if loaded.kind == "run":
        config_path = Path(loaded.source).parent / "config.json"
        with contextlib.suppress(OSError, ValueError, UserError):
            return Config.from_dict(json.loads(config_path.read_text())).preset
    model = loaded.keep
    for name, config in PRESETS.items():
        if (getattr(model, "image_size", None) == config.model.image_size
                and getattr(model, "base_filters", None) == config.model.base_filters):
            return name
    return None


@dataclass
class LoadedApp:
    """A ready app and what `serve` tells the user about it."""

    app: Starlette
    info: ModelInfo
    settings: ServeSettings = field(default_factory=ServeSettings)


def build_app(
    model: str | Path,
    *,
    work_size: int | None = None,
    norm_stats: str = "moving",
    background: str = "auto",
    settings: ServeSettings | None = None,
) -> LoadedApp:
    """Loads a model once, warms its graphs up and returns the app around it.

    Raises:
        UserError: a bad model path or work size.
    """
    from manga_pix2pix.inference.colorize import Colorizer
    from manga_pix2pix.inference.loading import load_model

    settings = settings or ServeSettings()
    loaded = load_model(model)
    colorizer = Colorizer(loaded, work_size=work_size, norm_stats=norm_stats,
                          background=background)
    # Trace both graphs now, so that the first stroke is answered as fast as the others.
    blank = np.full((64, 64, 3), 255, np.uint8)
    colorizer(blank)
    if loaded.uses_cues:
        colorizer(blank, np.zeros((64, 64, 4), np.uint8))
    info = ModelInfo(
        image_size=loaded.image_size,
        uses_cues=loaded.uses_cues,
        use_cue_mask=loaded.use_cue_mask,
        preset=_preset_of(loaded),
        work_size=colorizer.settings.work,
        norm_stats=norm_stats,
        name=Path(model).resolve().name,
        kind=loaded.kind,
        background=background,
    )
    return LoadedApp(create_app(colorizer, info, settings), info, settings)


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` (port 0: any free port) and listening.

    Raises:
        UserError: the address cannot be used (unknown host, port in use, no permission).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            _bare_host(host), port, type=socket.SOCK_STREAM
        )[0]
    except socket.gaierror as err:
        raise UserError(f"--host {host}: cannot resolve this address ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        # Listening at once: a browser opened on the printed URL waits in the backlog until
        # the server accepts, instead of being refused.
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror}); "
                        "choose another --port") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """The page's address for a bound socket."""
    host, port = sock.getsockname()[:2]
    if ipaddress.ip_address(host).is_unspecified:
        host = "127.0.0.1" if sock.family == socket.AF_INET else "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run_server(app: Starlette, sock: socket.socket, *, open_browser: bool = False) -> None:
    """Serves `app` on a bound socket until Ctrl-C (or SIGTERM); returns after a clean stop."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=5,
        limit_concurrency=256,
    )
    if open_browser:
        url = url_of(sock)
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl-C it caught once it has shut down cleanly.
        pass
    finally:
        sock.close()
