"""AI-assisted writing through any OpenAI-compatible service (Chat Completions, streamed).

What is sent, and nothing else (the privacy policy's promise): the person's prompt, the
chosen tone, the target platforms and, for a rewrite (shorten for X, rephrase, fix
grammar), the draft text. Never an email, a name, a handle, a token or media. `Ask` is
the only input the request builders see, so nothing else can reach them.

Suggestions are not stored. Each request is counted as an "ai_suggest" row in
audit_events (action, user and time only; never the prompt), which is also the per-user
rate limit: counting rows in PostgreSQL works across every web process without a new
table, and the person can see the use in their audit trail.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
from piccolo.engine import engine_finder

from src import audit, http, rules
from src.config import Settings
from src.db.tables import AuditEvent

AUDIT_ACTION = "ai_suggest"
RATE_LIMIT = 20  # requests per person …
RATE_WINDOW = timedelta(minutes=10)  # … in this window
DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_PROMPT = 1000
MAX_DRAFT = 5000
TONES = ("friendly", "professional", "casual", "playful", "enthusiastic", "informative")
PLATFORMS = ("x", "instagram", "tiktok", "facebook")
ACTIONS = {
    "suggest": "Suggest",
    "shorten_x": "Shorten for X",
    "rephrase": "Rephrase",
    "fix_grammar": "Fix grammar",
}
ENABLE_HELP = (
    "AI suggestions are off: no AI service is configured. Set OKK_OPENAI_API_KEY (and, for "
    "Ollama, vLLM or another OpenAI-compatible server, OKK_OPENAI_BASE_URL; any key value "
    "works for a server that needs none) and optionally OKK_OPENAI_MODEL, then restart."
)
X_LIMIT = 280

# Per platform: how the instructions describe it, and the hard limit rules.counter checks.
GUIDES = {
    "x": "an X (Twitter) post of at most 280 characters (links count as 23), "
    "one or two hashtags at most",
    "instagram": "an Instagram caption of at most 2200 characters, ending with 3 to 5 "
    "relevant hashtags",
    "tiktok": "a TikTok video caption of at most 2200 characters, short and catchy, "
    "with 2 or 3 hashtags",
    "facebook": "a Facebook Page post of at most 2000 characters",
}
SYSTEM = (
    "You help write social media posts. Reply with the post text only: no preamble, no "
    "quotes around it, no explanations. Keep the author's language. Do not invent facts, "
    "links, prices or dates."
)


class AIError(Exception):
    """A failure worded for the person (shown in the panel; the composer keeps working)."""


class NotConfigured(AIError):
    def __init__(self) -> None:
        super().__init__(ENABLE_HELP)


class RateLimited(AIError):
    pass


@dataclass(frozen=True)
class Ask:
    """Everything a request may carry. Nothing else is ever sent."""

    action: str = "suggest"
    prompt: str = ""
    tone: str = "friendly"
    platforms: tuple[str, ...] = ()
    text: str = ""  # the draft, sent only for rewrites

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise AIError("Unknown action.")
        if self.tone not in TONES:
            object.__setattr__(self, "tone", "friendly")
        chosen = tuple(p for p in dict.fromkeys(self.platforms) if p in PLATFORMS)
        object.__setattr__(self, "platforms", chosen)
        object.__setattr__(self, "prompt", self.prompt.strip()[:MAX_PROMPT])
        object.__setattr__(self, "text", self.text.strip()[:MAX_DRAFT])
        if self.action == "suggest" and not self.prompt:
            raise AIError("Write what the post should be about.")
        if self.action != "suggest" and not self.text:
            raise AIError("Write some text first: this rewrites the main text.")


@dataclass
class Suggestion:
    platform: str  # "" = the main text
    text: str = ""
    used: int = 0
    limit: int = 0
    note: str = ""  # e.g. "Shortened to fit X's 280."
    over: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def endpoint(settings: Settings) -> tuple[str, str] | None:
    """(base_url, api_key) of the AI service, or None when it is not configured. In sandbox
    mode without a key, the sandbox's fake OpenAI API."""
    if settings.openai_api_key:
        return (settings.openai_base_url or DEFAULT_BASE_URL).rstrip("/"), settings.openai_api_key
    if settings.sandbox_enabled:
        from src.sandbox.config import SandboxConfig

        return f"{settings.sandbox_url}/openai/v1", SandboxConfig.openai_api_key
    return None


def available(settings: Settings) -> bool:
    return endpoint(settings) is not None


def client_for(settings: Settings) -> openai.AsyncOpenAI:
    found = endpoint(settings)
    if found is None:
        raise NotConfigured
    base_url, key = found
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key=key,
        timeout=settings.http_timeout_s,
        max_retries=0,
        http_client=http.client(),
    )


# -- what is sent ------------------------------------------------------------------------
def targets(ask: Ask) -> list[str]:
    """One suggestion per entry: a platform, or "" for the main text."""
    if ask.action == "shorten_x":
        return ["x"]
    if ask.action == "suggest":
        return list(ask.platforms) or [""]
    return [""]


