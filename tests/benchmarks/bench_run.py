"""Throughput of `ingest run` beside a bare aiohttp loop, against one loopback OpenAI server.

    .venv/bin/python tests/benchmarks/bench_run.py [--calls 2000] [--concurrency 32] [--delay 0.1]
        [--image-kb 64] [--rounds 3] [--profile]
    .venv/bin/python tests/benchmarks/bench_run.py --realistic [--xrays 150] [--fundus 150]

Both clients post the same Chat Completions requests (the same prepared image bytes as data URLs)
to the same server (a minimal asyncio HTTP/1.1 server in a child process, 100 ms per answer). The
server measures each client the same way: calls / (last answer - first request). Rounds alternate
(bare loop, ingest run, ...), so both see the same machine load; medians and the ratio are printed.
The ingest rounds use a store whose images were prepared by an earlier `--dry-run` (memo and
prepared bytes in the store): the figure is the calling phase. The cold run (preparing included)
is printed too, with the run record's phase timings.

``--realistic`` makes 1024x1024 greyscale PNG chest X-rays and 3000x2900 RGB JPEG fundus photographs
(distinct copies), runs `ingest run` once cold and reports images prepared per second, calls per
second and the share of wall time spent preparing. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

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


def serve(delay: float, port_queue: multiprocessing.Queue) -> None:
    asyncio.run(_serve(delay, port_queue))


async def _serve(delay: float, port_queue: multiprocessing.Queue) -> None:
    """Keep-alive HTTP/1.1: POST answers after ``delay``; ``GET /stats`` returns and resets
    (requests, first request time, last answer time)."""
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(ANSWER)
    stats = {"n": 0, "first": None, "last": None}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                headers = await reader.readuntil(b"\r\n\r\n")
                if headers.startswith(b"GET /stats"):
                    body = json.dumps(stats).encode()
                    stats.update(n=0, first=None, last=None)
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
                    await writer.drain()
                    continue
                length = 0
                for line in headers.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                stats["first"] = stats["first"] or time.time()
                await reader.readexactly(length)
                await asyncio.sleep(delay)
                writer.write(head + ANSWER)
                await writer.drain()
                stats["n"] += 1
                stats["last"] = time.time()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
    for sock in server.sockets:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    port_queue.put(server.sockets[0].getsockname()[1])
    await server.serve_forever()


def server_stats(port: int) -> dict:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /stats HTTP/1.1\r\nhost: x\r\n\r\n")
        data = b""
        while b"}" not in data:
            data += sock.recv(65536)
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


def rate(stats: dict) -> float:
    return stats["n"] / (stats["last"] - stats["first"]) if stats["n"] > 1 else 0.0


def noise_images(folder: Path, count: int, kilobytes: int) -> None:
    """``count`` distinct incompressible PNGs of about ``kilobytes`` KB under folder/fundus/<truth>/."""
    side = int((kilobytes * 1024 / 3) ** 0.5)
    rng = np.random.default_rng(7)
    for i in range(count):
        truth = "real" if i % 2 else "synthetic"
        path = folder / "fundus" / truth / f"img_{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "RGB").save(
            path, compress_level=1
        )


async def bare_loop(port: int, bodies: list[bytes], concurrency: int) -> None:
    """aiohttp posting the prepared bodies with ``concurrency`` in flight (after a warm-up)."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes) -> None:
            async with (
                gate,
                session.post(url, data=body, headers={"content-type": "application/json"}) as resp,
            ):
                json.loads(await resp.read())

        await asyncio.gather(*(one(b) for b in bodies[:concurrency]))
        server_stats(port)  # the warm-up does not count
        await asyncio.gather(*(one(b) for b in bodies))


async def provider_loop(port: int, images: list[bytes], concurrency: int, prompt: str) -> None:
    """OpenAIProvider + call_with_retry alone (the SDK, no runner), same requests, same server."""
    import hashlib

    from ingest.providers.base import CallRequest, ProviderOptions, parse_spec
    from ingest.providers.openai_provider import OpenAIProvider
    from ingest.providers.retry import call_with_retry

    provider = OpenAIProvider(
        parse_spec("openai:gpt-4o"), ProviderOptions(concurrency=concurrency, timeout_s=30)
    )
    gate = asyncio.Semaphore(concurrency)
    requests = [
        CallRequest(
            image=data,
            mime="image/png",
            image_sha256=hashlib.sha256(data).hexdigest(),
            prompt_id="paper",
            prompt_text=prompt,
        )
        for data in images
    ]

    async def one(request: CallRequest) -> None:
        async with gate:
            await call_with_retry(provider, request)

    await asyncio.gather(*(one(r) for r in requests[:concurrency]))
    server_stats(port)
    await asyncio.gather(*(one(r) for r in requests))
    await provider.aclose()


def prepared_images(store: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted((store / "prepared").rglob("*.png"))]


