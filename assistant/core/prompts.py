"""The one prompt that every answer path and every training pair uses.

Training pairs of type `raft` carry exactly the context layout that `hybrid` answers see,
so differences between paths come from the model and the retrieval alone.
"""
from __future__ import annotations

from collections.abc import Sequence

from assistant.core.records import Hit

PROMPT_VERSION = "answer-v3"

# Short on purpose: every training pair and every answer pays for these tokens (20 here; the earlier 32-token
# line was two fifths of a closed-book pair, so the same budget now buys ~16% more exposures).
SYSTEM = "Answer from the documents and cite [n]. If they lack the answer, say so."
# (No refusal wording here: a base model echoes its prompt, and the evaluation would read the echo as a refusal.)

# The sentence every refusal starts with: training teaches it, evaluation looks for it.
REFUSAL = "The knowledge base does not cover this."

# Gemma's turn format. Gemma has no system role, so the system text opens the first user turn.
# The GGUF-converted tokenizer ships without a template; this is the only definition.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- set system = messages[0]['content'] if messages and messages[0]['role'] == 'system' else '' -%}"
    "{%- set turns = messages[1:] if system else messages -%}"
    "{%- for message in turns -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else 'user' -%}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{%- if loop.first and system -%}{{ system + '\n\n' }}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{% generation %}{{ message['content'] | trim }}{{ '<end_of_turn>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
END_OF_TURN = "<end_of_turn>"


def format_context(hits: Sequence[Hit]) -> str:
    """Numbered blocks `[n] title > section` then the chunk text."""
    return "\n\n".join(f"[{n}] {hit.citation}\n{hit.chunk.text.strip()}" for n, hit in enumerate(hits, 1))


def user_turn(question: str, hits: Sequence[Hit] | None) -> str:
    if hits is None:
        return question.strip()
    if not hits:
        return f"Context: (nothing found)\n\nQuestion: {question.strip()}"
    return f"Context:\n{format_context(hits)}\n\nQuestion: {question.strip()}"


def build_messages(question: str, hits: Sequence[Hit] | None = None,
                   history: Sequence[dict] = ()) -> list[dict]:
    """System line, earlier turns, then the question with its context (None = no retrieval)."""
    return [
        {"role": "system", "content": SYSTEM},
        *history,
        {"role": "user", "content": user_turn(question, hits)},
    ]
