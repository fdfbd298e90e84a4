"""`edgemnist serve`: read digits over HTTP, a thin layer over `edgemnist.load(...).predict(...)`.

Usage: edgemnist serve [MODEL] [--host 0.0.0.0] [--port 8000] [--workers N] [--max-bytes B] [--quiet]
       curl --data-binary @photo.jpg http://raspberrypi.local:8000/predict

Endpoints (keys: docs/outputs.md):
- `POST /predict`: the body is an image's bytes (any Content-Type), or a multipart/form-data
  upload (the field `image`, else the first file). `?digits=1` reads a number, `?top=K` lists
  the K most probable digits, `?prepared=1` adds the 28x28 image(s) the model saw as PNG data
  URLs. 200: one record of `predict --json`'s `predictions`, built by the same function;
- `GET /health`: `{"status": "ok", "model": ..., ...}`; `GET /model`: the model's manifest;
- `GET /`: the draw-a-digit page (edgemnist/static/index.html).
A bad image is a 400, a body over `--max-bytes` a 413, an unknown path a 404, a wrong method
a 405, anything unexpected a 500, each with `{"error": "<one line>"}`: no request stops the
service. MODEL is a .tflite file or a shipped model's name; none: the shipped int8 model.

The server is the standard library's ThreadingHTTPServer (one thread per connection, HTTP/1.1
keep-alive); a LiteRT interpreter is not thread-safe, so each request checks a Model out of a
pool of `--workers` Models and returns it when done (docs/design.md says why). Needs numpy,
Pillow and a TFLite interpreter; no TensorFlow.
"""
from __future__ import annotations

import base64
import contextlib
import email.message
import email.parser
import email.policy
import errno
import io
import json
import os
import queue
import signal
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from edgemnist import __version__
from edgemnist.artifacts import manifest_path
from edgemnist.console import first_line
from edgemnist.data import NUM_CLASSES
from edgemnist.measure.eval import add_runtime_arguments, runtime_settings
from edgemnist.predict import PredictConfig, image_record, load_model
from edgemnist.runtime.accelerator import RuntimeSettings
from edgemnist.runtime.classify import DEFAULT, MIN_PROBABILITY, Model
from edgemnist.runtime.models import DEFAULT_MODEL, SHIPPED

PAGE = Path(__file__).resolve().parent / "static" / "index.html"
UPLOAD = "<upload>"  # a record's `path` when the upload carries no file name
# prepare names encoded bytes so in its errors; the service names the upload instead
_BYTES_NAME = "<image bytes>"
_READ_CHUNK = 64 * 1024


