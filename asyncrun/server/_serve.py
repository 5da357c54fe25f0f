"""Serving the app with uvicorn, so that a shutdown is never held up by an open stream.

uvicorn waits for every open connection before it shuts down; a log follow of a running job
or a held watch never finishes on its own, so any read token could keep a server up forever.
The signal that starts the shutdown also tells the service to end its streams, and a grace
period bounds whatever else is still open.
"""

from __future__ import annotations

import signal
import socket
from types import FrameType
from typing import Final

import uvicorn

from ._app import create_app
from ._service import RunService

SHUTDOWN_GRACE: Final = 10
"""Seconds open requests get to finish once a shutdown begins; then they are cancelled."""


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: RunService) -> None:
        super().__init__(config)
        self._service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig in (signal.SIGINT, signal.SIGTERM):
            self._service.stop_streams()
        super().handle_exit(sig, frame)


def serve(
    service: RunService,
    *,
    host: str,
    port: int,
    max_body_bytes: int,
    auth: bool,
    log_level: str = "warning",
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve ``service`` over HTTP until SIGINT or SIGTERM; open log follows end at once.

    Args:
        service: The service to expose (closed when the server stops).
        host: The address to listen on.
        port: The port to listen on.
        max_body_bytes: Largest request body accepted.
        auth: Require tokens.
        log_level: uvicorn's log level.
        ssl_certfile: A TLS certificate, to serve HTTPS.
        ssl_keyfile: Its private key.
        sockets: Sockets already bound to ``host``:``port`` to listen on (closed at the end).
    """
    app = create_app(service, max_body_bytes=max_body_bytes, auth=auth)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )
    try:
        _Server(config, service).run(sockets=sockets)
    finally:
        for sock in sockets or ():
            sock.close()
