"""The fake OpenAI-compatible server the generator tests rely on: its faults are real and reproducible."""

from __future__ import annotations

import collections
import http.client
import urllib.error
import urllib.request

import orjson
import pytest

from zaoshu.testing import FakeServer
from zaoshu.testing.fakeserver import choose_fault, wish

PROMPT = "正常风格。对象称谓是：{who}，祝福场景是：{scene}。请直接返回祝福文本："


def post(url: str, body: dict, key: str | None = None) -> tuple[int, dict, bytes]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=orjson.dumps(body), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def chat(prompt: str, model: str = "m") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": prompt}]}


def test_fault_choice_is_deterministic_and_follows_the_rates():
    faults = {"server_error": 0.2, "rate_limit": 0.1}
    picks = [choose_fault(faults, f"p{i}", 1, 0) for i in range(5000)]
    assert picks == [choose_fault(faults, f"p{i}", 1, 0) for i in range(5000)]
    counts = collections.Counter(picks)
    assert 900 < counts["server_error"] < 1100 and 400 < counts["rate_limit"] < 600
    # the next attempt of the same prompt draws again, so a retry can succeed
    assert sum(choose_fault(faults, "p", n, 0) is None for n in range(1, 201)) > 110


def test_wishes_replies_name_recipient_and_scene_and_carry_some_junk():
    replies = [wish(PROMPT.format(who=f"姐姐{i}", scene="生日")) for i in range(400)]
    assert replies == [wish(PROMPT.format(who=f"姐姐{i}", scene="生日")) for i in range(400)]
    named = [r for i, r in enumerate(replies) if f"姐姐{i}" in r]
    assert len(named) > 250 and all("生日" in r for r in replies)
    assert any(r.startswith("！啦~") for r in replies)
    assert any(r.startswith("好的，以下是祝福语") for r in replies)
    assert any(r[0] in '“"' for r in replies)
    assert any("\n" in r for r in replies)
    dupes = collections.Counter(replies)
    assert dupes.most_common(1)[0][1] > 10  # exact duplicates across recipients
    serious = [wish(f"商业严肃风格 对象称谓是：老板{i}，祝福场景是：春节。") for i in range(50)]
    assert sum(r.startswith(f"尊敬的老板{i}") for i, r in enumerate(serious)) > 20


def test_server_faults_over_http():
    with FakeServer(api_key="good", models=["m"], rpm=60, burst=2, retry_after=0.5) as srv:
        url = srv.base_url + "/chat/completions"
        status, _, body = post(url, chat("你好"), key="bad-key-123")
        assert status == 401 and b"bad-key-123" in body  # it echoes the key, like some real servers
        status, _, body = post(url, chat("你好", model="other"), key="good")
        assert status == 404
        assert post(url, chat("一"), key="good")[0] == 200
        assert post(url, chat("二"), key="good")[0] == 200
        status, headers, _ = post(url, chat("三"), key="good")  # the bucket (2) is empty
        assert status == 429 and int(headers["retry-after-ms"]) > 0 and int(headers["Retry-After"]) >= 1
        stats = srv.stats()
        assert stats["requests"] == 5 and stats["429"] == 1 and stats["401"] == 1
        srv.configure(faults={"reset": 1.0}, api_key=None, rpm=None)
        with pytest.raises((http.client.RemoteDisconnected, urllib.error.URLError, ConnectionError)):
            post(url, chat("四"))
        srv.configure(faults={"empty_choices": 1.0}, record=True)
        status, _, body = post(srv.root + "/api/paas/v4/chat/completions", chat("五"))  # zhipuai's path
        assert status == 200 and orjson.loads(body)["choices"] == []
        assert srv.requests() == [chat("五")]
        srv.configure(faults={"malformed": 1.0})
        status, _, body = post(url, chat("六"))
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(body)
        srv.configure(faults={"content_filter": 1.0})
        assert orjson.loads(post(url, chat("七"))[2])["choices"][0]["finish_reason"] == "content_filter"