def _usable_cores() -> int:
    """The cores this process may run on, at most 4 (a Pi's cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _default_processes() -> int:
    """One server process per usable core where the system forks: each has its own Python lock, which the
    decoding and preparation of an image hold for most of a request (benchmarks/bench_serve.py compares
    one process with several Models against several processes with one)."""
    return _usable_cores() if hasattr(os, "fork") else 1




@dataclass(frozen=True)
class ServeConfig:
    """Settings of one `edgemnist serve`: where it listens, its limits, and the model options predict has."""

    host: str = "0.0.0.0"  # all interfaces: a phone on the LAN must reach a Pi
    port: int = 8000
    max_bytes: int = 10_000_000  # a larger request body is refused (413) before it is read
    # Models in each process's pool, requests one process reads at once; None: 1 where there are several
    # processes, else one per usable core
    workers: Optional[int] = None
    # server processes sharing the port, each with its own pool (and its own GIL)
    processes: int = field(default_factory=_default_processes)
    timeout: float = 30.0  # seconds a connection may stay silent (idle keep-alive, a stalled body) before closing
    busy_timeout: float = 30.0  # seconds a request waits for a free Model before a 503
    # seconds, after refusing a body unread (413), spent reading and dropping what the client still sends before
    # closing: closing on unread data makes the kernel reset the connection, and the client loses the 413
    linger: float = 2.0
    top: int = 2  # most probable digits per answer when the request names no ?top=K
    prepare: bool = True  # put images into MNIST's form first (False: they already are)
    min_probability: float = MIN_PROBABILITY  # below this a digit is flagged low confidence (rejected)
    gate: Optional[str] = DEFAULT  # digit-or-not gate: "default" (shipped), a .tflite path, or None
    runtime: RuntimeSettings = RuntimeSettings()  # accelerator, threads (per Model), backend, GPU precision
    temperature: Optional[float] = None  # calibrates the probabilities; None: the model's manifest's, else 1.0
    quiet: bool = False  # no line per request on stderr

    def __post_init__(self):
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be an integer from 0 to 65535 (0: any free port), got {self.port!r}")
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            raise ValueError(f"max_bytes must be an integer >= 1, got {self.max_bytes!r}")
        if isinstance(self.processes, bool) or not isinstance(self.processes, int) or self.processes < 1:
            raise ValueError(f"processes must be an integer >= 1, got {self.processes!r}")
        if self.workers is None:
            object.__setattr__(self, "workers", 1 if self.processes > 1 else _usable_cores())
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {self.workers!r}")
        if self.processes > 1 and not hasattr(os, "fork"):
            raise ValueError(f"processes={self.processes} needs os.fork (Linux, macOS); use 1 here")
        for name in ("timeout", "busy_timeout", "linger"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        self.predict_config()  # the model options' own checks (top, min_probability, temperature)

    def predict_config(self) -> PredictConfig:
        """The model options as `edgemnist predict` takes them (one owner for their checks and their loading)."""
        return PredictConfig(top=self.top, prepare=self.prepare, min_probability=self.min_probability,
                             gate=self.gate, runtime=self.runtime, temperature=self.temperature)


class RequestError(Exception):
    """A request the service refuses: the HTTP status and the one-line error it answers with."""

    def __init__(self, status: int, message: str, close: bool = False, headers: tuple = (), linger: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close or linger  # the connection cannot carry another request (the body was not read)
        self.headers = headers
        self.linger = linger  # drop what the client still sends after the answer (Handler._linger)


class ModelPool:
    """`workers` Models of one file; a request checks one out, so no interpreter is used by two threads at once.

    Args:
        model: a .tflite path, a shipped model's name, or None (the shipped int8 model).
        config: the settings (workers, model options).

    Raises:
        FileNotFoundError, ValueError: as `edgemnist.load`.
    """

    def __init__(self, model: Optional[str], config: ServeConfig):
        predict_config = config.predict_config()
        first = load_model(model, predict_config)
        # the first load checked the file in a child process; the copies need not do it again
        self.models = [first] + [load_model(str(first.path), predict_config, trusted=True)
                                 for _ in range(config.workers - 1)]
        self._free: queue.Queue = queue.Queue()
        for m in self.models:
            self._free.put(m)

    @property
    def path(self) -> Path:
        return Path(self.models[0].path)

    @contextlib.contextmanager
    def checkout(self, timeout: float):
        """A Model for this thread alone until the block ends; RequestError 503 when none is free within `timeout`."""
        try:
            model = self._free.get(timeout=timeout)
        except queue.Empty:
            raise RequestError(503, f"busy: no model free within {timeout:g} s (--busy-timeout); "
                                    "try again") from None
        try:
            yield model
        finally:
            self._free.put(model)


def data_url(image) -> str:
    """A uint8 greyscale image as a `data:image/png;base64,...` URL."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, "L").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _flag(params: dict, name: str) -> bool:
    value = params.get(name, ["0"])[-1].strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise RequestError(400, f"?{name}={value}: expected 1 or 0")


QUERY_PARAMETERS = ("digits", "top", "prepared")


def predict_options(query: str, default_top: int) -> tuple:
    """(digits, top, prepared) from /predict's query string; RequestError 400 for an unknown or bad parameter."""
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - set(QUERY_PARAMETERS))
    if unknown:
        raise RequestError(400, f"unknown query parameter {unknown[0]!r} (known: {', '.join(QUERY_PARAMETERS)})")
    top = default_top
    if "top" in params:
        raw = params["top"][-1]
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= NUM_CLASSES):
            raise RequestError(400, f"?top={raw}: expected an integer from 1 to {NUM_CLASSES}")
        top = int(raw)
    return _flag(params, "digits"), top, _flag(params, "prepared")


