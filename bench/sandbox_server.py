"""The sandbox gateway as the benchmarks run it: ``worker.sandbox`` unchanged except that its
request handler sets TCP_NODELAY (``disable_nagle_algorithm``).

Why: the stock handler writes a response's headers and its body in two ``send`` calls; with
Nagle on, the body waits for the client's delayed ACK of the headers, ~40 ms on Linux, on every
answer. That would turn "0 ms gateway latency" into ~40 ms and hide everything else, for the
bare client and the pipeline alike. ``python -m bench.run --stock-sandbox`` uses the stock one.
"""

from __future__ import annotations

import argparse
import signal
import sys

from worker import sandbox
from worker.settings import Settings

__all__ = ["NoDelayHandler", "main"]


class NoDelayHandler(sandbox.SandboxHandler):
    disable_nagle_algorithm = True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--time-factor", type=float, default=0.01)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    server = sandbox.SandboxServer(("127.0.0.1", args.port), NoDelayHandler, sandbox=sandbox.Sandbox(),
                                   merchant_no=settings.merchant_no, app_secret=settings.app_secret,
                                   time_factor=args.time_factor)

    def _stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    print(f"sandbox gateway (TCP_NODELAY) listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
