"""Load: 200 requests at concurrency 32 against the tiny chat model, a quarter of them abandoned by
client time-outs mid-stream (after their first chunk, the client waits at most 0.3 s for the rest). Afterwards the server answers at once, decodes nothing, has not
grown its memory beyond a bound, and every completed answer is the one the prompt gets alone."""

from __future__ import annotations

import asyncio
import time

import pytest

from serve_helpers import API_KEY, metric

pytestmark = pytest.mark.timeout(180)
REQUESTS, CONCURRENCY, TOKENS = 200, 32, 24
ABANDON_AFTER_S = 0.3  # an abandoning client's time-out, from its first chunk on
MEMORY_BOUND = 100 * 2**20  # resident memory may grow this much over the run (allocator caches, pools)
PROMPTS = [
    "It was the",
    "the season of",
    "Light",
    "age of wisdom",
    "winter of despair",
    "it was the epoch of",
    "spring of hope",
    "foolishness",
]


async def _load(server) -> dict:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    want = {}
    for prompt in PROMPTS:  # each prompt alone, the reference every answer must equal
        reply = await client.completions.create(model="chat", prompt=prompt, max_tokens=TOKENS, temperature=0)
        want[prompt] = reply.choices[0].text
    gate = asyncio.Semaphore(CONCURRENCY)
    stats = {"complete": 0, "corrupt": [], "abandoned": 0, "outran": 0}

    async def streamed(prompt: str) -> None:
        stream = await client.completions.create(
            model="chat", prompt=prompt, max_tokens=TOKENS, temperature=0, stream=True
        )
        async with stream:
            chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].text for c in chunks)
        ok = (
            len({c.id for c in chunks}) == 1
            and chunks[-1].choices[0].finish_reason == "length"
            and all(c.choices[0].finish_reason is None for c in chunks[:-1])
            and text == want[prompt]
        )
        stats["complete"] += 1
        if not ok:
            stats["corrupt"].append((prompt, text))

    async def whole(prompt: str) -> None:
        reply = await client.completions.create(model="chat", prompt=prompt, max_tokens=TOKENS, temperature=0)
        stats["complete"] += 1
        if reply.choices[0].text != want[prompt] or reply.usage.completion_tokens != TOKENS:
            stats["corrupt"].append((prompt, reply.choices[0].text))

    async def abandoned(prompt: str) -> None:
        """Reads the first chunk, then gives up when the next ones take longer than its time-out."""
        stream = await client.completions.create(
            model="chat", prompt=prompt, max_tokens=480, temperature=0, stream=True, extra_body={"ignore_eos": True}
        )
        async with stream:  # leaving closes the connection: the server sees the client go
            chunks = stream.__aiter__()
            await asyncio.wait_for(chunks.__anext__(), 60)

            last = []

            async def rest():
                async for chunk in chunks:
                    last[:] = [chunk]

            try:
                await asyncio.wait_for(rest(), ABANDON_AFTER_S)
            except asyncio.TimeoutError:
                stats["abandoned"] += 1
            else:  # the rest had already arrived (the client reads slower than the server writes): whole?
                stats["outran"] += 1
                if not last or last[0].choices[0].finish_reason != "length":
                    stats["corrupt"].append((prompt, "an unfinished stream ended"))

    async def one(i: int) -> None:
        async with gate:
            prompt = PROMPTS[i % len(PROMPTS)]
            await (abandoned if i % 4 == 3 else whole if i % 4 == 1 else streamed)(prompt)

    stats["rss_before"] = await asyncio.to_thread(metric, server, "process_resident_memory_bytes")  # warmed up
    start = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    stats["seconds"] = time.monotonic() - start
    start = time.monotonic()  # a new request after the load
    reply = await client.completions.create(model="chat", prompt=PROMPTS[0], max_tokens=8, temperature=0)
    stats["after_s"] = time.monotonic() - start
    stats["after_ok"] = want[PROMPTS[0]].startswith(reply.choices[0].text)
    await client.close()
    return stats


def test_200_requests_with_a_quarter_abandoned(tiny_server):
    cancelled = metric(tiny_server, "attentive_cancelled_sequences_total", model="chat")
    stats = asyncio.run(_load(tiny_server))
    assert stats["corrupt"] == [] and stats["complete"] == REQUESTS * 3 // 4, stats
    assert stats["abandoned"] + stats["outran"] == REQUESTS // 4 and stats["abandoned"] > REQUESTS // 8, stats
    assert stats["after_s"] < 2.0 and stats["after_ok"], stats
    deadline = time.monotonic() + 10
    while metric(tiny_server, "attentive_active_sequences", model="chat") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(tiny_server, "attentive_active_sequences", model="chat") == 0, stats
    assert metric(tiny_server, "attentive_queue_depth", model="chat") == 0, stats
    cancelled = metric(tiny_server, "attentive_cancelled_sequences_total", model="chat") - cancelled
    assert cancelled >= REQUESTS // 8, (cancelled, stats)  # most of the 50 were still decoding when abandoned
    grown = metric(tiny_server, "process_resident_memory_bytes") - stats["rss_before"]
    print(f"load: {stats['seconds']:.1f} s, resident memory {grown / 2**20:+.1f} MiB, {cancelled:.0f} cancelled")
    assert grown < MEMORY_BOUND, (grown, stats)
