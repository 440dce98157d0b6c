"""``python -m skywalking.collector``: run the local OAP 6.6.0 stand-in until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from skywalking.collector import start
from skywalking.collector.grpc_server import host_port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m skywalking.collector",
                                description="Local stand-in for SkyWalking OAP 6.6.0 (v6) and a minimal OAP 8+ (v3).")
    p.add_argument("--host", default="127.0.0.1", help="address to bind both servers to (default 127.0.0.1)")
    p.add_argument("--grpc-port", type=int, default=11800, help="gRPC port, 0 = ephemeral (default 11800)")
    p.add_argument("--http-port", type=int, default=12800, help="JSON API port, 0 = ephemeral (default 12800)")
    p.add_argument("--register-delay", type=float, default=0.3,
                   help="seconds until a requested inventory id exists (default 0.3)")
    p.add_argument("--print-delay", type=float, default=1.0,
                   help="print a trace after it has been quiet this many seconds (default 1.0)")
    p.add_argument("--no-print", action="store_true", help="do not print traces and drops to stdout")
    p.add_argument("--retry-grace", type=float, default=6.0,
                   help="how long a buffered segment is re-checked before it is dropped (default 6.0, OAP's "
                        "1 s + 10 x 0.5 s)")
    p.add_argument("--max-segments", type=int, default=100_000, help="segments kept (newest; default 100000)")
    p.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    p.add_argument("--tls-cert", help="PEM certificate: serve gRPC over TLS (with --tls-key)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--sink", action="store_true",
                   help="count received segments only (no rules, no storage): for throughput benchmarks")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            logging.getLogger("skywalking.collector").error("--tls-cert and --tls-key go together")
            return 2
        tls = (Path(args.tls_key).read_bytes(), Path(args.tls_cert).read_bytes())
    try:
        running = start(args.host, args.grpc_port, args.http_port, args.register_delay, args.print_delay,
                        args.retry_grace, args.max_segments, print_output=not args.no_print, sink=args.sink,
                        tls=tls)
    except OSError as exc:
        logging.getLogger("skywalking.collector").error("cannot start: %s", exc)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.stdout.write(f"collector ready grpc={host_port(args.host, running.grpc_port)} "
                     f"http={host_port(args.host, running.http_port)}\n")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    logging.getLogger("skywalking.collector").info("stopping")
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
