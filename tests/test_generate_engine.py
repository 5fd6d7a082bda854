"""The generator's Python API against the fake OpenAI-compatible server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import collections

import orjson
import pytest
from generate_helpers import ALL_FAULTS, local_options, planned_ids, read_jsonl, write_recipe

from zaoshu.errors import ZaoshuError
from zaoshu.generator.engine import GenerateOptions, generate, side_paths
from zaoshu.generator.plan import plan
from zaoshu.recipes import load_recipe
from zaoshu.records import repair_tail
from zaoshu.testing import FakeServer


@pytest.fixture(scope="module")
def server():
    with FakeServer(reply="wishes") as srv:
        yield srv


def configure(server: FakeServer, **settings) -> FakeServer:
    base = {
        "latency": 0.0,
        "rpm": None,
        "burst": None,
        "faults": {},
        "retry_after": 0.02,
        "hang_s": 30.0,
        "reply": "wishes",
        "api_key": None,
        "models": None,
        "record": False,
        "seed": 0,
    }
    server.configure(**{**base, **settings})
    return server


def test_mixed_faults_every_id_once_in_output_or_failures(server, tmp_path):
    configure(server, faults=ALL_FAULTS, hang_s=5.0)
    recipe = write_recipe(tmp_path)  # 500 tasks
    out = tmp_path / "raw.jsonl"
    stats = generate(recipe, out, local_options(server.base_url, timeout=0.5, max_attempts=4))
    ids = planned_ids(recipe)
    assert len(ids) == 500
    records, failures = read_jsonl(out), read_jsonl(side_paths(out)[0])
    got = [r["id"] for r in records] + [f["id"] for f in failures]
    assert sorted(got) == sorted(ids)  # each planned id exactly once, nothing silently skipped
    assert stats.done == len(records) and stats.failed == len(failures)
    assert failures, "with these fault rates some tasks must fail for good"
    reasons = collections.Counter(f["reason"] for f in failures)
    assert set(reasons) <= {"bad_request", "content_filter", "rate_limited", "server_error", "timeout"} | {
        "connection",
        "bad_reply",
    }
    for f in failures:
        assert f["error_class"] and f["message"] and f["attempts"] >= 1
        if f["reason"] in ("bad_request", "content_filter"):
            assert f["attempts"] <= 4  # the answer that ended it was not retried
        else:
            assert f["attempts"] == 4  # retryable: it used every attempt
    srv = server.stats()
    assert stats.attempts == srv["requests"]  # every attempt counted, retries included
    assert stats.retries == srv["requests"] - 500
    assert stats.rate_limited == srv.get("429", 0)
    assert (
        sum(r["meta"]["attempts"] for r in records) + sum(f["attempts"] for f in failures) == srv["requests"]
    )
    saved = orjson.loads(side_paths(out)[1].read_bytes())
    assert saved["done"] == stats.done and saved["failed"] == stats.failed and saved["tasks"] == 500


def test_record_format(server, tmp_path):
    configure(server)
    recipe_path = write_recipe(tmp_path, n_a=3, n_b=4)
    out = tmp_path / "raw.jsonl"
    generate(recipe_path, out, local_options(server.base_url))
    tasks = {t.id: t for t in plan(load_recipe(recipe_path)).tasks}
    raw = out.read_bytes()
    assert b"\\u" not in raw and "朋友".encode() in raw  # UTF-8, Chinese unescaped
    records = read_jsonl(out)
    assert len(records) == 12
    for r in records:
        assert set(r) == {"id", "recipe", "axes", "messages", "meta"}
        task = tasks[r["id"]]
        assert r["recipe"] == "mini" and r["axes"] == {**task.axes}
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
        assert r["messages"][0]["content"] == "你是送祝福大师"
        user = r["messages"][1]["content"]
        assert user == f"祝{task.axes['who']}{task.axes['scene']}"  # the human-like turn, not the prompt
        assert user != task.prompt and "对象称谓" not in user
        assert r["messages"][2]["content"]
        meta = r["meta"]
        assert set(meta) >= {
            "prompt",
            "provider",
            "model",
            "usage",
            "latency_ms",
            "attempts",
            "finish_reason",
        }
        assert {"created_at"} <= set(meta)
        assert meta["prompt"] == task.prompt and meta["provider"] == "local" and meta["model"] == "fake-model"
        assert meta["usage"]["prompt_tokens"] > 0 and meta["usage"]["completion_tokens"] > 0
        assert meta["attempts"] == 1 and meta["finish_reason"] == "stop" and meta["latency_ms"] >= 0
        assert meta["created_at"].endswith("Z")


def test_sampling_parameters_are_sent_as_api_parameters(server, tmp_path):
    configure(server, record=True)
    generate(write_recipe(tmp_path, n_a=2, n_b=2), tmp_path / "raw.jsonl", local_options(server.base_url))
    bodies = server.requests()
    assert len(bodies) == 4
    for body in bodies:
        assert body["temperature"] == 0.3 and body["top_p"] == 0.9 and body["max_tokens"] == 77
        assert body["model"] == "fake-model"
        assert all(set(m) == {"role", "content"} for m in body["messages"])  # nothing smuggled into messages


def test_400_and_404_fail_without_retry(server, tmp_path):
    configure(server, faults={"bad_request": 1.0})
    out = tmp_path / "raw.jsonl"
    stats = generate(write_recipe(tmp_path, n_a=3, n_b=3), out, local_options(server.base_url))
    assert stats.failed == 9 and stats.retries == 0 and server.stats()["requests"] == 9
    failures = read_jsonl(side_paths(out)[0])
    assert {(f["status"], f["attempts"], f["error_class"]) for f in failures} == {(400, 1, "BadRequest")}

    configure(server, models=["real-model"])
    out2 = tmp_path / "raw2.jsonl"
    stats = generate(write_recipe(tmp_path, n_a=2, n_b=2), out2, local_options(server.base_url, model="nope"))
    assert stats.failed == 4 and server.stats()["requests"] == 4
    assert {f["status"] for f in read_jsonl(side_paths(out2)[0])} == {404}
    assert "nope" in read_jsonl(side_paths(out2)[0])[0]["message"]


def test_retryable_errors_are_retried_and_counted(server, tmp_path):
    configure(server, faults={"server_error": 0.3, "reset": 0.1, "malformed": 0.1, "empty_choices": 0.1})
    out = tmp_path / "raw.jsonl"
    stats = generate(
        write_recipe(tmp_path, n_a=10, n_b=10), out, local_options(server.base_url, max_attempts=10)
    )
    srv = server.stats()
    assert stats.done == 100 and stats.failed == 0
    assert stats.retries > 20 and stats.retries == srv["requests"] - 100
    assert max(r["meta"]["attempts"] for r in read_jsonl(out)) > 1


def test_max_attempts_ends_in_a_failure_with_its_reason(server, tmp_path):
    configure(server, faults={"server_error": 1.0})
    out = tmp_path / "raw.jsonl"
    stats = generate(
        write_recipe(tmp_path, n_a=2, n_b=2), out, local_options(server.base_url, max_attempts=3)
    )
    assert stats.failed == 4 and server.stats()["requests"] == 12
    failure = read_jsonl(side_paths(out)[0])[0]
    assert failure["error_class"] == "ServerError" and failure["attempts"] == 3 and failure["status"] == 500


def test_resume_retries_failures_and_rewrites_the_failures_file(server, tmp_path):
    recipe = write_recipe(tmp_path, n_a=10, n_b=10)
    out = tmp_path / "raw.jsonl"
    failures_path = side_paths(out)[0]
    configure(server, faults={"content_filter": 0.3})
    first = generate(recipe, out, local_options(server.base_url))
    assert first.failed > 0 and len(read_jsonl(failures_path)) == first.failed
    configure(server)  # the provider is healthy again
    second = generate(recipe, out, local_options(server.base_url))
    assert second.skipped_resume == first.done and second.done == first.failed and second.failed == 0
    assert server.stats()["requests"] == first.failed  # only the failures were sent again
    assert not failures_path.exists()  # nothing is left listed as failed
    ids = [r["id"] for r in read_jsonl(out)]
    assert sorted(ids) == sorted(planned_ids(recipe))
    third = generate(recipe, out, local_options(server.base_url))
    assert third.todo == 0 and server.stats()["requests"] == first.failed


def test_resume_cuts_a_torn_last_line(server, tmp_path, capsys):
    configure(server)
    recipe = write_recipe(tmp_path, n_a=5, n_b=4)
    out = tmp_path / "raw.jsonl"
    generate(recipe, out, local_options(server.base_url, limit=8))
    data = out.read_bytes()
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    out.write_bytes(data[: len(data) - len(last) - 1] + last[:40])  # a kill mid-write
    stats = generate(recipe, out, local_options(server.base_url, quiet=False))
    assert "torn last line" in capsys.readouterr().err
    ids = [r["id"] for r in read_jsonl(out)]
    assert len(ids) == len(set(ids)) == 20 and stats.skipped_resume == 7
    assert not repair_tail(out)


def test_missing_key_is_an_error_before_any_request(server, tmp_path, monkeypatch):
    configure(server)
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    options = GenerateOptions(provider="deepseek", base_url=server.base_url, quiet=True, handle_signals=False)
    with pytest.raises(ZaoshuError, match="DEEPSEEK_API_KEY"):
        generate(write_recipe(tmp_path, n_a=2, n_b=2), tmp_path / "raw.jsonl", options)
    assert server.stats().get("requests", 0) == 0
    assert not (tmp_path / "raw.jsonl").exists()


def test_unknown_provider_names_the_known_ones(tmp_path):
    with pytest.raises(ZaoshuError, match=r"deepseek.*zhipuai"):
        generate(write_recipe(tmp_path, n_a=1, n_b=1), tmp_path / "o.jsonl", GenerateOptions(provider="nope"))


def test_wrong_key_stops_the_run_and_never_shows_the_key(server, tmp_path, monkeypatch):
    secret = "sk-zaoshu-SECRET-0123456789abcdef"
    configure(server, api_key="sk-the-right-one")
    monkeypatch.setenv("DEEPSEEK_API_KEY", secret)
    out = tmp_path / "raw.jsonl"
    options = GenerateOptions(
        provider="deepseek", base_url=server.base_url, quiet=True, handle_signals=False, concurrency=4
    )
    with pytest.raises(ZaoshuError) as info:
        generate(write_recipe(tmp_path), out, options)
    message = str(info.value)
    assert "DEEPSEEK_API_KEY" in message and "401" in message and secret not in message
    assert server.stats()["requests"] <= 8  # stopped at once, not 500 refused requests
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), path


def test_zhipuai_provider_through_the_sdk(server, tmp_path, monkeypatch):
    configure(server, api_key="zhipu.key", faults={"server_error": 0.2, "rate_limit": 0.1}, record=True)
    monkeypatch.setenv("ZHIPUAI_API_KEY", "zhipu.key")
    out = tmp_path / "raw.jsonl"
    options = local_options(
        server.root + "/api/paas/v4", provider="zhipuai", model="glm-4-flash", concurrency=8
    )
    stats = generate(write_recipe(tmp_path, n_a=5, n_b=4), out, options)
    assert stats.done == 20 and stats.failed == 0 and stats.retries > 0
    records = read_jsonl(out)
    assert {r["meta"]["provider"] for r in records} == {"zhipuai"}
    assert {r["meta"]["model"] for r in records} == {"glm-4-flash"}
    assert all(b["temperature"] == 0.3 and b["max_tokens"] == 77 for b in server.requests())

    configure(server, api_key="zhipu.other")
    with pytest.raises(ZaoshuError, match="ZHIPUAI_API_KEY"):  # not from the cache: it must ask the server
        options = options.model_copy(update={"cache": False})
        generate(write_recipe(tmp_path, n_a=2, n_b=2), tmp_path / "raw2.jsonl", options)


def test_window_backs_off_under_an_unannounced_cap(server, tmp_path):
    # 1,200 requests/minute (20/s), told to nobody; 64 workers would storm it without the AIMD window.
    configure(server, rpm=1200, latency=0.05)
    out = tmp_path / "raw.jsonl"
    options = local_options(server.base_url, concurrency=64, backoff=0.2, backoff_max=2.0, max_attempts=20)
    stats = generate(write_recipe(tmp_path, n_a=10, n_b=12), out, options)
    srv = server.stats()
    assert stats.done == 120 and stats.failed == 0
    assert stats.window_min < 64
    # The first round trip meets the cap unannounced (64 sent at once); after that the pacer learns it. It
    # still probes upward between 429s (about two probes a second, each may draw one 429), and a busy machine
    # bunches sends: a couple of dozen 429s over the next seconds is that, a storm would be hundreds.
    after_warmup = sum(n429 for second, (_, n429) in srv["by_second"].items() if int(second) >= 1)
    assert after_warmup <= 24, srv


def test_rpm_flag_paces_requests(server, tmp_path):
    configure(server, rpm=600)  # the server would refuse more than 10/s; the client is told 540/min
    stats = generate(
        write_recipe(tmp_path, n_a=4, n_b=5), tmp_path / "raw.jsonl", local_options(server.base_url, rpm=540)
    )
    assert stats.done == 20 and server.stats().get("429", 0) == 0


def test_dry_run_sends_nothing(server, tmp_path, capsys, monkeypatch):
    configure(server)
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    out = tmp_path / "raw.jsonl"
    options = GenerateOptions(provider="deepseek", base_url=server.base_url, dry_run=True, show=2)
    stats = generate(write_recipe(tmp_path, n_a=3, n_b=3), out, options)
    text = capsys.readouterr().out
    assert stats.dry_run and stats.todo == 9 and stats.done == 0
    assert "would send 9 requests" in text and "DEEPSEEK_API_KEY NOT SET" in text
    assert '"temperature": 0.3' in text and "… and 7 more" in text
    assert server.stats().get("requests", 0) == 0 and not out.exists()


def test_shipped_wishes_recipe_with_limit(server, tmp_path, wishes_recipe_path):
    configure(server)
    out = tmp_path / "raw.jsonl"
    stats = generate(wishes_recipe_path, out, local_options(server.base_url, limit=30))
    records = read_jsonl(out)
    assert stats.done == 30 and len(records) == 30
    for r in records:
        user = r["messages"][1]["content"]
        assert user.startswith("祝" + r["axes"]["recipient"] + r["axes"]["scene"])
        assert "对象称谓是：" + r["axes"]["recipient"] in r["meta"]["prompt"]


def test_cost_uses_the_price_table_and_counts_failed_attempts(server, tmp_path):
    configure(server, faults={"content_filter": 0.3, "malformed": 0.2})
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  fake-model: {input: 1000, output: 2000, currency: CNY}\n", encoding="utf-8")
    out = tmp_path / "raw.jsonl"
    stats = generate(write_recipe(tmp_path, n_a=5, n_b=8), out, local_options(server.base_url, prices=prices))
    records = read_jsonl(out)
    kept_in = sum(r["meta"]["usage"]["prompt_tokens"] for r in records)
    assert stats.failed > 0 and stats.tokens_in > kept_in  # filtered replies were billed too
    assert stats.currency == "CNY"
    assert stats.cost == pytest.approx((stats.tokens_in * 1000 + stats.tokens_out * 2000) / 1e6, rel=1e-6)
    bad = tmp_path / "bad_prices.yaml"
    bad.write_text("models:\n  fake-model: {input: cheap}\n", encoding="utf-8")
    with pytest.raises(ZaoshuError, match=r"models\.fake-model"):
        generate(
            write_recipe(tmp_path, n_a=1, n_b=1),
            tmp_path / "x.jsonl",
            local_options(server.base_url, prices=bad),
        )


def test_local_provider_asks_the_server_for_its_model(server, tmp_path):
    configure(server, models=["qwen2.5-7b-instruct"], record=True)
    options = local_options(server.base_url, model=None)
    stats = generate(write_recipe(tmp_path, n_a=2, n_b=1), tmp_path / "raw.jsonl", options)
    assert stats.done == 2 and stats.model == "qwen2.5-7b-instruct"
    assert {b["model"] for b in server.requests()} == {"qwen2.5-7b-instruct"}


def test_tpm_flag_limits_tokens(server, tmp_path):
    configure(server)
    # ~40 prompt tokens + 77 max_tokens per request; 6,000 tokens/minute holds ~8 requests in its bucket,
    # so 12 requests cannot all go at once: the limiter makes some wait (the run still finishes).
    options = local_options(server.base_url, tpm=6000)
    stats = generate(write_recipe(tmp_path, n_a=3, n_b=4), tmp_path / "raw.jsonl", options)
    assert stats.done == 12 and stats.send_s > 1.0


def test_unreachable_server_is_a_clear_error_not_minutes_of_retries(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = local_options(f"http://127.0.0.1:{port}/v1", backoff=1.0, max_attempts=8)
    with pytest.raises(ZaoshuError, match=rf"cannot connect to http://127.0.0.1:{port}/v1.*--base-url"):
        generate(write_recipe(tmp_path), tmp_path / "raw.jsonl", options)
    assert read_jsonl(tmp_path / "raw.failures.jsonl") == []