def multipart_upload(body: bytes, content_type: str) -> tuple:
    """(the file's bytes, its name) from a multipart/form-data body (RFC 7578): the field `image`, else the first
    file.

    The body is cut at its boundary with bytes.split: a phone's photo is megabytes of binary
    data, which the email package's parser would read line by line, holding Python's lock all
    the while; only each part's few header lines go through the email package.

    Raises:
        RequestError: 400 when the body is no multipart form or holds no file.
    """
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise RequestError(400, f"{UPLOAD}: a multipart/form-data body without a boundary in its Content-Type")
    delimiter = b"\r\n--" + boundary.encode("latin-1", "replace")
    sections = (b"\r\n" + body).split(delimiter)[1:]  # [0]: the preamble
    parts = []
    for section in sections:
        if section.startswith(b"--"):  # the closing delimiter
            break
        head, separator, content = section.lstrip(b" \t").partition(b"\r\n\r\n")  # padding, then CRLF
        if not separator or not head.startswith(b"\r\n"):
            continue
        headers = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head[2:] + b"\r\n\r\n",
                                                                               headersonly=True)
        parts.append((headers.get_param("name", header="content-disposition"), headers.get_filename(), content))
    if not parts:
        raise RequestError(400, f"{UPLOAD}: a multipart/form-data body without parts (a missing or wrong boundary)")
    chosen = next((p for p in parts if p[0] == "image"), None) or next((p for p in parts if p[1]), None)
    if chosen is None:
        raise RequestError(400, f"{UPLOAD}: the form holds no file (send the image in a field named 'image')")
    _, filename, content = chosen
    name = " ".join(str(filename or UPLOAD).split()) or UPLOAD  # one line, whatever the client sent
    return content, name


def read_upload(model: Model, data: bytes, name: str, top: int, digits: bool, prepared: bool) -> dict:
    """The JSON record for one uploaded image: predict --json's record (`image_record`), `prepared` as data URLs.

    Raises:
        RequestError: 400 when the upload is not a readable image (the error names it).
    """
    if not data:
        raise RequestError(400, f"{name}: empty body, no image in it (send the image's bytes, or a multipart "
                                "upload with a field named 'image')")
    try:
        record, images = image_record(model, data, name, top, digits)
    except (ValueError, OSError) as exc:
        message = first_line(exc).replace(_BYTES_NAME, name, 1)
        raise RequestError(400, message if message.startswith(name) else f"{name}: {message}") from None
    record["prepared"] = [data_url(image) for image in images] if prepared else None
    return record


class Service:
    """What the request handlers share: the settings, the Model pool, the counters."""

    def __init__(self, model: Optional[str], config: ServeConfig):
        self.config = config
        self.pool = ModelPool(model, config)
        self.started = time.time()
        self.requests = 0
        self._lock = threading.Lock()

    def count(self) -> None:
        with self._lock:
            self.requests += 1

    def health(self) -> dict:
        model = self.pool.models[0]
        return {
            "status": "ok",
            "model": str(model.path),
            "backend": model.runner.backend.name,
            "backend_version": model.runner.backend.version,
            "threads": model.runner.num_threads,
            "workers": len(self.pool.models),
            "processes": self.config.processes,
            "pid": os.getpid(),
            "prepare": model.prepare,
            "min_probability": model.min_probability,
            "gate": None if model.gate is None else model.gate.describe(),
            "temperature": model.temperature,
            "max_bytes": self.config.max_bytes,
            "edgemnist_version": __version__,
            "uptime_s": round(time.time() - self.started, 3),
            "requests": self.requests,  # by this process
        }

    def manifest(self) -> dict:
        """The `<model>.tflite.json` beside the model, else what `edgemnist info MODEL --json` gives."""
        beside = manifest_path(self.pool.path)
        if beside.is_file():
            return json.loads(beside.read_text(encoding="utf-8"))
        from edgemnist.runtime import tflite_info

        return tflite_info.describe(self.pool.path)


# path -> (methods, the handler's method name)
ROUTES = {
    "/": (("GET",), "_page"),
    "/predict": (("POST",), "_predict"),
    "/health": (("GET",), "_health"),
    "/model": (("GET",), "_model"),
}


