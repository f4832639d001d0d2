"""``DELETE {path}``: delete a stream (204); its forks keep reading what they share with it."""

from __future__ import annotations

from litestar.types import Send

from pts.errors import StreamNotFound
from pts.http.durable.context import Context, Target
from pts.http.durable.responses import AnyRequest, send_response

__all__ = ["delete"]


async def delete(ctx: Context, request: AnyRequest, target: Target, send: Send) -> None:
    """Delete the stream ``target`` names, once the request may."""
    stream = await ctx.stream_for(request, target, "delete", touch=False)
    if await ctx.pts.store.ds_delete(stream.id) == "not_found":
        raise StreamNotFound(target.path or str(stream.id))
    await send_response(send, 204, {})
