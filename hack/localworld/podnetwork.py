"""The pod network, for processes outside it: an HTTP forward proxy to pods' loopback twins.

In a cluster the operator dials pod IPs directly (the smoke test posts to each canary pod).
Here pod IPs (10.<net>.x.y) route nowhere, and their servers listen on 127.<net>.x.y
(`localworld.addresses`). A process started with `HTTP_PROXY=<this proxy's url>` and
`NO_PROXY=127.0.0.1,localhost` (the API server and Prometheus stay direct) reaches pods
exactly as it would in a cluster: this proxy takes the absolute-form request
(`POST http://10.200.1.7:8080/predict`) and forwards it to 127.200.1.7:8080. Nothing in the
operator knows about it; HTTP_PROXY is how urllib (and most clients) reach a network
they are not on. Only pod addresses are forwarded (the configured /16): anything else is 403.
"""

from __future__ import annotations

import http.client
import ipaddress
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from localworld.addresses import loopback
from localworld.router import HOP_BY_HOP


class PodNetwork:
    """`with PodNetwork() as net: env.update(net.client_env())`.

    The default range holds every local cluster's pod network (10.<128..254>.0.0/16)."""

    def __init__(self, pod_cidr: str = "10.0.0.0/8", timeout: float = 10.0) -> None:
        self.pods = ipaddress.IPv4Network(pod_cidr)
        self.timeout = timeout
        self.forwarded = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def client_env(self) -> dict[str, str]:
        """The environment that sends a process's pod requests here and everything else direct."""
        return {"HTTP_PROXY": self.url, "NO_PROXY": "127.0.0.1,localhost"}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> PodNetwork:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def target(self, url: str) -> tuple[str, int, str] | None:
        """(loopback host, port, path) for a pod URL; None for anything that is not a pod."""
        parts = urllib.parse.urlsplit(url)
        try:
            address = ipaddress.IPv4Address(parts.hostname or "")
        except ValueError:
            return None
        if parts.scheme != "http" or address not in self.pods:
            return None
        path = parts.path or "/"
        return loopback(str(address)), parts.port or 80, path + (f"?{parts.query}" if parts.query else "")


def _handler(net: PodNetwork) -> type[BaseHTTPRequestHandler]:
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, code: int, text: str) -> None:
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self) -> None:
            target = net.target(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if target is None:
                self._reply(403, f"not a pod address in {net.pods}: {self.path}\n")
                return
            host, port, path = target
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn = http.client.HTTPConnection(host, port, timeout=net.timeout)
            try:
                conn.request(self.command, path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            except OSError as err:
                self._reply(502, f"pod {host}:{port} did not answer: {err}\n")
                return
            finally:
                conn.close()
            with net._lock:
                net.forwarded += 1
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _forward

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Proxy