class Handler(BaseHTTPRequestHandler):
    """One connection: requests are read one after another (keep-alive) until the client or a timeout closes it."""

    protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connection
    server_version = f"edgemnist/{__version__}"
    disable_nagle_algorithm = True  # a small answer goes out at once, not after the client's delayed ACK
    wbufsize = -1  # buffered: the headers and a small body leave in one send (`_send` flushes), not two packets
    server: "Server"

    def setup(self):
        self.timeout = self.server.service.config.timeout  # StreamRequestHandler sets it on the socket
        super().setup()

    # ----------------------------------------------------------------- dispatch

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        started = time.perf_counter()
        self._status = None
        self._body_read = False
        url = urlsplit(self.path)
        try:
            methods, handler = ROUTES.get(url.path, ((), None))
            if handler is None:
                raise RequestError(404, f"{url.path}: no such path (the service answers "
                                        f"{', '.join(f'{m[0]} {p}' for p, (m, _) in ROUTES.items())})")
            if self.command not in methods:
                raise RequestError(405, f"{self.command} {url.path}: not allowed (use {' or '.join(methods)})",
                                   headers=(("Allow", ", ".join(methods)),))
            getattr(self, handler)(url)
        except RequestError as exc:
            self._refuse(exc)
        except (ConnectionError, socket.timeout, TimeoutError):  # the client went away or stalled while we answered
            self.close_connection = True
        except Exception as exc:  # the service never dies from a request: one line, and it goes on
            self._refuse(RequestError(500, f"internal error: {type(exc).__name__}: {first_line(exc, default='')}"))
        finally:
            self.server.service.count()
            self._log_request(url, started)

    def _refuse(self, exc: RequestError) -> None:
        if not self._body_read:
            self._drop_body(exc)
        if self._status is not None:  # the answer had begun: nothing more can be said on this connection
            self.close_connection = True
            return
        self._send_json(exc.status, {"error": exc.message}, exc.headers, close=exc.close)
        if exc.linger:
            self._linger()

    def _drop_body(self, exc: RequestError) -> None:
        """Reads and drops an unread body that is within the size cap, so the connection can go on; else closes it."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if exc.close or self.headers.get("Transfer-Encoding") or not 0 <= length <= self.server.service.config.max_bytes:
            exc.close = True
            return
        try:
            self._read_exactly(length)
        except RequestError:
            exc.close = True

    # ----------------------------------------------------------------- answers

    def _send(self, status: int, body: bytes, content_type: str, headers=(), close: bool = False) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")  # also sets close_connection
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, status: int, obj, headers=(), close: bool = False) -> None:
        self._send(status, json.dumps(obj, sort_keys=True).encode("utf-8") + b"\n", "application/json", headers, close)

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (a malformed request line, an unknown method) in the service's error shape."""
        self._status = code
        self._body_read = True
        if self.request_version == "HTTP/0.9":  # a line too broken to name a version: answer with a status line
            self.request_version = self.protocol_version
        text = message or self.responses.get(code, ("error",))[0]
        self._send_json(code, {"error": " ".join(str(text).split())}, close=True)

    def log_request(self, code="-", size="-"):
        """Not http.server's line: `_log_request` writes one with the time taken."""

    def log_message(self, format, *args):
        if not self.server.service.config.quiet:
            self._write_log(f"{self.address_string()} {format % args}")

    def _log_request(self, url, started: float) -> None:
        if self.server.service.config.quiet:
            return
        target = url.path + (f"?{url.query}" if url.query else "")
        elapsed = (time.perf_counter() - started) * 1000
        self._write_log(f"{self.command} {target} {self._status or '-'} {elapsed:.1f} ms")

    @staticmethod
    def _write_log(line: str) -> None:
        with contextlib.suppress(ValueError, OSError):  # stderr closed at shutdown
            print(line, file=sys.stderr, flush=True)

    # ----------------------------------------------------------------- the body

    def _read_exactly(self, length: int) -> bytes:
        """`length` bytes of body, within `timeout` seconds in all (a slow client cannot hold the thread longer)."""
        deadline = time.monotonic() + self.server.service.config.timeout
        chunks, got = [], 0
        while got < length:
            if time.monotonic() > deadline:
                raise RequestError(408, f"{UPLOAD}: the body took over {self.server.service.config.timeout:g} s "
                                        f"(--timeout); got {got} of {length} bytes", close=True)
            try:
                chunk = self.rfile.read1(min(_READ_CHUNK, length - got))
            except (socket.timeout, TimeoutError):
                raise RequestError(408, f"{UPLOAD}: the body stalled after {got} of {length} bytes "
                                        f"(--timeout {self.server.service.config.timeout:g} s)", close=True) from None
            if not chunk:
                raise RequestError(400, f"{UPLOAD}: the body ended after {got} of {length} bytes (truncated)",
                                   close=True)
            chunks.append(chunk)
            got += len(chunk)
        self._body_read = True
        return b"".join(chunks)

    def _read_body(self) -> bytes:
        """The request body, or a RequestError: 411 without a length, 413 over the cap (then the rest is dropped)."""
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(411, f"{UPLOAD}: send the body with a Content-Length (Transfer-Encoding is not "
                                    "supported)", close=True)
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise RequestError(411, f"{UPLOAD}: no Content-Length header (send the image's bytes with their length)",
                               close=True)
        if not (raw.strip().isascii() and raw.strip().isdigit()):
            raise RequestError(400, f"{UPLOAD}: Content-Length {raw!r} is not a number of bytes", close=True)
        length, cap = int(raw), self.server.service.config.max_bytes
        if length > cap:
            raise RequestError(413, f"{UPLOAD}: {length} bytes is over the {cap}-byte limit (--max-bytes)",
                               linger=True)
        return self._read_exactly(length)

    def _linger(self) -> None:
        """Reads and drops what the client still sends, for `linger` seconds at most, after an answer that ends the
        connection: it then sees that answer instead of a reset."""
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + self.server.service.config.linger
            self.connection.settimeout(self.server.service.config.linger)
            while time.monotonic() < deadline and self.connection.recv(_READ_CHUNK):
                pass

    # ----------------------------------------------------------------- endpoints

    def _predict(self, url) -> None:
        service = self.server.service
        digits, top, prepared = predict_options(url.query, service.config.top)
        body = self._read_body()
        content_type = self.headers.get("Content-Type", "")
        data, name = body, UPLOAD
        if content_type.split(";")[0].strip().lower() == "multipart/form-data":
            data, name = multipart_upload(body, content_type)
        with service.pool.checkout(service.config.busy_timeout) as model:
            record = read_upload(model, data, name, top, digits, prepared)
        self._send_json(200, record)

    def _health(self, url) -> None:
        self._send_json(200, self.server.service.health())

    def _model(self, url) -> None:
        self._send_json(200, self.server.service.manifest())

    def _page(self, url) -> None:
        try:
            page = PAGE.read_bytes()
        except OSError:
            raise RequestError(404, f"{PAGE}: the page is missing from this install of edgemnist (the API still "
                                    "answers: POST /predict)") from None
        self._send(200, page, "text/html; charset=utf-8")


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with the service attached; daemon threads, so an open keep-alive connection never
    holds up the exit."""

    daemon_threads = True
    request_queue_size = 64  # connections the kernel holds while the threads are busy (a burst of clients)
    service: Service

    def server_bind(self):
        # HTTPServer's own server_bind looks the host up in DNS (getfqdn), which can stall a
        # Pi with no network for seconds; the name is only used in CGI variables
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):
        """An error outside a request's handling (the connection broke): one line, the service goes on."""
        exc = sys.exc_info()[1]
        if not self.service.config.quiet:
            Handler._write_log(f"{client_address[0]}: connection error: {type(exc).__name__}: "
                               f"{first_line(exc, default='')}")


