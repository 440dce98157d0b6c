"""A service for the sw_loguru test, traced by the agent (configured by SW_* variables).

Two loguru sinks, ``direct`` on stderr and ``queued`` (``enqueue=True``) on stdout, write
``loguru <sink> <tid>|<file>|<line>|<function>|<extra[user]>|<message>``; a patcher configured after the agent
started sets ``extra[user]``. One line is logged at start-up (outside a trace); ``GET /log`` (an ``http.server``
handler) logs one line, and one with a bound ``tid``. The test finds the expected line numbers by the
``# line:`` comments. Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from skywalking import agent

agent.start()

from loguru import logger  # noqa: E402  (after the agent: patched on import)

FORMAT = "{extra[tid]}|{file.path}|{line}|{function}|{extra[user]}|{message}"


class Front(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        logger.info("inside")  # line: inside
        logger.bind(tid="mine").info("bound")  # line: bound
        body = json.dumps({"logged": 2}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    logger.remove()
    logger.add(sys.stderr, format="loguru direct " + FORMAT)
    logger.add(sys.stdout, format="loguru queued " + FORMAT, enqueue=True)
    logger.configure(patcher=lambda record: record["extra"].update(user="kept"))
    logger.info("outside")  # line: outside
    logger.complete()  # the queued sink has written its line: the ready line below stays a line of its own
    server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
    print(f"ready port={server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        agent.stop()
        logger.complete()


if __name__ == "__main__":
    main()
