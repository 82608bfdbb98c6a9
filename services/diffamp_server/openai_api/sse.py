"""Server-sent events, and noticing a client that leaves.

Buffering: a stream sends each event as the gateway yields it, and uvicorn's send waits while the socket's
write buffer is full, so a slow reader stops pulling from the gateway, whose own bounded buffer (streams.py)
then pauses the request's samples. Nothing here holds more than one event per stream. A client that goes
away, streaming or not, has its request cancelled at once: its rows leave the batch at the next step.
"""

from __future__ import annotations

import asyncio
import json

from starlette.responses import StreamingResponse


class ClientGone(Exception):
    """The client disconnected before its response was ready."""


def data(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnected(receive, awaitable):
    """The awaitable's result, or ClientGone (the awaitable cancelled) if the client leaves first."""
    task = asyncio.ensure_future(awaitable)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, watch, return_exceptions=True)
    if task.cancelled():
        raise ClientGone()
    return task.result()


class EventStream(StreamingResponse):
    """Server-sent events whose generator is closed as soon as the client leaves, even while it waits for the
    gateway's next event (Starlette alone notices only when it next sends, depending on the ASGI version)."""

    media_type = "text/event-stream"

    async def __call__(self, scope, receive, send) -> None:
        try:
            await until_disconnected(receive, self.stream_response(send))
        except (ClientGone, OSError):
            pass
        finally:
            await self.body_iterator.aclose()
