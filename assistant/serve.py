"""An OpenAI-compatible API over the four answer paths: the `model` field picks the path.

    assistant serve --port 8000
    curl -s localhost:8000/v1/chat/completions -H 'content-type: application/json' \
      -d '{"model": "hybrid", "messages": [{"role": "user", "content": "Who approves a purchase order?"}]}'

Any OpenAI client works (`OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")`).
With an API key (`--api-key`, or better ASSISTANT_API_KEY, which the process list does not show)
every /v1 route wants `Authorization: Bearer <key>`; a host other than loopback requires one.
Answers are greedy, so sampling fields (temperature, top_p, ...) are accepted and ignored.
Beyond the standard fields, a completion carries `sources` (the numbered context blocks, their
`source` a path relative to the corpus, never the server's own file system) and `note`
(truncation and the like); streamed, they come with the last chunk. Every error is OpenAI's
error object, `{"error": {"message", "type", "param", "code"}}`, a bad request a 400.
"""
from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from assistant.answer import Answer, Assistant, message_text
from assistant.core.config import Config
from assistant.core.modes import Mode



class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str = ""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The answer path: base, rag, offline or hybrid.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)


def openai_error(status: int, message: str, code: str, param: str | None = None,
                 kind: str = "invalid_request_error"):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"error": {
        "message": message, "type": kind, "param": param, "code": code}})


def validation_error(errors: list[dict]):
    """FastAPI's 422 list as OpenAI's 400 error object, naming the first bad field."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
    if first.get("type") == "json_invalid":
        return openai_error(400, "the request body is not valid JSON; send one JSON object "
                                 '{"model": ..., "messages": [...]}', "invalid_json")
    got = f" (got {json.dumps(first['input'], default=str)[:80]})" if "input" in first else ""
    return openai_error(400, f"{param or 'body'}: {first.get('msg')}{got}; see "
                             "https://platform.openai.com/docs/api-reference/chat/create", "invalid_value", param)


def public_source(source: str, cfg: Config) -> str:
    """A chunk's file as a client may see it: relative to the corpus, else to the workspace
    (uploads/<name>), else the bare file name; never the server's absolute path."""
    path = Path(source)
    for root in (cfg.corpus, cfg.home):
        try:
            return path.absolute().relative_to(Path(root).absolute()).as_posix()
        except ValueError:
            continue
    return path.name


def response_sources(answer: Answer, cfg: Config) -> list[dict]:
    return [{**source, "source": public_source(source["source"], cfg)} for source in answer.to_dict()["sources"]]


def split_conversation(messages: list[ChatMessage]) -> tuple[str, list[dict]]:
    """The last user message is the question; earlier user/assistant turns are the history.
    A client's own system message is dropped: the assistant's system line is the only one."""
    texts = [{"role": m.role, "content": message_text(m.model_dump()["content"])} for m in messages]
    last_user = max((i for i, m in enumerate(texts) if m["role"] == "user"), default=None)
    if last_user is None:
        return "", []
    return texts[last_user]["content"], texts[:last_user]


def completion_body(answer: Answer, model: str, request_id: str, created: int, cfg: Config) -> dict:
    details = answer.to_dict()
    return {
        "id": request_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": answer.tokens, "total_tokens": answer.tokens},
        "sources": response_sources(answer, cfg), "note": answer.note, "latency_s": details["latency_s"],
    }


def stream_chunks(assistant: Assistant, question: str, history: list[dict], model: str,
                  max_tokens: int | None) -> Iterator[str]:
    """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`."""
    request_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def event(delta: dict, finish: str | None = None, **extra) -> str:
        chunk = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""})
    streamed = False
    for item in assistant.stream(question, model, history, max_new_tokens=max_tokens):
        if isinstance(item, str):
            streamed = True
            yield event({"content": item})
            continue
        # Replies that were never generated (empty message, no adapter) arrive whole.
        if not streamed and item.text:
            yield event({"content": item.text})
        yield event({}, "stop", sources=response_sources(item, assistant.cfg), note=item.note,
                    usage={"prompt_tokens": 0, "completion_tokens": item.tokens, "total_tokens": item.tokens})
    yield "data: [DONE]\n\n"


def build_api(assistant: Assistant, api_key: str | None = None):
    """The FastAPI app; with `api_key`, every /v1 route wants `Authorization: Bearer <api_key>`."""
    from fastapi import Depends, FastAPI, Header, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import StreamingResponse
    from starlette.exceptions import HTTPException

    api = FastAPI(title="Domain assistant", description=__doc__)

    @api.exception_handler(RequestValidationError)
    def bad_request(request: Request, err: RequestValidationError):
        return validation_error(list(err.errors()))

    @api.exception_handler(HTTPException)
    def http_error(request: Request, err: HTTPException):
        code = {401: "invalid_api_key", 404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "error")
        return openai_error(err.status_code, str(err.detail), code,
                            kind="authentication_error" if err.status_code == 401 else "invalid_request_error")

    @api.exception_handler(Exception)
    def server_error(request: Request, err: Exception):
        # The traceback goes to the server's log; the client gets the error object, never the trace.
        return openai_error(500, f"internal error ({type(err).__name__}); the server log has the details",
                            "internal_error", kind="server_error")

    def check_key(authorization: str = Header("")) -> None:
        if api_key is None:
            return
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key; send the header `Authorization: Bearer <key>` "
                                     "(OpenAI clients: api_key=<key>)")

    @api.get("/v1/models", dependencies=[Depends(check_key)])
    def list_models() -> dict:
        return {"object": "list", "data": [
            {"id": mode.value, "object": "model", "created": 0, "owned_by": "domain-assistant",
             "description": mode.help, "ready": not mode.tuned or assistant.has_adapter}
            for mode in Mode]}

    # Plain `def` handlers run in FastAPI's thread pool, so generation never blocks the event loop.
    @api.post("/v1/chat/completions", dependencies=[Depends(check_key)])
    def chat_completions(request: ChatRequest):
        if request.model not in tuple(Mode):
            return openai_error(404, f"model {request.model!r} does not exist; use one of {', '.join(Mode)} "
                                     "(GET /v1/models lists them)", "model_not_found")
        question, history = split_conversation(request.messages)
        max_tokens = request.max_completion_tokens or request.max_tokens
        if request.stream:
            return StreamingResponse(stream_chunks(assistant, question, history, request.model, max_tokens),
                                     media_type="text/event-stream")
        answer = assistant.answer(question, request.model, history, max_new_tokens=max_tokens)
        return completion_body(answer, request.model, f"chatcmpl-{uuid.uuid4().hex}", int(time.time()),
                               assistant.cfg)

    @api.get("/health")
    def health() -> dict:
        return {"status": "ok", "adapter": assistant.adapter.name if assistant.adapter else None}

    return api


def serve(cfg: Config, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    api = build_api(Assistant(cfg), cfg.api_key.get_secret_value() if cfg.api_key else None)
    print(f"OpenAI-compatible API on http://{host}:{port}/v1 (models: {', '.join(Mode)})", flush=True)
    uvicorn.run(api, host=host, port=port, log_level="warning")
