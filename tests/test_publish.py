"""publish: the Hugging Face dataset folder (parquet per split, the card), read back with `datasets`,
and the upload by the real `huggingface_hub` client against a loopback Hub that records the commit."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
import yaml
from typer.testing import CliRunner, Result

from zaoshu.cli import app
from zaoshu.errors import ZaoshuError
from zaoshu.formats import write
from zaoshu.formats.split import split
from zaoshu.publish import build, check_repo, publish, size_category

ROOT = Path(__file__).resolve().parent.parent
STYLES = ("小红书", "正常", "严肃")


def record(i: int) -> dict:
    style = STYLES[i % 3]
    messages = [
        {"role": "system", "content": "你现在是一个送祝福大师，帮我针对不同人和事情、节日送对应的祝福"},
        {"role": "user", "content": f"祝姐姐生日,{style}风格"},
        {"role": "assistant", "content": f"姐姐生日快乐，第{i}条"},
    ]
    if i % 5 == 0:  # a few multi-turn records with XTuner's loss flag
        messages[2]["loss"] = False
        messages += [{"role": "user", "content": "再来一条"}, {"role": "assistant", "content": "岁岁平安"}]
    return {
        "id": f"w{i:04d}",
        "recipe": "wishes",
        "axes": {"recipient": "姐姐", "scene": "生日", "style": style},
        "messages": messages,
        "meta": {"prompt": f"该祝福语字数小于 50 字 {i}", "model": "deepseek-chat"},
    }


@pytest.fixture
def split_dir(tmp_path) -> Path:
    """A cleaned file with the generator's stats and the cleaning report beside it, split 80/20."""
    data = tmp_path / "out"
    data.mkdir()
    write([record(i) for i in range(40)], data / "clean.jsonl", "zaoshu")
    (data / "raw.stats.json").write_text(
        json.dumps(
            {
                "tasks": 42,
                "done": 42,
                "failed": 0,
                "tokens_in": 8820,
                "tokens_out": 2016,
                "cost": 0.0031,
                "currency": "CNY",
                "provider": "deepseek",
                "model": "deepseek-chat",
                "output": "/home/alice/out/raw.jsonl",
            }
        ),
        encoding="utf-8",
    )
    (data / "clean.report").mkdir()
    (data / "clean.report" / "report.json").write_text(
        json.dumps(
            {
                "counts": {"read": 42, "kept": 40, "normalized": 3, "rejected": 2},
                "by_reason": {"too_long": 1, "near_duplicate": 1},
                "recipe": "wishes",
                "outputs": {"kept": "/home/alice/out/clean.jsonl"},
            }
        ),
        encoding="utf-8",
    )
    split(data / "clean.jsonl", data / "split", test=0.2, seed=0, stratify="style")
    return data / "split"


def records_from_rows(
    rows: list[dict], axes: tuple[str, ...] = ("recipient", "scene", "style")
) -> list[dict]:
    """Turn `datasets` rows back into zaoshu records (loss None = not set)."""
    out = []
    for row in rows:
        messages = [{k: v for k, v in m.items() if not (k == "loss" and v is None)} for m in row["messages"]]
        out.append(
            {
                "id": row["id"],
                "recipe": row["recipe"],
                "axes": {a: row[a] for a in axes},
                "messages": messages,
                "meta": json.loads(row["meta"]),
            }
        )
    return out


def card_header(readme: Path) -> dict:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_published_folder_loads_back_with_datasets(tmp_path, split_dir, monkeypatch):
    # huggingface_hub and datasets read HF_*_OFFLINE once, at import: set their constants for this test
    # alone, so its offline mode does not outlive it and change later tests.
    hub = pytest.importorskip("huggingface_hub.constants")
    config = pytest.importorskip("datasets.config")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(config, "HF_DATASETS_OFFLINE", True)
    out = tmp_path / "hub"
    result = publish(split_dir, "alice/wishes-zh", out=out)
    assert sorted(name for name, _ in result.files) == [
        "README.md",
        "data/test-00000-of-00001.parquet",
        "data/train-00000-of-00001.parquet",
    ]
    header = card_header(out / "README.md")
    assert header["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "data/train-*"},
                {"split": "test", "path": "data/test-*"},
            ],
        }
    ]
    assert header["license"] == "other" and header["language"] == ["zh"]
    assert header["task_categories"] == ["text-generation"] and header["size_categories"] == ["n<1K"]

    import datasets

    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert set(ds) == {"train", "test"}
    assert ds["train"].column_names == ["id", "recipe", "recipient", "scene", "style", "messages", "meta"]
    # messages are a list of structs, not a JSON string
    assert ds["train"].features["messages"].feature["content"].dtype == "string"
    for name in ("train", "test"):
        expected = [
            json.loads(line) for line in (split_dir / f"{name}.jsonl").read_text("utf-8").splitlines()
        ]
        assert records_from_rows(list(ds[name])) == expected
    assert {r["style"] for r in ds["test"]} == set(STYLES)