def messages(ask: Ask, platform: str) -> list[dict[str, str]]:
    """The whole request content: built from `ask` alone."""
    others = ", ".join(ask.platforms) or "social media"
    if platform:
        guide = f"Write {GUIDES[platform]}."
    else:
        guide = f"The post is for {others}; keep it within 280 characters if X is among them."
        if "x" not in ask.platforms:
            guide = f"The post is for {others}."
    system = f"{SYSTEM} Tone: {ask.tone}. {guide}"
    if ask.action == "suggest":
        user = f"Write a post about: {ask.prompt}"
    elif ask.action == "shorten_x":
        system = f"{SYSTEM} Tone: {ask.tone}. Write {GUIDES['x']}."
        user = f"Shorten this post for X, at most 280 characters:\n{ask.text}"
    elif ask.action == "rephrase":
        user = f"Rephrase this post, same meaning, fresh wording:\n{ask.text}"
    else:
        user = (
            "Fix the grammar, spelling and punctuation of this post, changing nothing "
            f"else:\n{ask.text}"
        )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# -- limits ------------------------------------------------------------------------------
def shorten(text: str, limit: int = X_LIMIT) -> str:
    """Cut at a word boundary with an ellipsis until X's weighted count fits."""
    if rules.counter("x", text).used <= limit:
        return text
    words = text.split()
    while words:
        words.pop()
        candidate = re.sub(r"[\s,;:.\-\u2013\u2014]+$", "", " ".join(words)) + "…"
        if rules.counter("x", candidate).used <= limit:
            return candidate
    return text[: limit - 1] + "…"


def checked(platform: str, text: str) -> Suggestion:
    """The suggestion measured with the composer's own counter; X is made to fit."""
    text = clean(text)
    if not platform:
        return Suggestion("", text)
    note = ""
    if platform == "x" and rules.counter("x", text).over:
        text, note = shorten(text), "Shortened to fit X's 280 weighted characters."
    count = rules.counter(platform, text)
    if count.over:
        note = f"Over {platform}'s limit: {count.used} of {count.limit} {count.label}."
    return Suggestion(platform, text, count.used, count.limit, note, count.over)


def clean(text: str) -> str:
    text = text.strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    return text


# -- rate limit --------------------------------------------------------------------------
async def take_slot(user_id: int) -> None:
    """Count this request against the person's allowance, or refuse it. A per-person
    advisory lock makes count-then-record atomic across every web process."""
    since = datetime.now(UTC) - RATE_WINDOW
    async with engine_finder().transaction():
        await AuditEvent.raw("SELECT pg_advisory_xact_lock(hashtext('okk:ai'), {})", user_id)
        used = await AuditEvent.count().where(
            (AuditEvent.user == user_id)
            & (AuditEvent.action == AUDIT_ACTION)
            & (AuditEvent.created_at > since)
        )
        if used >= RATE_LIMIT:
            minutes = int(RATE_WINDOW.total_seconds() // 60)
            raise RateLimited(
                f"You have asked for {RATE_LIMIT} suggestions in {minutes} minutes, the most "
                "this instance allows. Try again in a few minutes."
            )
        await audit.record(AUDIT_ACTION, user_id)


# -- calling the service -----------------------------------------------------------------
def explain(error: Exception) -> str:
    """An SDK error in words for the person (never the key, never a stack)."""
    if isinstance(error, AIError):
        return str(error)
    if isinstance(error, openai.APITimeoutError):
        return "The AI service took too long to answer. Try again in a moment."
    if isinstance(error, openai.RateLimitError):
        return "The AI service is busy (rate limited). Try again in a minute."
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return "The AI service refused the API key. Check OKK_OPENAI_API_KEY."
    if isinstance(error, openai.NotFoundError):
        return "The AI service does not offer this model. Check OKK_OPENAI_MODEL."
    if isinstance(error, openai.APIConnectionError):
        return "The AI service could not be reached. Check OKK_OPENAI_BASE_URL."
    if isinstance(error, openai.APIStatusError) and error.status_code >= 500:
        return "The AI service had an error. Try again later."
    if isinstance(error, openai.APIStatusError):
        return f"The AI service refused the request (HTTP {error.status_code})."
    return "The AI service failed unexpectedly. Try again later."


async def stream(settings: Settings, ask: Ask) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Events as they come: ("start", {index, platform}), ("chunk", {index, delta}),
    ("done", suggestion), ("error", {message}). The caller has already taken a slot."""
    try:
        client = client_for(settings)
    except AIError as error:
        yield "error", {"message": str(error)}
        return
    for index, platform in enumerate(targets(ask)):
        yield "start", {"index": index, "platform": platform}
        parts: list[str] = []
        try:
            response = await client.chat.completions.create(
                model=settings.openai_model,
                messages=messages(ask, platform),  # type: ignore[arg-type]
                stream=True,
            )
            async for chunk in response:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    parts.append(delta)
                    yield "chunk", {"index": index, "delta": delta}
        except Exception as error:  # every failure becomes a message, never a broken page
            yield "error", {"index": index, "message": explain(error)}
            return
        found = checked(platform, "".join(parts))
        yield "done", {"index": index, **found.__dict__}


async def suggest(settings: Settings, ask: Ask) -> list[Suggestion]:
    """The whole answer at once (for scripts and tests); raises AIError with the message."""
    found: list[Suggestion] = []
    async for kind, data in stream(settings, ask):
        if kind == "error":
            raise AIError(data["message"])
        if kind == "done":
            data = {k: v for k, v in data.items() if k != "index"}
            found.append(Suggestion(**data))
    return found
