"""A process that drives a stream and then hangs, for the test that kills it.

Run as ``python -m tests.support.driver_process DSN STALE_AFTER``; prints the stream id
once its first sentence is persisted, then heartbeats until killed.
"""

from __future__ import annotations

import asyncio
import sys

from pts import PersistentTextStreaming


async def main(dsn: str, stale_after: float) -> None:
    async with PersistentTextStreaming(dsn=dsn, stale_after=stale_after, sweeper=False) as pts:
        writer = await pts.create_write_stream(metadata={"test": "killed driver"})
        await writer.write("The first sentence is persisted. ")
        await writer.write("This one never ends")
        while writer.size == 0:
            await asyncio.sleep(0.01)
        print(writer.stream_id, flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