def test_card_body_comes_from_recipe_stats_and_report(tmp_path, split_dir):
    result = build(split_dir, "alice/wishes-zh", tmp_path / "hub")
    text = (result.folder / "README.md").read_text(encoding="utf-8")
    # the recipe, found from the records' recipe name in prompts/
    assert "### Recipe `wishes`" in text
    assert "| recipient | 28: 赵老师、大舅" in text
    assert "| 小红书 | 小红书风格，每条加入1-2个emoji表情包来增加趣味性。 | ≤ 50 chars |" in text
    assert "该祝福语字数小于 {{ max_chars }} 字。" in text  # the generation prompt
    # generation stats from raw.stats.json: model, tokens, cost
    assert "model `deepseek-chat`" in text and "tokens_out 2,016" in text and "cost 0.0031 CNY" in text
    assert "/home/alice" not in text  # local paths stay off a public card
    # the cleaning report's counts
    assert "| counts.kept | 40 |" in text and "| too_long | 1 |" in text and "| near_duplicate | 1 |" in text
    assert 'load_dataset("alice/wishes-zh")' in text
    # an explicit --recipe wins; a missing one is an error
    other = build(
        split_dir, "alice/w2", tmp_path / "hub2", recipe=ROOT / "prompts" / "wishes.yaml", license="cc-by-4.0"
    )
    assert card_header(other.folder / "README.md")["license"] == "cc-by-4.0"
    with pytest.raises(ZaoshuError, match="--recipe: file not found"):
        build(split_dir, "alice/w3", tmp_path / "hub3", recipe=tmp_path / "nope.yaml")
    assert not (tmp_path / "hub3").exists()  # checked before any work
    # a recipe found by name that does not load is described as such, not fatal
    prompts = split_dir.parent / "prompts"
    prompts.mkdir()
    (prompts / "wishes.yaml").write_text("name: wishes\naxes: {}\n", encoding="utf-8")
    broken = build(split_dir, "alice/w4", tmp_path / "hub4")
    assert "wishes.yaml was found but does not load" in (broken.folder / "README.md").read_text("utf-8")


def test_single_file_publishes_as_train_and_foreign_formats_work(tmp_path):
    src = tmp_path / "alpaca.json"
    src.write_text(
        json.dumps([{"instruction": "hello", "input": "", "output": "hi there"}] * 3), encoding="utf-8"
    )
    result = build(src, "bob/tiny", tmp_path / "hub")
    assert result.counts == {"train": 3}
    header = card_header(result.folder / "README.md")
    assert header["language"] == ["en"]
    assert "recipe was not found" in (result.folder / "README.md").read_text("utf-8")


