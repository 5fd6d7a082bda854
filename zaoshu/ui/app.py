"""`zaoshu ui`: one local web app to look through a run's records, review them, and chat with models.

FastAPI with server-rendered Jinja pages: the pages are plain HTML forms and links (filters are query
strings, a review is a POST), so they work without JavaScript except the chat's streaming, and the app
needs no asset from the network. Heavy work (polars queries, model loading) runs in FastAPI's thread
pool, so one slow model never blocks browsing.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
import orjson
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse

from zaoshu.errors import ZaoshuError
from zaoshu.recipes import Recipe
from zaoshu.review import Decision, append_decision
from zaoshu.ui.data import PAGE, DataStore, Query
from zaoshu.ui.models import ChatModel

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("zaoshu.ui", "."), autoescape=True, undefined=jinja2.StrictUndefined
)
_env.filters["qs"] = lambda params: urlencode(params)
_env.filters["json"] = lambda value: orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def default_reviewer() -> str:
    try:
        return os.environ.get("ZAOSHU_REVIEWER") or getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"


def create_app(
    source: Path | None,
    *,
    models: list[ChatModel] | None = None,
    recipe: Recipe | None = None,
    source_error: str | None = None,
) -> FastAPI:
    """The app for one data source (a run folder or a record file; None: chat only) and some models."""
    app = FastAPI(title="zaoshu ui", docs_url=None, redoc_url=None, openapi_url=None)
    store: DataStore | None = None
    if source is not None and source_error is None:
        try:
            store = DataStore(source)
        except ZaoshuError as e:
            source_error = str(e)
    models = models or []
    system = recipe.system if recipe else ""
    eval_inputs = list(recipe.eval_inputs) if recipe else []

    def page(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = _env.get_template(name).render(
            source=str(source) if source else None,
            has_data=store is not None,
            has_models=bool(models),
            **ctx,
        )
        return HTMLResponse(html, status_code=status)

    def no_data() -> HTMLResponse:
        return page(
            "message.html.j2",
            status=404,
            title="No records",
            message=source_error or "zaoshu ui was started without a run folder or record file.",
        )

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        if store is None:
            return no_data() if source is not None or not models else RedirectResponse("/chat", 303)
        info = store.overview(recipe.values if recipe else None)
        return page("index.html.j2", info=info, review_error=store.review_error, review=str(store.review))

    @app.get("/records", response_class=HTMLResponse)
    def records(request: Request) -> HTMLResponse:
        if store is None:
            return no_data()
        query = Query.parse(dict(request.query_params))
        rows, total = store.page(query)
        frame = store.frame()
        return page(
            "records.html.j2",
            query=query,
            rows=rows.to_dicts(),
            total=total,
            pages=max(1, -(-total // PAGE)),
            choices=store.choices(),
            axes=store.axes(frame),
            has_score=bool(frame.height) and frame["score"].is_not_null().any(),
            here=request.url.path + ("?" + request.url.query if request.url.query else ""),
        )

    @app.get("/record/{key:path}", response_class=HTMLResponse)
    def record(key: str, request: Request) -> HTMLResponse:
        if store is None:
            return no_data()
        found = store.record(key)
        if found is None:
            return page("message.html.j2", status=404, title="Not found", message=f"no record with id {key}")
        row, rec = found
        dup = None
        if row.get("duplicate_of"):
            other = store.record(row["duplicate_of"])
            dup = other[1] if other else None
        history = _history(store, key)
        return page(
            "record.html.j2",
            row=row,
            record=rec or {},
            dup=dup,
            history=history,
            reviewer=request.cookies.get("reviewer") or default_reviewer(),
            back=_local(request.query_params.get("back")),
            saved=request.query_params.get("saved"),
        )

    @app.post("/review")
    def review(
        request: Request,
        id: str = Form(...),
        action: str = Form(...),
        note: str = Form(""),
        who: str = Form(""),
        back: str = Form("/records"),
    ) -> Any:
        if store is None:
            return no_data()
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host"):  # a form posted by another site
            return page("message.html.j2", status=403, title="Review not saved", message="cross-site request")
        who = who.strip() or default_reviewer()
        try:
            append_decision(store.review, Decision(id=id, action=action, note=note.strip(), who=who))
        except ZaoshuError as e:
            return page("message.html.j2", status=400, title="Review not saved", message=str(e))
        target = f"/record/{quote(id)}?" + urlencode({"back": _local(back), "saved": action})
        response = RedirectResponse(target, status_code=303)
        response.set_cookie("reviewer", who, samesite="strict")
        return response

    @app.get("/chat", response_class=HTMLResponse)
    def chat() -> HTMLResponse:
        return page(
            "chat.html.j2",
            models=[m.label for m in models],
            system=system,
            eval_inputs=eval_inputs,
        )

    @app.post("/api/chat/{index}")
    async def chat_api(index: int, request: Request) -> Any:
        if not 0 <= index < len(models):
            return JSONResponse({"error": "no such model"}, status_code=404)
        body = await request.json()
        messages = [
            {"role": str(m.get("role")), "content": str(m.get("content"))}
            for m in body.get("messages") or []
            if isinstance(m, dict)
        ]
        if not messages or messages[-1]["role"] != "user":
            return JSONResponse({"error": "the last message must be the user's"}, status_code=400)
        model = models[index]
        pieces = model.stream(
            str(body.get("system") or ""), messages, temperature=float(body.get("temperature", 0.7))
        )
        try:  # the first piece (or the error of loading the model) before the answer starts streaming
            first = await _next(pieces)
        except ZaoshuError as e:
            return JSONResponse({"error": str(e)}, status_code=400)

        def rest() -> Any:
            if first:
                yield first
            try:
                yield from pieces
            except ZaoshuError as e:
                yield f"\n[error: {e}]"

        return StreamingResponse(rest(), media_type="text/plain; charset=utf-8")

    return app


def _local(url: str | None) -> str:
    """A link back into this app only (a path), never to another site or a script."""
    return url if url and url.startswith("/") and not url.startswith("//") else "/records"


async def _next(pieces: Any) -> str:
    from starlette.concurrency import run_in_threadpool

    def step() -> str:
        try:
            return next(pieces)
        except StopIteration:
            return ""

    return await run_in_threadpool(step)


def _history(store: DataStore, key: str) -> list[dict[str, Any]]:
    """Every decision about `key`, oldest first (the file is append-only)."""
    out = []
    if store.review.is_file():
        for raw in store.review.read_bytes().splitlines():
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict) and value.get("id") == key:
                out.append(value)
    return out
