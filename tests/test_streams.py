"""The bounded stream buffer between the step loop and a client (streams.py)."""

import asyncio

from diffamp_server.events import SampleEvent
from diffamp_server.streams import StreamBuffer, event_bytes


def test_a_buffer_that_was_full_wakes_the_step_loop_once_drained_below_half_whatever_the_event_sizes():
    async def run(events_per_fill: int) -> list[int]:
        event = SampleEvent(0, "x" * 100, [1, 2, 3])
        woken = []
        buffer = StreamBuffer(limit_bytes=event_bytes(event) * 10, on_drained=lambda: woken.append(buffer.bytes))
        for _ in range(events_per_fill):
            buffer.deliver(event)
        assert buffer.full
        for _ in range(events_per_fill):
            await buffer.get()
        return woken

    # Small events drain the buffer a little at a time: the pop that leaves it under the limit is not the one
    # that leaves it under half, and the wake-up must come all the same (once, below half).
    for count in (10, 11, 30):
        woken = asyncio.run(run(count))
        assert len(woken) == 1 and woken[0] < event_bytes(SampleEvent(0, "x" * 100, [1, 2, 3])) * 5, (count, woken)
