"""One way to run a fake HTTP(S) API on a free loopback port, for every fake in this package."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(handler: type[BaseHTTPRequestHandler], name: str,
          tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    """Serve `handler` on 127.0.0.1:<free port> in a daemon thread, over TLS if given."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                     name=name).start()
    return server


def stop(server: ThreadingHTTPServer | None) -> None:
    if server:
        server.shutdown()
        server.server_close()


def url(server: ThreadingHTTPServer | None, scheme: str = "http") -> str:
    assert server, "start the fake first"
    return f"{scheme}://127.0.0.1:{server.server_address[1]}"
