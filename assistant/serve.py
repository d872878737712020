"""An OpenAI-compatible API over the four answer paths: the `model` field picks the path.

    assistant serve --port 8000
    curl -s localhost:8000/v1/chat/completions -H 'content-type: application/json' \
      -d '{"model": "hybrid", "messages": [{"role": "user", "content": "Who approves a purchase order?"}]}'

Any OpenAI client works (`OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")`).
Answers are greedy, so sampling fields (temperature, top_p, ...) are accepted and ignored.
Beyond the standard fields, a completion carries `sources` (the numbered context blocks) and
`note` (truncation and the like); streamed, they come with the last chunk.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field

from assistant.answer import MODES, Answer, Assistant, message_text
from assistant.config import Config

MODEL_HELP = {
    "base": "base model, no retrieval",
    "rag": "base model with retrieved context",
    "offline": "fine-tuned model, no retrieval",
    "hybrid": "fine-tuned model with retrieved context",
}


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The answer path: base, rag, offline or hybrid.")
    messages: list[dict] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)


def openai_error(status: int, message: str, code: str):
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"error": {
        "message": message, "type": "invalid_request_error", "param": None, "code": code}})


def split_conversation(messages: list[dict]) -> tuple[str, list[dict]]:
    """The last user message is the question; earlier user/assistant turns are the history.
    A client's own system message is dropped: the assistant's system line is the only one."""
    texts = [{"role": m.get("role"), "content": message_text(m.get("content"))} for m in messages]
    last_user = max((i for i, m in enumerate(texts) if m["role"] == "user"), default=None)
    if last_user is None:
        return "", []
    return texts[last_user]["content"], texts[:last_user]


def completion_body(answer: Answer, model: str, request_id: str, created: int) -> dict:
    details = answer.to_dict()
    return {
        "id": request_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": answer.tokens, "total_tokens": answer.tokens},
        "sources": details["sources"], "note": answer.note, "latency_s": details["latency_s"],
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
        details = item.to_dict()
        yield event({}, "stop", sources=details["sources"], note=item.note,
                    usage={"prompt_tokens": 0, "completion_tokens": item.tokens, "total_tokens": item.tokens})
    yield "data: [DONE]\n\n"


def build_api(assistant: Assistant):
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    api = FastAPI(title="Domain assistant", description=__doc__)

    @api.get("/v1/models")
    def list_models() -> dict:
        return {"object": "list", "data": [
            {"id": mode, "object": "model", "created": 0, "owned_by": "domain-assistant",
             "description": MODEL_HELP[mode], "ready": mode not in ("offline", "hybrid") or assistant.has_adapter}
            for mode in MODES]}

    # Plain `def` handlers run in FastAPI's thread pool, so generation never blocks the event loop.
    @api.post("/v1/chat/completions")
    def chat_completions(request: ChatRequest):
        if request.model not in MODES:
            return openai_error(404, f"model {request.model!r} does not exist; use one of {', '.join(MODES)} "
                                     "(GET /v1/models lists them)", "model_not_found")
        question, history = split_conversation(request.messages)
        max_tokens = request.max_completion_tokens or request.max_tokens
        if request.stream:
            return StreamingResponse(stream_chunks(assistant, question, history, request.model, max_tokens),
                                     media_type="text/event-stream")
        answer = assistant.answer(question, request.model, history, max_new_tokens=max_tokens)
        return completion_body(answer, request.model, f"chatcmpl-{uuid.uuid4().hex}", int(time.time()))

    @api.get("/health")
    def health() -> dict:
        return {"status": "ok", "adapter": str(assistant.adapter) if assistant.adapter else None}

    return api


def serve(cfg: Config, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    api = build_api(Assistant(cfg))
    print(f"OpenAI-compatible API on http://{host}:{port}/v1 (models: {', '.join(MODES)})", flush=True)
    uvicorn.run(api, host=host, port=port, log_level="warning")
