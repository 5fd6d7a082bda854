"""`zaoshu ui` in a real browser: Debian's chromium, driven headless by playwright, against the app served
by uvicorn on 127.0.0.1. Data: a run folder made here over the loopback fake server. Chat: the tiny
Qwen2 model built locally. Screenshots of each page go to the test's temp folder."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

import test_review  # noqa: E402
from test_review import WISHES, read_jsonl  # noqa: E402

from zaoshu.cli import app as cli  # noqa: E402
from zaoshu.errors import ZaoshuError  # noqa: E402
from zaoshu.recipes import load_recipe  # noqa: E402
from zaoshu.ui.models import ChatModel, check_model_dir  # noqa: E402

CHROMIUM = os.environ.get("ZAOSHU_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason="chromium not installed (.ci/run installs it)"
)


def make_run(out: Path, n: int = 60) -> Path:
    """`zaoshu run` in a thread: playwright's sync API keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(test_review.make_run, out, n).result()


@contextmanager
def serve(source: Path | None, **kwargs) -> Iterator[str]:
    """The ui app on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    from zaoshu.ui.app import create_app
    from zaoshu.ui.recipe import find_ui_recipe

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recipe = kwargs.pop("recipe", None) or find_ui_recipe(source, None)
    config = uvicorn.Config(create_app(source, recipe=recipe, **kwargs), host="127.0.0.1", port=port,
                            log_level="warning")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the ui server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def test_browse_filter_review_and_clean_honours_it(tmp_path, page):
    run = make_run(tmp_path / "run")
    shots = tmp_path / "shots"
    with serve(run) as url:
        page.goto(url + "/")
        assert page.locator("#heatmap").is_visible()
        page.screenshot(path=shots / "overview.png", full_page=True)

        # a reject reason from the overview: the table shows only that reason
        link = page.locator("#reasons a").first
        reason = link.inner_text()
        link.click()
        page.wait_for_url("**/records?*")
        rows = page.locator("#records tr.row")
        assert rows.count() > 0
        assert set(page.locator("#records tr.row td:nth-child(2)").all_inner_texts()) == {reason}
        page.screenshot(path=shots / "records.png", full_page=True)

        # open a rejected record and accept it
        rows.first.locator("a.open").click()
        page.wait_for_url("**/record/*")
        assert reason in page.locator("#reject").inner_text()
        assert page.locator("#prompt").is_visible()  # the generation prompt from meta.prompt
        page.screenshot(path=shots / "record.png", full_page=True)
        accepted = page.url.split("/record/")[1].split("?")[0]
        page.fill("textarea[name=note]", "fine as it is")
        page.click("#do-accept")
        page.wait_for_selector("#saved")
        assert page.locator("#status").inner_text() == "kept"
        page.click("text=back to the table")  # back to the same filtered table
        page.wait_for_url(f"**reason={reason}*")

        # a kept record: filter by status and a recipient, open one, reject it with a note
        page.goto(url + "/records?status=kept")
        page.locator("#records tr.row a.open").first.click()
        page.wait_for_url("**/record/*")
        rejected = page.url.split("/record/")[1].split("?")[0]
        page.fill("textarea[name=note]", "reads like an ad")
        page.fill("input[name=who]", "ann")
        page.click("#do-reject")
        page.wait_for_selector("#saved")
        assert page.locator("#status").inner_text() == "rejected"
        page.screenshot(path=shots / "reviewed.png", full_page=True)
        page.goto(url + "/records?status=reviewed")
        assert page.locator("#records tr.row").count() == 2

        # a duplicate (exact or near: which one the fake replies give depends on the rules before dedup)
        # shows the record it duplicates beside it
        dedup = {r["reject"]["reason"] for r in read_jsonl(run / "clean.rejects.jsonl")}
        dedup &= {"duplicate", "near_duplicate"}
        assert dedup, "the run made no duplicate to look at"
        page.goto(url + f"/records?reason={sorted(dedup)[0]}")
        page.locator("#records tr.row a.open").first.click()
        page.wait_for_url("**/record/*")
        assert page.locator("#dup .msg.assistant").is_visible()
        page.screenshot(path=shots / "duplicate.png", full_page=True)

        # the heatmap's cells link to the filtered table
        page.goto(url + "/")
        cell = page.locator("#heatmap td a").filter(has_text="1").first
        cell.click()
        page.wait_for_url("**/records?*")
        assert page.locator("#records tr.row").count() >= 1

    decisions = read_jsonl(run / "review.jsonl")
    assert [(d["id"], d["action"], d["note"]) for d in decisions] == [
        (accepted, "accept", "fine as it is"),
        (rejected, "reject", "reads like an ad"),
    ]
    assert decisions[1]["who"] == "ann" and decisions[0]["who"] and decisions[0]["at"].endswith("Z")

    # `zaoshu clean` over the run's raw file picks the run folder's review.jsonl up by itself
    result = CliRunner().invoke(
        cli, ["clean", str(run / "raw.jsonl"), "-o", str(run / "clean.jsonl"), "--recipe", str(WISHES)]
    )
    assert result.exit_code == 0, result.output
    kept = {r["id"] for r in read_jsonl(run / "clean.jsonl")}
    rejects = {r["id"]: r["reject"] for r in read_jsonl(run / "clean.rejects.jsonl")}
    assert accepted in kept and rejected not in kept
    assert rejects[rejected]["reason"] == "review" and rejects[rejected]["detail"] == "reads like an ad"


def test_two_reviewers_at_once_lose_no_decision(tmp_path, browser):
    run = make_run(tmp_path / "run", n=30)
    keys = [r["id"] for r in read_jsonl(run / "clean.jsonl")][:2]
    with serve(run) as url:
        pages = [browser.new_context().new_page() for _ in keys]
        for p, key, who in zip(pages, keys, ("ann", "bob"), strict=True):
            p.goto(f"{url}/record/{key}")
            p.fill("input[name=who]", who)
            p.fill("textarea[name=note]", f"{who} says no")
        for p in pages:  # both submitted before either waits
            p.evaluate("document.getElementById('do-reject').click()")
        for p in pages:
            p.wait_for_selector("#saved")
            p.context.close()
    decisions = read_jsonl(run / "review.jsonl")
    assert sorted((d["id"], d["who"]) for d in decisions) == sorted(zip(keys, ("ann", "bob"), strict=True))


def test_a_folder_without_records_says_so(tmp_path, page):
    empty = tmp_path / "empty"
    empty.mkdir()
    with serve(empty) as url:
        response = page.goto(url + "/")
        assert response.status == 404
        assert "no record files" in page.locator("#message").inner_text()
        page.screenshot(path=tmp_path / "no-records.png")
        assert page.goto(url + "/chat").status == 200  # the rest of the app still works


def test_a_torn_line_is_shown_and_the_rest_is_browsable(tmp_path, page):
    run = make_run(tmp_path / "run", n=30)
    data = tmp_path / "data.jsonl"
    lines = (run / "clean.jsonl").read_bytes().splitlines(keepends=True)
    data.write_bytes(b"".join(lines[:5]) + b'{"id": "x", "messages": [{"ro\n' + b"".join(lines[5:]))
    with serve(data) as url:
        page.goto(url + "/")
        assert "1 line(s) could not be read" in page.locator("#torn").inner_text()
        page.goto(url + "/records?status=torn")
        assert "line 6" in page.locator("#records").inner_text()
        page.screenshot(path=tmp_path / "torn.png", full_page=True)
        page.goto(url + "/records?status=kept")
        assert page.locator("#records tr.row").count() == len(lines)
        page.locator("#records tr.row a.open").nth(7).click()
        page.wait_for_url("**/record/*")
        assert page.locator(".msg.assistant").count() == 1


def test_model_checks_name_the_problem(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(ZaoshuError, match=r"no config\.json"):
        check_model_dir(folder)
    (folder / "config.json").write_text('{"torch_dtype": "bfloat16"}')
    with pytest.raises(ZaoshuError, match="has no weights"):
        check_model_dir(folder)
    with open(folder / "model.safetensors", "wb") as f:  # sparse: 64 GiB on paper, nothing on disk
        f.truncate(64 << 30)
    with pytest.raises(ZaoshuError, match=r"too big for this machine: it needs about 153\.6 GiB"):
        check_model_dir(folder, memory=24 << 30)


@pytest.mark.train
def test_chat_streams_an_answer_side_by_side_and_survives_a_bad_model(tmp_path, page, tiny):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    (empty / "config.json").write_bytes(orjson.dumps({"model_type": "qwen2"}))
    big = tmp_path / "too-big"
    shutil.copytree(tiny, big)
    with open(big / "model.safetensors", "r+b") as f:
        f.truncate(4 << 40)  # 4 TiB (sparse): more than any test machine has
    models = [
        ChatModel("tiny", path=tiny, max_new_tokens=12),
        ChatModel("no-weights", path=empty),
        ChatModel("too-big", path=big),
    ]
    with serve(None, models=models, recipe=load_recipe(WISHES)) as url:
        page.goto(url + "/chat")
        assert "送祝福大师" in page.input_value("#system")  # the recipe's system prompt
        page.check(".pick[value='1']")
        page.check(".pick[value='2']")
        page.locator(".eval").first.click()  # an eval input as a one-click prompt
        tiny_pane, bad_pane, big_pane = (page.locator(f".pane[data-i='{i}']") for i in range(3))
        bad_pane.locator(".error").wait_for(timeout=30_000)
        assert "has no weights" in bad_pane.locator(".error").inner_text()
        big_pane.locator(".error").wait_for(timeout=30_000)
        assert "too big for this machine" in big_pane.locator(".error").inner_text()
        tiny_pane.locator(".msg.assistant.done").wait_for(timeout=120_000)
        first = tiny_pane.locator(".msg.assistant").inner_text()
        assert first.strip() and first != "…"
        page.screenshot(path=tmp_path / "chat.png", full_page=True)
        # the server kept running: a second turn in the same conversation is answered
        page.uncheck(".pick[value='1']")
        page.uncheck(".pick[value='2']")
        page.fill("#input", "祝妹妹生日快乐")
        page.click("#send")
        page.wait_for_function("document.querySelectorAll('.pane[data-i=\"0\"] .msg.assistant.done').length == 2",
                               timeout=120_000)  # fmt: skip
        assert tiny_pane.locator(".msg.user").count() == 2

        # the answer comes as a stream of pieces, not in one piece at the end
        import httpx

        models[0].max_new_tokens = 40
        ask = {
            "system": "",
            "temperature": 0,
            "messages": [{"role": "user", "content": "祝姐姐生日快乐 hello"}],
        }
        with httpx.stream("POST", url + "/api/chat/0", json=ask, timeout=120) as r:
            assert r.status_code == 200
            pieces = list(r.iter_text())
        assert len(pieces) >= 2 and "".join(pieces)  # greedy on random weights may well be blanks


def test_filters_by_judge_score_axis_and_text(tmp_path):
    from zaoshu.ui.data import DataStore, Query

    path = tmp_path / "judged.jsonl"
    rows = [
        {"id": f"r{i}", "axes": {"recipient": "姐姐" if i % 2 else "妹妹", "style": "正常"},
         "messages": [{"role": "user", "content": f"第{i}条"}, {"role": "assistant", "content": f"Wish {i}"}],
         "meta": {"judge": {"score": i, "verdict": "ok"}}}
        for i in range(1, 11)
    ]  # fmt: skip
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    store = DataStore(path)

    def ids(**params: str) -> list[str]:
        return store.filtered(Query.parse(params))["key"].to_list()

    assert ids(score_min="4", score_max="6") == ["r4", "r5", "r6"]
    assert ids(a_recipient="姐姐", score_min="8") == ["r9"]
    assert ids(q="wish 10") == ["r10"]
    assert ids(q="r3") == ["r3"]  # an id
    assert ids(a_nosuchaxis="x") == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("host", "warns"), [("127.0.0.1", False), ("127.0.0.2", True)])
def test_the_command_serves_and_warns_off_localhost(tmp_path, host, warns):
    import subprocess
    import sys
    import urllib.request

    run = make_run(tmp_path / "run", n=20)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cmd = [sys.executable, "-c", "from zaoshu.cli import main; main()", "ui", str(run), "--host", host,
           "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/records?status=kept", timeout=5) as r:
                    body = r.read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "zaoshu ui did not answer"
                time.sleep(0.2)
        assert 'class="row"' in body
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert ("warning: listening on 127.0.0.2" in err.decode()) is warns


def test_chat_with_an_api_model(tmp_path, page):
    from zaoshu.testing.fakeserver import FakeServer

    with FakeServer(reply="wishes") as srv:
        models = [ChatModel("api", provider="local:fake-model", base_url=srv.base_url)]
        with serve(None, models=models) as url:
            page.goto(url + "/")  # no data: the app opens on the chat
            page.wait_for_url("**/chat")
            page.fill("#input", "祝姐姐生日快乐")
            page.click("#send")
            answer = page.locator(".pane[data-i='0'] .msg.assistant.done")
            answer.wait_for(timeout=30_000)
            assert answer.inner_text().strip() not in ("", "…")
            page.screenshot(path=tmp_path / "chat-api.png")
        assert srv.stats().get("requests", 0) >= 1
