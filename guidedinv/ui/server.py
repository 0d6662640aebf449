"""The page's HTTP server: the standard library's ThreadingHTTPServer, one static page and a small
JSON API. Every file it writes is under its own temporary folder (removed when it stops).

Routes::

    GET  /                         the page (static/index.html; static/app.js, static/style.css)
    GET  /api/config               tasks, their methods and the presets' defaults
    POST /api/jobs                 a form (JSON, see guidedinv.ui.form) -> 202 {"id", ...} or 400/413/503 {"error": one line}
    GET  /api/jobs/ID              the job's state, step / total, queue position, error, files
    GET  /api/jobs/ID/FILE         result.png, result.recipe.toml, compare.png, trajectory.gif, uncertainty.png
                                   (?download=1: as an attachment)
"""
from __future__ import annotations

import json
import shutil
import signal
import socket
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from ..errors import GuidedinvError, InputError
from .form import FILES, page_config, prepare
from .jobs import JobQueue

__all__ = ["UIServer", "make_server", "serve", "LOOPBACK", "MAX_BODY"]

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_BODY = 64 * 2**20  # bytes of one posted form (base64: about 48 MB of files)
MAX_WAITING = 8  # jobs queued behind the running one: each holds its decoded image, so memory stays bounded
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".png": "image/png", ".gif": "image/gif", ".toml": "text/plain; charset=utf-8", ".json": "application/json"}


class UIServer(ThreadingHTTPServer):
    """The HTTP server with its job queue, temporary folder and settings (model, device)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: str | None, device: str, root: Path, keep: int = 16,
                 start_worker: bool = True, max_body: int = MAX_BODY, max_waiting: int = MAX_WAITING) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.model, self.device, self.root, self.max_body, self.max_waiting = model, device, Path(root), max_body, max_waiting
        self.jobs = JobQueue(self.root, device=device, keep=keep, start=start_worker)
        self._config: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in str(host) else host}:{port}/"

    def config(self) -> dict[str, Any]:
        if self._config is None:
            self._config = page_config(self.model)
            self._config["max_body"] = self.max_body
        return self._config

    def close(self) -> None:
        """Stop serving, stop the worker, remove the temporary folder."""
        self.shutdown()
        self.server_close()
        self.jobs.close()
        shutil.rmtree(self.root, ignore_errors=True)


class _Handler(BaseHTTPRequestHandler):
    server: UIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: the terminal keeps the start line and real errors

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), _TYPES[".json"])

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": " ".join(message.split())})

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        try:
            self._get()
        except Exception as exc:  # never a dead server for one bad request
            self._error(500, f"internal error ({type(exc).__name__}): {exc}")

    def do_POST(self) -> None:  # noqa: N802
        try:
            self._post()
        except Exception as exc:
            self._error(500, f"internal error ({type(exc).__name__}): {exc}")

    def _get(self) -> None:
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        if not parts:
            return self._static("index.html")
        if parts[0] == "static" and len(parts) == 2:
            return self._static(parts[1])
        if parts == ["api", "config"]:
            return self._json(200, self.server.config())
        if parts[:2] == ["api", "jobs"] and len(parts) in (3, 4):
            job = self.server.jobs.get(parts[2])
            if job is None:
                return self._error(404, f"no job {parts[2]!r} (finished jobs are kept for a while, then removed)")
            if len(parts) == 3:
                return self._json(200, job.status(self.server.jobs.position(job)))
            kind = next((k for k, name in FILES.items() if name == parts[3]), None)
            if kind is None or kind not in job.files:
                return self._error(404, f"job {job.id} has no {parts[3]!r}")
            extra = {}
            if parse_qs(url.query).get("download"):  # the mask under the name the recipe gives it (an edit's operator.mask)
                name = f"guidedinv-{job.prepared.task}-{job.number}.{parts[3]}"
                if kind == "mask" and job.prepared.mask_name:
                    name = job.prepared.mask_name
                extra["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
            body = (job.folder / parts[3]).read_bytes()
            return self._send(200, body, _TYPES[Path(parts[3]).suffix], extra)
        return self._error(404, f"no page {url.path!r}")

    def _static(self, name: str) -> None:
        known = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in known:
            return self._error(404, f"no page /static/{name}")
        self._send(200, known[name].read_bytes(), _TYPES.get(known[name].suffix, "application/octet-stream"))

    def _post(self) -> None:
        if urlsplit(self.path).path.rstrip("/") != "/api/jobs":
            return self._error(404, f"no form at {self.path!r}")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._error(411, "the form needs a Content-Length")
        if length > self.server.max_body:
            self._drain(length)
            return self._error(413, f"the upload is {length / 2**20:.1f} MiB, over the page's limit of "
                                    f"{self.server.max_body / 2**20:.0f} MiB; choose a smaller image")
        body = self.rfile.read(length)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return self._error(400, "the form is not valid JSON")
        jobs = self.server.jobs
        if jobs.waiting() >= self.server.max_waiting:
            return self._error(503, f"{jobs.waiting()} jobs are already waiting; run this one when one of them has finished")
        job_id, number, folder = jobs.new_folder()
        try:
            prepared = prepare(payload, folder, self.server.model, self.server.device)
        except GuidedinvError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            return self._error(400 if isinstance(exc, InputError) else 500, str(exc))
        job = jobs.submit(job_id, number, folder, prepared)
        self._json(202, job.status(jobs.position(job)))

    def _drain(self, length: int) -> None:
        """Read and drop a refused body, so the browser sees the answer rather than a reset connection."""
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, 2**20))
            if not chunk:
                break
            left -= len(chunk)


def make_server(host: str = "127.0.0.1", port: int = 0, model: str | None = None, device: str = "auto",
                root: Path | None = None, **options: Any) -> UIServer:
    """A server bound to HOST:PORT (port 0: a free one), not yet serving; its files go under ROOT (a
    new temporary folder by default)."""
    folder = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="guidedinv-ui-"))
    try:
        return UIServer((host, port), model, device, folder, **options)
    except OSError as exc:
        if root is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise InputError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None


def start_in_thread(server: UIServer) -> threading.Thread:
    """Serve in a background thread (tests, scripts); stop with ``server.close()``."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="guidedinv-ui-http", daemon=True)
    thread.start()
    return thread


def serve(host: str, port: int, model: str | None, device: str, echo: Any = print) -> None:
    """Serve until Ctrl-C; say where, and whether other machines can reach it."""
    server = make_server(host, port, model, device)
    if host in LOOPBACK:
        where = "loopback only: this computer's browser can open it, other machines cannot (--host to change)"
    else:
        where = f"listening on {host}: other machines on the network can open it and run jobs on this computer"
    echo(f"guidedinv ui: {server.url} ({where}); its files go to {server.root}, removed when it stops; Ctrl-C to stop")
    sys.stdout.flush()
    if threading.current_thread() is threading.main_thread():  # a plain kill stops it as Ctrl-C does: folder removed
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        server.jobs.close(timeout=0.1)
        shutil.rmtree(server.root, ignore_errors=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
