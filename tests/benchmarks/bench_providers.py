"""Throughput of OpenAIProvider + call_with_retry against a loopback server answering after 100 ms.

    .venv/bin/python tests/benchmarks/bench_providers.py [--calls 2000] [--concurrency 32]
        [--delay 0.1] [--image-kb 64] [--runs 3] [--client provider|httpx2]
        [--server asyncio|threaded] [--transport httpx2|aiohttp] [--profile]

The ideal is concurrency / delay calls per second (320 for 32 in flight and 100 ms). The server
runs in a child process so that its CPU does not compete with the client's for one GIL; by
default it is a minimal asyncio server (``--server threaded`` uses the tests' http.server one,
whose 32 threads cost enough CPU on a 2-core machine to cap any client near 0.85).
``--client httpx2`` posts the same Chat Completions body with a bare ``httpx2.AsyncClient`` (the
transport the SDK uses): the gap between the two is the SDK's own cost. ``--profile`` runs
pyinstrument over one run and prints where the client's time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import io
import json
import multiprocessing
import os
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ingest.providers.base import CallRequest, ProviderOptions, parse_spec  # noqa: E402
from ingest.providers.openai_provider import OpenAIProvider, data_url  # noqa: E402
from ingest.providers.retry import call_with_retry  # noqa: E402

ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Real. Normal chest radiograph."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1234, "completion_tokens": 56, "total_tokens": 1290},
    }
).encode()


def serve(kind: str, delay: float, port_queue: multiprocessing.Queue) -> None:
    """The loopback server, in its own process: ``threaded`` is tests/loopback.py's OpenAIServer
    (http.server, one thread per connection); ``asyncio`` is a minimal keep-alive HTTP/1.1 server
    that reads the whole body, waits ``delay`` and answers the same ChatCompletion."""
    if kind == "threaded":
        from tests.loopback import OpenAIServer

        with OpenAIServer(
            delay=delay, record=False, default=("ok", "Real. Normal chest radiograph.")
        ) as server:
            port_queue.put(server.port)
            while True:
                time.sleep(3600)
    asyncio.run(serve_asyncio(delay, port_queue))


async def serve_asyncio(delay: float, port_queue: multiprocessing.Queue) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(ANSWER)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                headers = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in headers.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                await asyncio.sleep(delay)
                writer.write(head + ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
    for sock in server.sockets:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    port_queue.put(server.sockets[0].getsockname()[1])
    await server.serve_forever()


def noise_png(kilobytes: int, seed: int) -> bytes:
    """A PNG of random pixels (incompressible), about ``kilobytes`` KB."""
    import numpy as np
    from PIL import Image

    side = int((kilobytes * 1024 / 3) ** 0.5)
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="PNG", compress_level=1)
    return out.getvalue()


def requests(count: int, kilobytes: int) -> list[CallRequest]:
    images = [noise_png(kilobytes, seed) for seed in range(16)]
    return [
        CallRequest(
            image=images[i % len(images)],
            mime="image/png",
            image_sha256=hashlib.sha256(images[i % len(images)]).hexdigest(),
            prompt_id="paper",
            prompt_text="Is this image real or synthetic? Then interpret it.",
        )
        for i in range(count)
    ]


async def run_provider(
    reqs: list[CallRequest], concurrency: int, transport: str = "httpx2"
) -> tuple[float, int]:
    options = ProviderOptions(concurrency=concurrency, timeout_s=30)
    provider = OpenAIProvider(parse_spec("openai:gpt-4o"), options)
    if transport == "aiohttp":  # the SDK's optional transport (pip install "openai[aiohttp]"), for comparison
        import openai

        provider._client = openai.AsyncOpenAI(
            api_key=provider.client_key(),
            base_url=provider.base_url(),
            max_retries=0,
            timeout=30,
            http_client=openai.DefaultAioHttpClient(timeout=30),
        )
    gate = asyncio.Semaphore(concurrency)

    async def one(request: CallRequest) -> bool:
        async with gate:
            outcome = await call_with_retry(provider, request)
            return outcome.error is None

    await asyncio.gather(*(one(r) for r in reqs[:concurrency]))  # warm the connection pool
    started = time.perf_counter()
    results = await asyncio.gather(*(one(r) for r in reqs))
    elapsed = time.perf_counter() - started
    await provider.aclose()
    return elapsed, sum(results)


async def run_httpx2(reqs: list[CallRequest], concurrency: int) -> tuple[float, int]:
    import httpx2

    url = os.environ["OPENAI_BASE_URL"] + "/chat/completions"
    gate = asyncio.Semaphore(concurrency)
    async with httpx2.AsyncClient(
        timeout=30, limits=httpx2.Limits(max_connections=concurrency * 2)
    ) as client:

        async def one(request: CallRequest) -> bool:
            body = {
                "model": "gpt-4o",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": request.prompt_text},
                            {
                                "type": "image_url",
                                "image_url": {"url": data_url(request.image, request.mime)},
                            },
                        ],
                    }
                ],
            }
            async with gate:
                response = await client.post(
                    url, content=json.dumps(body), headers={"content-type": "application/json"}
                )
                return response.status_code == 200 and bool(response.json()["choices"])

        await asyncio.gather(*(one(r) for r in reqs[:concurrency]))
        started = time.perf_counter()
        results = await asyncio.gather(*(one(r) for r in reqs))
        return time.perf_counter() - started, sum(results)


PACKAGES = (
    "openai",
    "httpx2",
    "httpcore2",
    "h11",
    "anyio",
    "pydantic",
    "tenacity",
    "ingest",
    "json",
    "asyncio",
)


def print_by_package(root) -> None:  # noqa: ANN001  (a pyinstrument Frame)
    """Self time of the sampled frames summed by package (a built-in counts for the package
    that called it): where the client's time goes. Idle waiting in the event loop is "asyncio"."""
    totals: dict[str, float] = {}
    stack = [(root, "<root>")]
    while stack:
        frame, caller = stack.pop()
        path = (frame.file_path or "").replace("\\", "/")
        package = next((p for p in PACKAGES if f"/{p}/" in path or path.endswith(f"/{p}.py")), None)
        if package is None:
            package = path.rsplit("/", 1)[-1] if "/" in path else caller  # a built-in: its caller's
        totals[package] = totals.get(package, 0.0) + frame.total_self_time
        stack.extend((c, package) for c in frame.children if not c.is_synthetic)
    whole = sum(totals.values()) or 1.0
    print("self time by package:")
    for package, seconds in sorted(totals.items(), key=lambda item: -item[1])[:14]:
        print(f"  {package:<24} {seconds:7.2f} s  {100 * seconds / whole:5.1f} %")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--image-kb", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--client", choices=("provider", "httpx2"), default="provider")
    parser.add_argument("--server", choices=("asyncio", "threaded"), default="asyncio")
    parser.add_argument(
        "--transport", choices=("httpx2", "aiohttp"), default="httpx2", help="the SDK's HTTP transport"
    )
    parser.add_argument("--profile", action="store_true", help="profile one run with pyinstrument")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    server = context.Process(target=serve, args=(args.server, args.delay, port_queue), daemon=True)
    server.start()
    try:
        port = port_queue.get(timeout=30)
        os.environ["OPENAI_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
        os.environ["OPENAI_API_KEY"] = "sk-bench-not-a-real-key-0123456789"
        reqs = requests(args.calls, args.image_kb)
        ideal = args.concurrency / args.delay
        print(
            f"client={args.client} transport={args.transport} server={args.server} calls={args.calls} concurrency={args.concurrency} delay={args.delay * 1000:.0f} ms "
            f"image={len(reqs[0].image) / 1024:.1f} KB (data URL {len(data_url(reqs[0].image, 'image/png')) / 1024:.1f} KB) "
            f"ideal={ideal:.0f} calls/s cpus={os.cpu_count()}"
        )
        if args.client == "provider":
            runner = functools.partial(run_provider, transport=args.transport)
        else:
            runner = run_httpx2
        rates = []
        for index in range(1 if args.profile else args.runs):
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler(async_mode="disabled", interval=0.0005)
                profiler.start()
            cpu = time.process_time()
            elapsed, ok = asyncio.run(runner(reqs, args.concurrency))
            cpu = time.process_time() - cpu
            if args.profile:
                profiler.stop()
            rate = args.calls / elapsed
            rates.append(rate)
            print(
                f"run {index + 1}: {elapsed:.2f} s, {ok}/{args.calls} ok, {rate:.1f} calls/s, "
                f"{rate / ideal:.2f} of ideal, client CPU {cpu * 1000 / args.calls:.2f} ms/call"
            )
        median = statistics.median(rates)
        print(f"median: {median:.1f} calls/s = {median / ideal:.2f} of the ideal {ideal:.0f} calls/s")
        if args.profile:
            print(profiler.output_text(unicode=False, color=False, time="percent_of_total"))
            print_by_package(profiler.last_session.root_frame())
    finally:
        server.terminate()
        server.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