def make_server(model: Optional[str], config: ServeConfig) -> Server:
    """Binds the address, then loads the Model pool: a taken port fails before the models load.

    Args:
        model: a .tflite path, a shipped model's name, or None (the shipped int8 model).
        config: the settings (`processes` is `serve`'s business: this is one process's server).

    Returns:
        Server, listening; `serve_forever()` answers requests, `shutdown()` (from another thread) stops it.

    Raises:
        ValueError: the port is taken, or the address cannot be listened on; a bad model (as `edgemnist.load`).
        FileNotFoundError: no such model.
    """
    server = _bind(config)
    try:
        server.service = Service(model, config)
    except BaseException:
        server.server_close()
        raise
    return server


def _bind(config: ServeConfig) -> Server:
    """A Server listening on the configured address, with no service yet; ValueError when it cannot listen."""
    try:
        server = Server((config.host, config.port), Handler, bind_and_activate=True)
    except socket.gaierror as exc:
        raise ValueError(f"--host {config.host}: not an address of this machine ({exc.strerror})") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ValueError(f"port {config.port} on {config.host} is taken (another server runs there?): "
                             "pick another with --port") from None
        raise ValueError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
    return server


def lan_urls(host: str, port: int) -> list:
    """The URLs another machine uses when the server listens on all interfaces (the address the default route
    goes out of; no packet is sent), else []."""
    if host not in ("0.0.0.0", "", "::"):
        return []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))  # UDP connect only picks the route
        address = probe.getsockname()[0]
        if not address.startswith("127."):
            return [f"http://{address}:{port}/"]
    return []


