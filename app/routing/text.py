"""What text of a request is scored, and the cheap features read off it.

Policy for OpenAI ``messages`` (documented in docs/serving.md):

* The **last user turn** is the task; it comes first, so truncation to the
  embedder's window never cuts it for context.
* The **previous user turn** follows as context ("Context: ..."), since a
  follow-up such as "now do it for n = 10" is only as hard as what it follows.
* **System prompts are not scored**: they are fixed per application (persona,
  house rules) and would make every request of one application look alike.
* Assistant turns are not scored: they are the models' text, not the user's task.

Text is capped at :data:`MAX_CHARS` before embedding; the embedder truncates
further to its own token window.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

MAX_CHARS = 4000


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class OtherPart(BaseModel):  # image_url, input_audio, ...: not scored
    model_config = ConfigDict(extra="allow")
    type: str


class Message(BaseModel):
    """One OpenAI chat message; unknown fields (name, tool_calls, ...) are kept but ignored."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Union[str, list[Union[TextPart, OtherPart]], None] = None

    @model_validator(mode="after")
    def _content_where_required(self):
        # OpenAI: only an assistant turn (with tool_calls or a refusal) may leave content out
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs 'content'")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))


Messages = TypeAdapter(Annotated[list[Message], Field(min_length=1)])


def prompt_text(request: str | list[Message] | list[dict[str, Any]]) -> str:
    """The text the router scores for a plain prompt or a list of chat messages.

    Messages already validated (:data:`Messages`) are used as they are; dicts are validated here.
    """
    if isinstance(request, str):
        return request[:MAX_CHARS]
    messages = [m if isinstance(m, Message) else Message.model_validate(m) for m in request]
    users = [m.text() for m in messages if m.role == "user"]
    if not users:
        raise ValueError("messages: needs at least one message with role 'user'")
    text = users[-1]
    if len(users) > 1 and users[-2].strip():
        text = f"{text}\n\nContext: {users[-2]}"
    return text[:MAX_CHARS]


def estimate_tokens(text: str) -> int:
    """A rough token count without a tokenizer (4 characters a token, at least 1): the one estimate
    wherever tierroute needs one (``label``'s cost estimate, the shadow's budget without usage)."""
    return len(text) // 4 + 1


_NUMBER = re.compile(r"(?<![\w.])[-+]?\$?\d[\d,]*(?:\.\d+)?%?")
_SENTENCE = re.compile(r"[.!?](?:\s|$)")
_CODE = re.compile(r"```|\bdef |\bclass |\bfunction\b|\breturn\b|[;{}]\s*$|=>|#include", re.M)
_MATH = re.compile(r"[=+*/^<>≤≥∑∫√π]|\\frac|\bmod\b")
_STEP_WORDS = re.compile(
    r"\b(then|after|before|each|every|per|remaining|rest|twice|half|times|total|more than|less than|"
    r"percent|how many|how much|if|prove|show that|derive|why)\b",
    re.I,
)

FEATURE_NAMES = (
    "log_chars",
    "log_words",
    "log_numbers",
    "log_sentences",
    "log_step_words",
    "log_math_symbols",
    "code",
    "log_lines",
)


def features(text: str) -> np.ndarray:
    """Cheap length and step-count features of one prompt (see FEATURE_NAMES).

    Difficulty of word problems tracks the number of reasoning steps, which the
    count of quantities, sentences and step words estimates and embeddings miss.
    """
    return np.array(
        [
            math.log1p(len(text)),
            math.log1p(len(text.split())),
            math.log1p(len(_NUMBER.findall(text))),
            math.log1p(len(_SENTENCE.findall(text))),
            math.log1p(len(_STEP_WORDS.findall(text))),
            math.log1p(len(_MATH.findall(text))),
            1.0 if _CODE.search(text) else 0.0,
            math.log1p(text.count("\n")),
        ],
        dtype=np.float32,
    )


def feature_matrix(texts: list[str]) -> np.ndarray:
    return np.stack([features(t) for t in texts]) if texts else np.zeros((0, len(FEATURE_NAMES)), np.float32)
