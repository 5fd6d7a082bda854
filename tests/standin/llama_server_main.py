"""A stand-in for `python -m llama_cpp.server`: the same flags, a tiny OpenAI-compatible server, and a way to fail.

Copied by the tests to `<dir>/llama_cpp/server/__main__.py` and put first on PYTHONPATH, so zaoshu starts it
exactly as it starts the real one. STANDIN_MODE says how it fails, STANDIN_ANSWERS how many chat requests it
answers before that:
- `segv`: the next chat request kills it with SIGSEGV (what a CPU-specific llama.cpp build did);
- `hang`: the next chat request never gets an answer (the process stays alive);
- `segv-at-start`: it dies before it listens.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--model_alias", default="standin")
parser.add_argument("--n_threads", default="?")
args, _ = parser.parse_known_args()
mode = os.environ.get("STANDIN_MODE", "segv")
answers = int(os.environ.get("STANDIN_ANSWERS", "0"))

print(f"standin: n_threads {args.n_threads}", flush=True)
print("system_info: n_threads = 1 | CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 |", flush=True)


def segfault() -> None:
    """A real SIGSEGV in this thread (a signal sent with kill would let this thread run on for a moment)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left in the working directory
    ctypes.string_at(0)


if mode == "segv-at-start":
    print("standin: crashing while loading the model", flush=True)
    segfault()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a: object) -> None:
        pass

    def reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.reply({"object": "list", "data": [{"id": args.model_alias, "object": "model"}]})

    def do_POST(self) -> None:
        global answers
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if answers <= 0:
            print("standin: decode failed in ggml-cpu, giving up", flush=True)
            if mode == "hang":
                time.sleep(3600)
            segfault()
        answers -= 1
        self.reply(
            {
                "id": "chatcmpl-standin",
                "object": "chat.completion",
                "model": args.model_alias,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "祝您生日快乐，万事如意！"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112},
            }
        )


ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
