"""Keys and URL credentials never show, whatever a server answers; refused keys and accounts stop the run.

A tiny stdlib HTTP server on 127.0.0.1 plays the provider: it answers every request with one configured
status and a body that echoes what a careless real server would (the key, the full request URL).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from generate_helpers import local_options, read_jsonl, write_recipe

from zaoshu.errors import AuthError, ZaoshuError
from zaoshu.generator.engine import GenerateOptions, generate, side_paths
from zaoshu.generator.providers import api_url, safe_url, url_secrets

SECRET = "sk-echoed-SECRET-0123456789abcdef"
URL_PASSWORD = "pw-URL-SECRET-42"
URL_TOKEN = "q-URL-SECRET-77"


class EchoServer:
    """Answers every POST with `status` and `{"error": {"message": ...}}` naming the key and the URL it got."""

    def __init__(self) -> None:
        self.status = 200
        self.seen: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = self.headers.get("Authorization", "")
                outer.seen.append({"path": self.path, "auth": auth})
                message = f"Incorrect API key provided: {auth[7:]} (request {self.path}, {auth})"
                body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error"}})
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> EchoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer() as srv:
        yield srv


def free_port() -> int:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_nowhere(secrets: list[str], folder: Path, *texts: str) -> None:
    for secret in secrets:
        for text in texts:
            assert secret not in text
        for path in folder.iterdir():
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_error_in_a_200_body_never_shows_the_key(echo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEEPSEEK_API_KEY", SECRET)
    out = tmp_path / "raw.jsonl"
    options = local_options(echo.base_url, provider="deepseek", max_attempts=2, quiet=False, concurrency=4)
    stats = generate(write_recipe(tmp_path, n_a=2, n_b=3), out, options)
    assert stats.failed == 6 and stats.done == 0 and len(echo.seen) == 12  # BadReply is retried, then fails
    failures = read_jsonl(side_paths(out)[0])
    assert len(failures) == 6
    for f in failures:
        assert f["error_class"] == "BadReply" and f["message"].startswith("error in a 200 body: ")
        assert "Incorrect API key provided: ***" in f["message"]
    captured = capsys.readouterr()
    assert_nowhere([SECRET], tmp_path, captured.out, captured.err)


@pytest.mark.parametrize(
    ("status", "what"), [(401, "the API key"), (402, "the account (no balance?)"), (403, "the API key")]
)
def test_refused_key_or_account_stops_at_once_and_never_shows_the_key(
    echo, tmp_path, monkeypatch, capsys, status, what
):
    echo.status = status
    monkeypatch.setenv("DEEPSEEK_API_KEY", SECRET)
    out = tmp_path / "raw.jsonl"
    options = local_options(echo.base_url, provider="deepseek", concurrency=4, quiet=False, max_attempts=8)
    with pytest.raises(AuthError) as info:
        generate(write_recipe(tmp_path), out, options)  # 500 tasks
    message = str(info.value)
    assert f"refused {what} from $DEEPSEEK_API_KEY" in message and f"HTTP {status}" in message
    assert "***" in message  # the echoed key was there, masked
    assert info.value.exit_code == 3
    assert len(echo.seen) <= 4  # the first wave only: no retries, no further tasks
    assert all(s["auth"] == "Bearer " + SECRET for s in echo.seen)  # the key was really sent
    assert read_jsonl(out) == [] and read_jsonl(side_paths(out)[0]) == []
    captured = capsys.readouterr()
    assert_nowhere([SECRET], tmp_path, message, captured.out, captured.err)


BASE_WITH_CREDENTIALS = "http://gateway:{pw}@127.0.0.1:{port}/v1?api-version=2024-06&api_key={token}"


def credentialed(port: int) -> str:
    return BASE_WITH_CREDENTIALS.format(pw=URL_PASSWORD, port=port, token=URL_TOKEN)


def test_safe_url_masks_userinfo_and_secret_query_values():
    assert safe_url("https://user:secret@host/v1") == "https://***@host/v1"
    assert safe_url("https://tok3n@host/v1") == "https://***@host/v1"
    assert safe_url("https://h/v1?key=abc&api_key=def&x=1") == "https://h/v1?key=***&api_key=***&x=1"
    assert safe_url("https://h/v1?api-version=2024&access_token=t&sig=s") == (
        "https://h/v1?api-version=2024&access_token=***&sig=***"
    )
    assert safe_url("https://api.deepseek.com/v1") == "https://api.deepseek.com/v1"  # nothing to hide
    text = "cannot connect to http://u:p@127.0.0.1:9/v1/chat/completions?apikey=K (refused)"
    assert (
        safe_url(text) == "cannot connect to http://***@127.0.0.1:9/v1/chat/completions?apikey=*** (refused)"
    )
    assert safe_url(safe_url(text)) == safe_url(text)
    secrets = url_secrets(credentialed(1))
    assert URL_PASSWORD in secrets and URL_TOKEN in secrets and "2024-06" not in secrets
    assert api_url("http://h/v1/?key=K", "chat/completions") == "http://h/v1/chat/completions?key=K"


def test_base_url_credentials_stay_out_of_failures_and_output(echo, tmp_path, capsys):
    echo.status = 400  # the server echoes the request line, query string included, in every error
    out = tmp_path / "raw.jsonl"
    options = local_options(credentialed(echo.port), quiet=False, concurrency=2)
    stats = generate(write_recipe(tmp_path, n_a=2, n_b=2), out, options)
    assert stats.failed == 4
    # The query string stays on the URL (after the path), and the password goes as basic auth.
    assert {s["path"] for s in echo.seen} == {f"/v1/chat/completions?api-version=2024-06&api_key={URL_TOKEN}"}
    assert all(s["auth"].startswith("Basic ") for s in echo.seen)
    messages = [f["message"] for f in read_jsonl(side_paths(out)[0])]
    assert all("api_key=***" in m and "api-version=2024-06" in m for m in messages)
    captured = capsys.readouterr()
    assert_nowhere([URL_PASSWORD, URL_TOKEN], tmp_path, captured.out, captured.err)


def test_base_url_credentials_stay_out_of_dry_run_and_connection_errors(tmp_path, capsys):
    port = free_port()
    recipe = write_recipe(tmp_path, n_a=2, n_b=2)
    dry = GenerateOptions(provider="local", base_url=credentialed(port), dry_run=True)
    generate(recipe, tmp_path / "dry.jsonl", dry)
    shown = capsys.readouterr().out
    assert f"to http://***@127.0.0.1:{port}/v1/chat/completions?api-version=2024-06&api_key=***," in shown

    with pytest.raises(ZaoshuError) as unreachable:
        generate(recipe, tmp_path / "raw.jsonl", local_options(credentialed(port), max_attempts=8))
    assert f"cannot connect to http://***@127.0.0.1:{port}/v1/chat/completions" in str(unreachable.value)

    with pytest.raises(ZaoshuError) as listing:  # no --model: the local provider asks GET /models first
        generate(recipe, tmp_path / "raw.jsonl", local_options(credentialed(port), model=None))
    assert f"could not list the models of http://***@127.0.0.1:{port}/v1/models" in str(listing.value)

    captured = capsys.readouterr()
    texts = [shown, str(unreachable.value), str(listing.value), captured.out, captured.err]
    assert_nowhere([URL_PASSWORD, URL_TOKEN], tmp_path, *texts)
