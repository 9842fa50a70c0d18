"""A small threaded HTTPS JSON server shared by both emulators: routing, bearer check, request log, faults."""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox.tls import TlsFiles


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None


@dataclass
class Fault:
    """Answer the next `times` matching requests with `status` instead of serving them."""

    status: int
    method: str | None = None
    path_contains: str = ""
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    query: dict[str, str] = field(default_factory=dict)
    """Only requests whose query string holds all of these."""


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    status: int

    @property
    def is_write(self) -> bool:
        return self.method not in ("GET", "HEAD")


Handler = Callable[[Request, re.Match[str]], Response]


class JsonServer:
    def __init__(self, *, tls: TlsFiles, token: str, name: str) -> None:
        self.token, self.name = token, name
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.faults: list[Fault] = []
        self.after_write: list[Callable[[], None]] = []
        """Called (under the lock) after every write the emulator accepted: tests check invariants at each step."""
        self.latency_seconds = 0.0
        self.log: list[LoggedRequest] = []
        self.lock = threading.RLock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes; with Nagle's algorithm on, the body waits for the client's
            # delayed ACK (about 40 ms a request on Linux), which no real front end adds.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                server._serve(self)

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls.server_cert), str(tls.server_key))
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"{name}-emulator", daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> JsonServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern + r"$"), handler))

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def writes(self) -> list[LoggedRequest]:
        with self.lock:
            return [r for r in self.log if r.is_write]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    def unauthorized(self) -> Response:
        raise NotImplementedError

    def refuse_media_type(self, request: Request) -> Response | None:
        """A 415 for a body this server does not read; None to go on."""
        return None

    def not_found(self, request: Request) -> Response:
        raise NotImplementedError

    def forbidden(self, request: Request) -> Response | None:
        """Authorization after authentication: a 403 when the caller's roles do not allow the request."""
        return None

    def admit(self, request: Request) -> Response | None:
        """Throttling after authorization: a 429 when the caller's budget is spent."""
        return None

    def decorate(self, request: Request, response: Response) -> Response:
        """Headers every answer carries (remaining quota)."""
        return response

    def _take_fault(self, request: Request) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if (
                    fault.method in (None, request.method)
                    and fault.path_contains in request.path
                    and all(request.query.get(k) == v for k, v in fault.query.items())
                ):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    def _dispatch(self, request: Request) -> Response:
        if not self.authorized(request):
            return self.unauthorized()
        denied = self.forbidden(request)
        if denied is not None:
            return denied
        throttled = self.admit(request)
        if throttled is not None:
            return throttled
        fault = self._take_fault(request)
        if fault is not None:
            return Response(fault.status, fault.body, dict(fault.headers))
        refused = self.refuse_media_type(request)
        if refused is not None:
            return refused
        for method, pattern, handler in self.routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                with self.lock:
                    response = handler(request, match)
                    if request.method not in ("GET", "HEAD") and response.status < 300:
                        for check in self.after_write:
                            check()
                    return response
        return self.not_found(request)

    def _serve(self, http: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(http.path)
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length) if length else b""
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in http.headers.items()}
        request = Request(http.command, parts.path, query, headers, body)
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        try:
            response = self.decorate(request, self._dispatch(request))
        except Exception as exc:  # noqa: BLE001 - an emulator bug must show as a 500, not a hung client
            response = Response(500, {"error": {"code": "EmulatorError", "message": repr(exc)}})
        with self.lock:
            self.log.append(LoggedRequest(request.method, http.path, response.status))
        http.send_response(response.status)
        for name, value in response.headers.items():
            http.send_header(name, value)
        if response.stream is not None:
            http.send_header("Content-Type", "application/json")
            http.send_header("Transfer-Encoding", "chunked")
            http.end_headers()
            try:
                for chunk in response.stream:
                    http.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    http.wfile.flush()
                http.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                http.close_connection = True
            return
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        if payload:
            http.send_header("Content-Type", "application/json; charset=utf-8")
        http.send_header("Content-Length", str(len(payload)))
        http.end_headers()
        if http.command != "HEAD":
            try:
                http.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                http.close_connection = True  # the client went away (a timeout, a closed pool): as a real server
