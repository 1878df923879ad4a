"""The only module that imports ``ray.llm._internal``: what tierroute takes from Ray Serve LLM's private internals.

A Ray upgrade that moves or changes these touches this file alone. Ray Serve LLM's public API
(``ray.serve.llm``: ``LLMConfig``, ``build_llm_deployment``, ``LLMServer``, the OpenAI request models)
is imported where it is used; the request models are re-exported here for the parse steps.
"""

from __future__ import annotations

from ray.llm._internal.common.callbacks.base import CallbackBase
from ray.llm._internal.serve.core.configs.openai_api_models import ModelCard, ModelList
from ray.llm._internal.serve.core.ingress.utils import _sanitize_chat_completion_request
from ray.llm._internal.serve.core.protocol import RawRequestInfo
from ray.serve.llm.openai_api_models import ChatCompletionRequest, CompletionRequest

__all__ = [
    "CallbackBase",
    "ChatCompletionRequest",
    "CompletionRequest",
    "ModelCard",
    "ModelList",
    "RawRequestInfo",
    "sanitize_chat_request",
]


# ``req`` with its messages' content parts made picklable (Ray's fix for a pydantic ValidatorIterator)
sanitize_chat_request = _sanitize_chat_completion_request