def request_bodies(store: Path, prompt: str) -> list[bytes]:
    """The Chat Completions bodies of the prepared images in the store's cache (what ingest sends)."""
    bodies = []
    for path in sorted((store / "prepared").rglob("*.png")):
        url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        bodies.append(
            json.dumps(
                {
                    "model": "gpt-4o",
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": prompt},
                                {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
                            ],
                        }
                    ],
                    "temperature": 0.0,
                    "max_tokens": 1024,
                }
            ).encode()
        )
    return bodies


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ingest(args: list[str], env: dict, profile: Path | None = None) -> float:
    cmd = [
        sys.executable,
        *(["-m", "pyinstrument", "-r", "text", "-o", str(profile)] if profile else []),
        "-m",
        "ingest",
        *args,
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ingest failed: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def last_run(store: Path) -> dict:
    return max(
        (json.loads(p.read_text()) for p in (store / "runs").glob("*.json")), key=lambda r: r["started_at"]
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--image-kb", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="pyinstrument over the last ingest round")
    parser.add_argument("--realistic", action="store_true")
    parser.add_argument("--xrays", type=int, default=150)
    parser.add_argument("--fundus", type=int, default=150)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="medlens-bench-run-"))
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    server = context.Process(target=serve, args=(args.delay, ports), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=30)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "OPENAI_API_KEY": "sk-bench-not-a-real-key-0123456789",
        }
        if args.realistic:
            from tests.benchmarks.bench_images import realistic

            return realistic(work, args, env, port)
        return side_by_side(work, args, env, port)
    finally:
        server.terminate()
        server.join(5)


def side_by_side(work: Path, args: argparse.Namespace, env: dict, port: int) -> int:
    data, manifest, store = work / "data", work / "m.csv", work / "store"
    if not (data / "done").exists():
        shutil.rmtree(data, ignore_errors=True)
        noise_images(data, args.calls, args.image_kb)
        (data / "done").write_text("ok")
    ingest(["scan", str(data), "--out", str(manifest), "--no-audit"], env)
    run = [
        "run",
        "--manifest",
        str(manifest),
        "--model",
        "openai:gpt-4o",
        "--concurrency",
        str(args.concurrency),
        "--no-progress",
    ]
    shutil.rmtree(store, ignore_errors=True)
    cold = ingest([*run, "--store", str(store)], env)
    cold_rate, record = rate(server_stats(port)), last_run(store)
    from ingest.prompts import load_prompt

    bodies = request_bodies(store, load_prompt("paper").text)[: args.calls]
    print(
        f"{args.calls} calls, {args.concurrency} in flight, {args.delay * 1000:.0f} ms per answer, images "
        f"{statistics.mean(len(b) for b in bodies) / 1024:.0f} KB per request body; ideal "
        f"{args.concurrency / args.delay:.0f} calls/s; {os.cpu_count()} cores shared with other work (busy)"
    )
    print(
        f"cold ingest run (prepares {args.calls} images): {cold:.1f} s wall, calls {cold_rate:.0f} calls/s, "
        f"phases {record.get('timings')}"
    )
    images = prepared_images(store)[: args.calls]
    os.environ.update({k: env[k] for k in ("OPENAI_BASE_URL", "OPENAI_API_KEY")})
    bare, alone, runs, alone_cpu, run_cpu = [], [], [], [], []
    for index in range(args.rounds):
        asyncio.run(bare_loop(port, bodies, args.concurrency))
        bare.append(rate(server_stats(port)))
        cpu = time.process_time()
        asyncio.run(provider_loop(port, images, args.concurrency, load_prompt("paper").text))
        alone.append(rate(server_stats(port)))
        alone_cpu.append(1000 * (time.process_time() - cpu) / (len(images) + args.concurrency))
        warm = store.with_name("store-warm")
        shutil.rmtree(warm, ignore_errors=True)
        shutil.copytree(store, warm, ignore=shutil.ignore_patterns("responses", "runs", "claims", "leases"))
        profile = work / "ingest_profile.txt" if args.profile and index == args.rounds - 1 else None
        cpu = children_cpu()
        wall = ingest([*run, "--store", str(warm)], env, profile)
        runs.append(rate(server_stats(port)))
        cpu = children_cpu() - cpu
        phases = last_run(warm).get("timings")  # of the calling run, not of the cached re-run below
        rest = children_cpu()
        ingest([*run, "--store", str(warm)], env)  # the same command again: everything cached, no call
        rest = children_cpu() - rest  # start-up, identify, plan: the CPU that is not per call
        run_cpu.append(1000 * (cpu - rest) / args.calls)
        print(
            f"round {index + 1}: bare aiohttp {bare[-1]:.0f} calls/s; provider alone {alone[-1]:.0f}; "
            f"ingest run {runs[-1]:.0f} calls/s; client CPU per call: provider {alone_cpu[-1]:.2f} ms, "
            f"ingest run {run_cpu[-1]:.2f} ms "
            f"({wall:.1f} s wall, phases {phases})"
        )
    b, a, r = statistics.median(bare), statistics.median(alone), statistics.median(runs)
    print(
        f"median: bare aiohttp {b:.0f} calls/s, provider alone {a:.0f} ({a / b:.2f}), ingest run {r:.0f} "
        f"calls/s: ratio {r / b:.2f} (target >= 0.9); client CPU per call: provider alone "
        f"{statistics.median(alone_cpu):.2f} ms, ingest run {statistics.median(run_cpu):.2f} ms"
    )
    if args.profile:
        print(f"profile of the last ingest round: {work / 'ingest_profile.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
