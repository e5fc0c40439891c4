"""The live view's ASGI app (Starlette): the page, a JSON snapshot, server-sent events.

One background task polls the database every ``poll_s`` into one ``LiveState``; each viewer's
event stream waits for the state's version to change and sends what it has not seen (a
reconnecting EventSource sends its last id and gets the rest). Nothing is fetched from outside:
the page's plotly.js is served from the installed ``plotly`` package.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from reporting.live.state import LiveState

log = logging.getLogger(__name__)

KEEPALIVE_S = 10.0


def _plotly_path() -> Path:
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


def _page(title: str) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("reporting", "templates"), autoescape=select_autoescape(["html"])
    )
    return env.get_template("live.html").render(title=title)


def _dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), default=str)


def create_app(state: LiveState, *, poll_s: float = 0.5, title: str = "bruno-lab live") -> Any:
    """The Starlette app over ``state`` (polled every ``poll_s`` while the app runs)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
    from starlette.routing import Route

    # one Event per state version: a viewer takes the current one *before* it compares
    # versions, so a change between its check and its wait still wakes it
    notify = {"event": asyncio.Event()}
    stopping = asyncio.Event()
    loop_ref: dict[str, asyncio.AbstractEventLoop] = {}

    def wake() -> None:
        event, notify["event"] = notify["event"], asyncio.Event()
        event.set()

    page = _page(title)

    async def poller() -> None:
        while not stopping.is_set():
            try:
                if await run_in_threadpool(state.poll):
                    wake()
            except Exception:  # never let the poller die: the next poll retries
                log.exception("live view: poll")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=poll_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        loop_ref["loop"] = asyncio.get_running_loop()
        task = asyncio.create_task(poller())
        try:
            yield
        finally:
            stopping.set()
            wake()
            await task

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def snapshot(request: Request) -> JSONResponse:
        return JSONResponse(json.loads(_dumps(state.snapshot())))

    async def events(request: Request) -> StreamingResponse:
        try:
            after = int(
                request.headers.get("last-event-id") or request.query_params.get("after", "0")
            )
        except ValueError:
            after = 0
        run_seen = request.query_params.get("run")

        async def stream() -> AsyncIterator[str]:
            nonlocal after, run_seen
            yield "retry: 1000\n\n"
            version = -1
            while not stopping.is_set():
                event = notify["event"]
                if state.version != version:
                    version = state.version
                    run_id = str(state.run.get("id", ""))
                    if run_seen is not None and run_seen != run_id:
                        after = 0  # another run: the viewer starts over
                    run_seen = run_id
                    doc = state.delta(after)
                    doc["reset"] = after == 0
                    if doc["measurements"]:
                        after = doc["measurements"][-1]["id"]
                    yield f"id: {after}\nevent: state\ndata: {_dumps(doc)}\n\n"
                try:
                    await asyncio.wait_for(event.wait(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    # progress (ETA, time since the last commit) moves without a commit
                    yield f"event: tick\ndata: {_dumps({'progress': state.progress()})}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def plotly_js(request: Request) -> FileResponse:
        return FileResponse(
            _plotly_path(),
            media_type="application/javascript",
            headers={"Cache-Control": "max-age=86400"},
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "ok": state.error is None,
                "error": state.error,
                "version": state.version,
                "last_poll": state.last_poll,
            }
        )

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/state", snapshot),
            Route("/api/events", events),
            Route("/static/plotly.js", plotly_js),
            Route("/healthz", health),
        ],
        lifespan=lifespan,
    )

    def close_streams() -> None:
        """End every event stream (the server is stopping: viewers reconnect to the next).
        Callable from any thread: the events are set on the server's loop."""

        def close() -> None:
            stopping.set()
            wake()

        loop = loop_ref.get("loop")
        if loop is None or loop.is_closed():
            close()
        else:
            loop.call_soon_threadsafe(close)

    app.state.close_streams = close_streams
    return app
