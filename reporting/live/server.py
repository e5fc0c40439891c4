"""Run the live view with uvicorn on 127.0.0.1 (a free port when ``port`` is 0)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from reporting.data import ReportStore
from reporting.live.app import create_app
from reporting.live.state import LiveState

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve(
    store: ReportStore,
    *,
    run_id: int | None = None,
    scalar: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    poll_s: float = 0.5,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM); ``on_ready(url)`` once listening."""
    from bruno_lab.extras import require_extra

    require_extra("report", "the live view")
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):
        from bruno_lab.errors import BadInputError

        raise BadInputError(f"--host {host}: the live view listens on the loopback only")
    port = port or free_port(host)
    state = LiveState(store, run_id=run_id, scalar=scalar)
    app = create_app(state, poll_s=poll_s, title="bruno-lab live")

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # end the open event streams first, or shutdown waits for them to time out
            app.state.close_streams()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2, lifespan="on"
    )
    server = _Server(config)
    url = f"http://{host}:{port}/"
    if on_ready is not None:
        original = server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets=sockets)
            on_ready(url)

        server.startup = startup  # type: ignore[method-assign]
    server.run()