def _announce(path, server: Server) -> None:
    host, port = server.server_address[:2]
    print(f"serving {path} on http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    for url in lan_urls(host, port):
        print(f"from another machine on this network: {url}", file=sys.stderr, flush=True)


def serve(model: Optional[str], config: ServeConfig) -> None:
    """Answers requests until interrupted (KeyboardInterrupt propagates: the CLI exits 130).

    Raises:
        ValueError, FileNotFoundError: as `make_server`.
    """
    if config.processes > 1:
        _serve_in_processes(model, config)
        return
    server = make_server(model, config)
    try:
        _announce(server.service.pool.path, server)
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()


class _ParentGone(Exception):
    """The process that started this server process has exited: stop serving."""


class _ChildServer(Server):
    """One of `processes` servers on a shared socket: it stops when the process that started it is gone."""

    parent_pid: int

    def service_actions(self):
        if os.getppid() != self.parent_pid:
            raise _ParentGone()


# The kinds of error a server process reports back by name when it cannot load the model, so that the parent
# raises the same kind as the one-process path would (the CLI's exit status 2 for bad input); anything else
# becomes a RuntimeError.
_LOAD_ERRORS = {cls.__name__: cls for cls in (FileNotFoundError, IsADirectoryError, NotADirectoryError,
                                             PermissionError, ValueError)}


def _start_server_process(server: Server, model: Optional[str], config: ServeConfig) -> tuple:
    """Forks one server process on the shared socket; returns (pid, the path of the model it loaded).

    The child loads its own Models after the fork (an interpreter must not cross a fork) and
    says "ok PATH" or "error TYPE MESSAGE" on a pipe once it is ready to answer.

    Raises:
        ValueError, FileNotFoundError, RuntimeError: the child could not load the model, or died.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller
        status = 1
        try:
            os.close(read_fd)
            server.__class__ = _ChildServer
            server.parent_pid = os.getppid()
            # every process is woken for a new connection and one wins it: the others must get
            # EAGAIN from accept (socketserver then waits again), not block in it
            server.socket.setblocking(False)
            server.service = Service(model, config)
            os.write(write_fd, f"ok {server.service.pool.path}\n".encode())
            os.close(write_fd)
            server.serve_forever(poll_interval=0.5)
            status = 0
        except (KeyboardInterrupt, _ParentGone):
            status = 0
        except BaseException as exc:  # noqa: BLE001 (reported to the parent, which raises it)
            with contextlib.suppress(OSError):
                kind = next((name for name, cls in _LOAD_ERRORS.items() if isinstance(exc, cls)), "RuntimeError")
                os.write(write_fd, f"error {kind} {first_line(exc, default='')}\n".encode())
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        answer = pipe.readline().decode("utf-8", "replace").strip()
    if answer.startswith("ok "):
        return pid, answer[3:]
    _, waited = os.waitpid(pid, 0)
    if answer.startswith("error "):
        kind, _, message = answer[6:].partition(" ")
        raise _LOAD_ERRORS.get(kind, RuntimeError)(message)
    raise RuntimeError(f"a server process died while loading the model (wait status {waited})")


def _serve_in_processes(model: Optional[str], config: ServeConfig) -> None:
    """`config.processes` server processes share one listening socket (the kernel hands each new connection to
    one of them); this process starts them, starts another when one dies, and stops them all when interrupted."""
    server = _bind(config)
    children: set = set()
    try:
        path = None
        for _ in range(config.processes):
            pid, path = _start_server_process(server, model, config)
            children.add(pid)
        _announce(path, server)
        while True:
            pid, status = os.wait()
            if pid not in children:
                continue
            children.discard(pid)
            print(f"edgemnist serve: server process {pid} ended (wait status {status}); starting another",
                  file=sys.stderr, flush=True)
            time.sleep(1.0)  # a process that dies at once must not become a busy loop of forks
            pid, _ = _start_server_process(server, model, config)
            children.add(pid)
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        server.server_close()


def add_commands(subparsers) -> None:
    """Registers `edgemnist serve`."""
    p = subparsers.add_parser(
        "serve",
        help="read digits over HTTP: POST /predict, GET /health, GET /model, a draw-a-digit page at / (no TensorFlow)",
        description="An HTTP service for a device (the standard library's threading server, no TensorFlow): "
        "POST /predict takes an image's bytes or a multipart upload (field 'image') and answers one record of "
        "`edgemnist predict --json` (?digits=1 reads a number, ?top=K, ?prepared=1 adds the 28x28 image(s) the "
        "model saw as PNG data URLs); GET /health; GET /model (the model's manifest); GET / a page to draw a "
        "digit on, or photograph one with a phone. A bad image is a 400, a body over --max-bytes a 413, each "
        "with {\"error\": ...}; no request stops the service. Ctrl-C stops it (exit 130).",
    )
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help=f"a .tflite file or a shipped model's name ({', '.join(SHIPPED)}) (default: the shipped "
                   f"{DEFAULT_MODEL} model)")
    defaults = ServeConfig(workers=1)
    p.add_argument("--host", default=defaults.host,
                   help="the address to listen on (default %(default)s: every interface, so other machines on the "
                   "network reach it; 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=defaults.port, help="TCP port (default %(default)s)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="Models in each server process's pool: requests one process reads at the same time "
                   "(default: 1 with a process per core, else the usable cores, at most 4)")
    p.add_argument("--processes", type=int, metavar="N",
                   help="server processes sharing the port, each with its own --workers Models: requests are "
                   "read in parallel beyond what one Python process's lock allows (default: one per usable core, "
                   "at most 4, where the system forks; else 1)")
    p.add_argument("--max-bytes", type=int, default=defaults.max_bytes, metavar="B",
                   help="refuse a request body over B bytes with a 413 (default %(default)s)")
    p.add_argument("--timeout", type=float, default=defaults.timeout, metavar="S",
                   help="close a connection silent for S seconds (idle keep-alive, a stalled upload) "
                   "(default %(default)s)")
    p.add_argument("--busy-timeout", type=float, default=defaults.busy_timeout, metavar="S",
                   help="answer 503 when no Model is free within S seconds (default %(default)s)")
    p.add_argument("--top", type=int, default=defaults.top, metavar="K",
                   help="the most probable digits per answer when a request names no ?top=K (default %(default)s)")
    p.add_argument("--no-prepare", dest="prepare", action="store_false",
                   help="the images are MNIST-shaped already: only greyscale and resize to 28x28")
    p.add_argument("--gate", default=defaults.gate, metavar="PATH",
                   help="the digit-or-not gate's .tflite (default: the gate shipped with edgemnist)")
    p.add_argument("--no-gate", dest="gate", action="store_const", const=None,
                   help="no gate: only the other rejection rules apply")
    p.add_argument("--min-probability", type=float, default=defaults.min_probability, metavar="P",
                   help="flag a digit under this probability as rejected, low confidence (default %(default)s)")
    p.add_argument("--temperature", type=float, metavar="T",
                   help="calibrate the probabilities as softmax(log p / T) (default: the model's manifest's)")
    p.add_argument("--quiet", action="store_true", help="no line per request on stderr")
    add_runtime_arguments(p)
    p.set_defaults(func=_run_serve)


def _config(args) -> ServeConfig:
    processes = {} if args.processes is None else {"processes": args.processes}
    return ServeConfig(host=args.host, port=args.port, workers=args.workers, max_bytes=args.max_bytes,
                       timeout=args.timeout,
                       busy_timeout=args.busy_timeout, top=args.top, prepare=args.prepare,
                       min_probability=args.min_probability, gate=args.gate, runtime=runtime_settings(args),
                       temperature=args.temperature, quiet=args.quiet, **processes)


def _run_serve(args):
    serve(args.model, _config(args))
    return 0
