"""A closed-loop HTTP/1.1 load generator: ``--connections`` keep-alive connections, each sending the next
request as soon as the previous response has arrived, for ``--seconds`` after ``--warmup`` seconds.

Prints one JSON line: requests, errors, requests per second, latency percentiles (ms).
Plain asyncio streams and a fixed request, so that it costs little next to the server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


async def connection(host: str, port: int, request: bytes, until: float, measure_from: float,
                     latencies: list[float], errors: list[str], done: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            start = time.perf_counter()
            if start >= until:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            status = head[9:12]
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            done[0] += 1
            if status != b"200":
                errors.append(status.decode())
            elif start >= measure_from:
                latencies.append(time.perf_counter() - start)
    except (OSError, asyncio.IncompleteReadError) as e:
        errors.append(type(e).__name__)
    finally:
        writer.close()


async def run(url: str, connections: int, seconds: float, warmup: float) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    errors: list[str] = []
    done = [0]  # every response, warm-up included
    now = time.perf_counter()
    measure_from, until = now + warmup, now + warmup + seconds
    await asyncio.gather(*(connection(host, port, request, until, measure_from, latencies, errors, done)
                           for _ in range(connections)))
    latencies.sort()

    def pct(p: float) -> float | None:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3) if latencies else None

    return {"requests": len(latencies), "total": done[0], "errors": len(errors), "error_kinds": sorted(set(errors))[:5],
            "rps": round(len(latencies) / seconds, 1), "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.connections, args.seconds, args.warmup))), flush=True)


if __name__ == "__main__":
    main()