def test_size_categories_follow_the_hub_buckets():
    assert [size_category(n) for n in (0, 999, 1000, 54_000, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]


@pytest.mark.parametrize("repo", ["wishes", "/wishes", "alice/", "alice/wi shes", "a/b/c", "alice/x--y"])
def test_repo_without_owner_or_malformed_is_refused(repo):
    with pytest.raises(ZaoshuError, match="OWNER/NAME"):
        check_repo(repo)


# ---------------------------------------------------------------- upload over loopback


class FakeHub(ThreadingHTTPServer):
    """Just enough of the Hub's HTTP API for HfApi.create_repo + upload_folder, recording everything."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.calls: list[tuple[str, str, str | None]] = []  # method, path, authorization
        self.created: list[dict] = []
        self.lfs: dict[str, bytes] = {}
        self.commits: list[list[dict]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class HubHandler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        self.server.calls.append(("PUT", self.path, self.headers.get("Authorization")))
        body = self._body()
        oid = self.path.rsplit("/", 1)[-1]
        self.server.lfs[oid] = body
        self._reply(200, {})

    def do_POST(self) -> None:
        self.server.calls.append(("POST", self.path, self.headers.get("Authorization")))
        body = self._body()
        path = self.path.split("?")[0]
        base = self.server.url
        if path == "/api/repos/create":
            payload = json.loads(body)
            self.server.created.append(payload)
            return self._reply(200, {"url": f"{base}/datasets/{payload['organization']}/{payload['name']}"})
        if path == "/api/validate-yaml":
            return self._reply(200, {"errors": [], "warnings": []})
        if path.startswith("/api/datasets/") and "/preupload/" in path:
            files = json.loads(body)["files"]
            return self._reply(
                200,
                {
                    "files": [
                        {
                            "path": f["path"],
                            "uploadMode": "lfs" if f["path"].endswith(".parquet") else "regular",
                            "shouldIgnore": False,
                        }
                        for f in files
                    ]
                },
            )
        if path.endswith(".git/info/lfs/objects/batch"):
            objects = json.loads(body)["objects"]
            return self._reply(
                200,
                {
                    "transfer": "basic",
                    "objects": [
                        {
                            "oid": o["oid"],
                            "size": o["size"],
                            "authenticated": True,
                            "actions": {"upload": {"href": f"{base}/lfs-upload/{o['oid']}"}},
                        }
                        for o in objects
                    ],
                },
            )
        if path.startswith("/api/datasets/") and "/commit/" in path:
            self.server.commits.append([json.loads(line) for line in body.splitlines() if line.strip()])
            repo = path[len("/api/datasets/") :].split("/commit/")[0]
            return self._reply(
                200,
                {
                    "commitUrl": f"{base}/datasets/{repo}/commit/{'a' * 40}",
                    "commitOid": "a" * 40,
                    "pullRequestUrl": None,
                },
            )
        self._reply(404, {"error": f"unknown endpoint {path}"})


@pytest.fixture
def hub():
    server = FakeHub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """The real `zaoshu` command in a subprocess, with only the HF_* variables the test gives."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    full.update({"HF_HUB_DISABLE_TELEMETRY": "1", "COLUMNS": "200"})
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", "from zaoshu.cli import main; main()", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_upload_commits_the_folder_through_the_real_client(tmp_path, split_dir, hub):
    token = "hf_testtoken_0123456789"
    result = run_cli(
        ["publish", str(split_dir), "--repo", "alice/wishes-zh", "--private"],
        {"HF_TOKEN": token, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "uploaded to" in result.stdout
    assert token not in result.stdout + result.stderr
    assert hub.created == [{"name": "wishes-zh", "organization": "alice", "private": True, "type": "dataset"}]
    assert all(auth == f"Bearer {token}" for method, path, auth in hub.calls if method == "POST")
    (commit,) = hub.commits
    header = commit[0]
    assert header["key"] == "header" and "zaoshu" in header["value"]["summary"]
    files = {item["value"]["path"]: item for item in commit[1:]}
    assert set(files) == {
        "README.md",
        "data/train-00000-of-00001.parquet",
        "data/test-00000-of-00001.parquet",
    }
    assert files["README.md"]["key"] == "file"
    readme = base64.b64decode(files["README.md"]["value"]["content"]).decode("utf-8")
    assert "configs:" in readme and "### Recipe `wishes`" in readme
    # the parquet files went through the LFS batch + PUT, and the commit points at them by sha256
    restored = tmp_path / "restored"
    (restored / "data").mkdir(parents=True)
    (restored / "README.md").write_text(readme, encoding="utf-8")
    for name, item in files.items():
        if name.endswith(".parquet"):
            assert item["key"] == "lfsFile"
            oid = item["value"]["oid"]
            body = hub.lfs[oid]
            assert hashlib.sha256(body).hexdigest() == oid and len(body) == item["value"]["size"]
            (restored / name).write_bytes(body)
    # what reached the Hub is the same dataset
    import datasets

    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        ds = datasets.load_dataset(str(restored), cache_dir=str(tmp_path / "cache"))
    finally:
        del os.environ["HF_DATASETS_OFFLINE"]
    expected = [json.loads(line) for line in (split_dir / "train.jsonl").read_text("utf-8").splitlines()]
    assert records_from_rows(list(ds["train"])) == expected


def test_missing_token_fails_before_any_work(tmp_path, hub):
    result = run_cli(
        ["publish", str(tmp_path / "does-not-exist.jsonl"), "--repo", "alice/wishes"],
        {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")},
    )
    assert result.returncode != 0
    assert "HF_TOKEN is not set" in result.stderr and "Traceback" not in result.stderr
    assert hub.calls == []


def test_repo_without_owner_fails_in_the_cli(tmp_path, split_dir, hub):
    result = run_cli(
        ["publish", str(split_dir), "--repo", "wishes", "--out", str(tmp_path / "x")],
        {"HF_HOME": str(tmp_path / "hf")},
    )
    assert result.returncode != 0 and "OWNER/NAME" in result.stderr
    assert not (tmp_path / "x").exists()


def test_dry_run_and_out_need_no_token_and_upload_nothing(tmp_path, split_dir, hub):
    for extra in (["--dry-run"], ["--out", str(tmp_path / "folder")]):
        result = run_cli(
            ["publish", str(split_dir), "--repo", "alice/wishes", *extra],
            # --dry-run leaves its folder to look at: in the test's own temp folder
            {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "TMPDIR": str(tmp_path)},
        )
        assert result.returncode == 0, result.stderr
        assert "not uploaded" in result.stdout
    assert hub.calls == []
    assert (tmp_path / "folder" / "data" / "train-00000-of-00001.parquet").is_file()


def test_refused_token_is_a_clear_error_without_the_token(tmp_path, split_dir):
    class Refuse(HubHandler):
        def do_POST(self) -> None:
            self._body()
            self._reply(401, {"error": "Invalid credentials"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        token = "hf_wrong_987654321"
        result = run_cli(
            ["publish", str(split_dir), "--repo", "alice/wishes"],
            {
                "HF_TOKEN": token,
                "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
                "HF_HOME": str(tmp_path / "hf"),
            },
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode != 0
    assert "token was refused (401)" in result.stderr
    assert token not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_meta_can_be_left_out(tmp_path, split_dir):
    import pyarrow.parquet as pq

    result = build(split_dir, "alice/w", tmp_path / "hub", with_meta=False)
    table = pq.read_table(result.folder / "data" / "train-00000-of-00001.parquet")
    assert "meta" not in table.column_names
    assert table.schema.field("messages").type.value_type.names == ["role", "content", "loss"]
    assert orjson.loads(orjson.dumps(table.slice(0, 1).to_pylist()[0]["messages"]))[0]["role"] == "system"


def test_big_splits_are_sharded_and_still_load(tmp_path, split_dir, monkeypatch):
    import datasets

    from zaoshu import publish as publish_module

    monkeypatch.setattr(publish_module, "SHARD_BYTES", 2000)  # a few records a shard
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    result = build(split_dir, "alice/w", tmp_path / "hub")
    train = sorted(name for name, _ in result.files if name.startswith("data/train-"))
    assert len(train) > 1 and train[0] == f"data/train-00000-of-{len(train):05d}.parquet"
    ds = datasets.load_dataset(str(result.folder), cache_dir=str(tmp_path / "cache"))
    expected = [json.loads(line) for line in (split_dir / "train.jsonl").read_text("utf-8").splitlines()]
    assert records_from_rows(list(ds["train"])) == expected


def test_card_finds_the_report_of_a_run_folder(tmp_path, split_dir):
    """`zaoshu run` writes DIR/report/report.json (not clean.report/): publish finds it without --report."""
    run_dir = split_dir.parent
    (run_dir / "clean.report").rename(run_dir / "report")
    text = (
        build(run_dir / "clean.jsonl", "alice/wishes-zh", tmp_path / "hub").folder / "README.md"
    ).read_text(encoding="utf-8")
    assert "| counts.kept | 40 |" in text and "| too_long | 1 |" in text


def _publish_in_process(args: list[str]) -> Result:
    """`zaoshu publish` in this process, so the test's monkeypatching reaches it."""
    return CliRunner().invoke(app, ["publish", *args])


def test_without_the_publish_extra_the_cli_names_the_install_command(tmp_path, split_dir, monkeypatch):
    """A bare `pip install -e .` has neither pyarrow nor huggingface_hub: one clear error, no traceback."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what find_spec and import see when it is missing
    result = _publish_in_process(
        [str(split_dir), "--repo", "alice/wishes", "--out", str(tmp_path / "folder")]
    )
    assert result.exit_code == 2, result.output
    assert "publishing needs pyarrow (not installed)" in result.output
    assert 'pip install -e ".[publish]"' in result.output  # quoted, so zsh does not glob the brackets
    assert "Traceback" not in result.output and not (tmp_path / "folder").exists()


def test_upload_without_huggingface_hub_fails_before_any_work(tmp_path, split_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    monkeypatch.setenv("HF_TOKEN", "hf_testtoken_0123456789")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    result = _publish_in_process([str(split_dir), "--repo", "alice/wishes"])
    assert result.exit_code == 2, result.output
    assert "publishing needs huggingface_hub (not installed)" in result.output
    assert 'pip install -e ".[publish]"' in result.output and "hf_testtoken" not in result.output
    # the card's header is huggingface_hub's DatasetCardData: writing the folder alone needs it too
    out = _publish_in_process([str(split_dir), "--repo", "alice/wishes", "--out", str(tmp_path / "folder")])
    assert out.exit_code == 2 and "publishing needs huggingface_hub (not installed)" in out.output
    assert not (tmp_path / "folder").exists()
