"""Request bodies of the HTTP API (pydantic models; they document ``/docs``).

OpenAI fields Orchard has no use for (``temperature``, ``max_tokens``, ``n``, ``tools`` ...) are
accepted and ignored: the model's settings are Orchard's (``ORCHARD_LLM_*``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchard.api.errors import ApiError


class ChatMessage(BaseModel):
    """One message. ``system``/``developer`` messages are ignored (Orchard's prompts are its own)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None

    def text(self, index: int) -> str:
        """The text of the message (text parts joined); 400 for images, audio and other parts."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                msg = f"messages[{index}]: only text content is supported, not {part.get('type')!r}"
                raise ApiError(400, msg, "invalid_request", param=f"messages.{index}.content")
            parts.append(part["text"])
        return "".join(parts)


class OrchardOptions(BaseModel):
    """Orchard's own options, in an extra body field (``extra_body={"orchard": {...}}``)."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: str | None = Field(
        None,
        description="Continue this conversation of yours (also: header `X-Orchard-Conversation-Id`). "
        "Sending only the new question then uses the stored turns as the history. "
        "Default: a new conversation per request.",
    )
    critique: bool = Field(False, description="Check the draft against the constitution and revise it (1-4 more model calls).")


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``: the last message (a user's) is the question, the earlier
    ones are the history; ``model`` picks the mode."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="orchard-auto, orchard-rag, orchard-agent or orchard-chat (`GET /v1/models`)")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    orchard: OrchardOptions | None = None

    def question_and_history(self) -> tuple[str, list[dict[str, str]]]:
        """The question (the last message, a user's) and the turns before it.

        Raises:
            ApiError: 400 when the last message is not a user's or has no text.
        """
        last = len(self.messages) - 1
        if self.messages[last].role != "user":
            raise ApiError(400, f"the last message must be the user's question (role 'user'), not role "
                                f"{self.messages[last].role!r}", "invalid_request", param=f"messages.{last}.role")  # fmt: skip
        question = self.messages[last].text(last).strip()
        if not question:
            raise ApiError(400, "the question (the last message) is empty: ask something", "invalid_request",
                           param=f"messages.{last}.content")  # fmt: skip
        history = [
            {"role": m.role, "content": text}
            for i, m in enumerate(self.messages[:last])
            if m.role in ("user", "assistant") and (text := m.text(i).strip())
        ]
        return question, history


class FeedbackRequest(BaseModel):
    """A rating of one answer (``orchard.message_id`` of a completion)."""

    model_config = ConfigDict(extra="forbid")

    message_id: int | str
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=4000)

    def message_number(self) -> int:
        try:
            return int(self.message_id)
        except ValueError:
            raise ApiError(400, f"message_id {self.message_id!r} is not an answer's id (a number)", "invalid_request",
                           param="message_id") from None  # fmt: skip
