"""Fake OpenAI-compatible API under /openai/v1 (PLATFORM = "openai").

  POST /openai/v1/chat/completions   Bearer key must equal config.openai_api_key
  GET  /openai/v1/models             and /openai/v1/models/{model}

Answers are deterministic and derived from the last user message. The "post" is the quoted
text in it, or what follows an instruction ending with a colon, or the message itself.
Variants, in this order (then cycled): a concise one, one with 2-3 hashtags drawn from the
post's own words, a question hook, one with a call to action, one with a sparkle emoji.
  - `n` > 1: choice i carries variant i.
  - `n` = 1: several variants, one per line, when the prompt asks for them ("3 suggestions",
    "two variants", "alternatives", ...); otherwise the concise variant alone.
  - `response_format` json_object / json_schema: a JSON object {"suggestions": [...]} (the
    first array property of a json_schema names the list instead).
  - "at most N characters" (also "max N chars", "under N characters", "N characters or
    less", ...) in a system, developer or user message caps every variant.
  - `max_tokens` / `max_completion_tokens` cut the text at about 4 characters a token, with
    finish_reason "length".
`stream: true` answers text/event-stream `data: {chat.completion.chunk}` lines, then
`data: [DONE]`; `stream_options.include_usage` adds the usage chunk. Any model name is
accepted (OpenAI-compatible servers differ); /models lists common ones. Requests are
recorded with their JSON body by the sandbox middleware (GET /admin/records?platform=openai).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Stream

from src.sandbox.faults import register_errors
from src.sandbox.state import FaultRule, SandboxState

PLATFORM = "openai"
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5-mini", "gpt-5-nano")
MODEL_CREATED = 1_721_172_741
ROLES = ("system", "assistant", "user", "function", "tool", "developer")
RATE_HEADERS = {
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-limit-tokens": "10000000",
    "x-ratelimit-remaining-tokens": "9999000",
    "x-ratelimit-reset-tokens": "6ms",
}
NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
    "contact us through our help center at help.openai.com.)"
)
NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
    "field (with blank username) if you're accessing the API from your browser and are "
    "prompted for a username and password. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)


class ApiError(Exception):
    """A refusal in OpenAI's error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": param, "code": code}}

    def response(self, headers: dict[str, str] | None = None) -> Response:
        all_headers = {"x-request-id": request_id(), **(headers or {})}
        return Response(self.body, status_code=self.status, headers=all_headers)


def request_id() -> str:
    return "req_" + secrets.token_hex(16)


def seed(state: SandboxState) -> None:
    """No identities: the API knows one key, config.openai_api_key."""


# -- authentication and validation ----------------------------------------------------
def check_key(state: SandboxState, request: Request) -> None:
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not key:
        raise ApiError(401, NO_KEY)
    if not secrets.compare_digest(key, state.config.openai_api_key):
        shown = key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 7 else "*" * 4
        message = (
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        raise ApiError(401, message, code="invalid_api_key")


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, NOT_JSON) from None
    if not isinstance(body, dict):
        raise ApiError(400, NOT_JSON)
    if not body.get("model"):
        raise ApiError(400, "you must provide a model parameter")
    check_messages(body.get("messages"))
    check_n(body.get("n", 1))
    return body


def check_messages(messages: Any) -> None:
    if messages is None:
        msg = "Missing required parameter: 'messages'."
        raise ApiError(400, msg, param="messages", code="missing_required_parameter")
    if not isinstance(messages, list):
        msg = f"Invalid type for 'messages': expected an array, but got {type(messages).__name__}"
        raise ApiError(400, msg, param="messages", code="invalid_type")
    if not messages:
        msg = (
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead."
        )
        raise ApiError(400, msg, param="messages", code="empty_array")
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            msg = (
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                "'user', 'function', 'tool', and 'developer'."
            )
            raise ApiError(400, msg, param=f"messages[{index}].role", code="invalid_value")


def check_n(n: Any) -> None:
    if not isinstance(n, int) or isinstance(n, bool):
        raise ApiError(400, f"Invalid type for 'n': expected an integer, but got {n!r}", param="n")
    if n < 1:
        msg = (
            f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} instead."
        )
        raise ApiError(400, msg, param="n", code="integer_below_min_value")
    if n > 128:
        msg = (
            "Invalid 'n': integer above maximum value. "
            f"Expected a value <= 128, but got {n} instead."
        )
        raise ApiError(400, msg, param="n", code="integer_above_max_value")


# -- reading the prompt ---------------------------------------------------------------
WORD = re.compile(r"[^\W\d_][\w'\u2019-]*")
URL = re.compile(r"https?://\S+")
QUOTED = re.compile(r'"([^"]{12,})"|“([^”]{12,})”|«([^»]{12,})»|```(?:\w*\n)?(.+?)```', re.S)
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
FILLER = re.compile(r"\b(?:really|very|just|actually|basically|literally|totally)\s+", re.I)


def word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


NUMBERS = "one two three four five six seven eight nine ten"
NUMBER_WORDS = {w: i for i, w in enumerate(NUMBERS.split(), 1)}
LIMITS = [
    re.compile(
        r"(?:at most|no more than|max(?:imum)?(?: of)?|under|up to|within|fewer than|less than"
        r"|no longer than|≤|<=)\s*(\d{1,5})[\s-]*(?:characters|chars|letters)",
        re.I,
    ),
    re.compile(
        r"(\d{1,5})[\s-]*(?:characters|chars)\s*(?:or (?:less|fewer)|max(?:imum)?|limit)", re.I
    ),
]
COUNT = re.compile(
    r"\b(\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten)\s+(?:[\w-]+\s+){0,2}?"
    r"(?:suggestions|variants|variations|versions|options|alternatives|rewrites|ideas|captions"
    r"|improvements|drafts|posts|tweets|hooks)\b",
    re.I,
)
PLURAL_ASK = re.compile(
    r"\b(?:suggestions|variants|variations|alternatives|rewrites|options|versions)\b", re.I
)
INSTRUCTION = word_set(
    """suggest suggestion suggestions rewrite improve write make give keep please provide
    create generate help post posts caption captions tweet text hashtag hashtags characters
    chars variant variants version versions option options alternative alternatives shorter
    concise social media following below above return reply answer"""
)
STOPWORDS = word_set(
    """about above after again against also among another because been before being below
    between both could does doing down during each every from further have having here
    into itself just more most much must only other ought ours ourselves over same shall
    should some such than that their theirs them themselves then there these they this those
    through under until upon very were what when where which while whom whose will with
    within without would your yours yourself yourselves today tomorrow yesterday really
    thing things come came going want wants like still even ever never always"""
)

IGNORED = STOPWORDS | INSTRUCTION  # never hashtags


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return content if isinstance(content, str) else ""


def instructions(messages: list[dict[str, Any]]) -> str:
    """Everything that may carry a length or count instruction."""
    roles = ("system", "developer")
    chosen = [text_of(m) for m in messages if m.get("role") in roles]
    return "\n".join([*chosen, last_user_text(messages)])


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return text_of(message)
    return ""


def char_limit(text: str) -> int | None:
    found = [int(m.group(1)) for pattern in LIMITS for m in pattern.finditer(text)]
    found = [n for n in found if n >= 10]
    return min(found) if found else None


def asked_count(text: str) -> int:
    """How many variants the prompt asks for in one answer (1 when it asks for one text)."""
    match = COUNT.search(text)
    if match:
        word = match.group(1).lower()
        return max(1, min(10, NUMBER_WORDS.get(word) or int(word)))
    return 3 if PLURAL_ASK.search(text) else 1


def post_text(message: str) -> str:
    """The post the user wants help with, without the instruction around it."""
    quoted = [next(g for g in m.groups() if g) for m in QUOTED.finditer(message)]
    if quoted:
        return " ".join(max(quoted, key=len).split())
    head, colon, rest = message.partition(":")
    if colon and rest.strip() and len(head) < 160 and is_instruction(head):
        return " ".join(rest.split())
    sentences = SENTENCE_END.split(" ".join(message.split()))
    kept = [s for s in sentences if not is_instruction(s.split(" ", 1)[0])]
    return " ".join(kept or sentences)


def is_instruction(text: str) -> bool:
    """Instruction words, or a length/count request, in `text`."""
    if any(p.search(text) for p in LIMITS) or COUNT.search(text):
        return True
    return bool({w.lower() for w in WORD.findall(text)} & INSTRUCTION)


# -- writing the variants -------------------------------------------------------------
def keywords(text: str, limit: int = 3) -> list[str]:
    """The post's most telling words, in order of appearance."""
    words = [w.strip("'\u2019-") for w in WORD.findall(URL.sub(" ", text))]
    useful = [w for w in words if len(w) >= 4 and w.lower() not in IGNORED]
    counts = Counter(w.lower() for w in useful)
    first = {}
    for position, word in enumerate(useful):
        first.setdefault(word.lower(), (position, word))
    ranked = sorted(counts, key=lambda w: (-counts[w], -len(w), first[w][0]))[:limit]
    return [first[w][1] for w in sorted(ranked, key=lambda w: first[w][0])]


def hashtag(word: str) -> str:
    cleaned = re.sub("['\u2019-]", "", word)
    return "#" + cleaned[:1].upper() + cleaned[1:]


def tidy(text: str) -> str:
    text = FILLER.sub("", text).strip()
    text = text[:1].upper() + text[1:]
    return text if not text or text[-1] in ".!?…)\"'”" else text + "."


def concise(text: str) -> str:
    sentences = SENTENCE_END.split(text)
    return tidy(sentences[0] if sentences else text)


HOOKS = (
    "Guess what?",
    "Have you heard the news?",
    "Did you know?",
    "Ready for something new?",
)


def hook(text: str) -> str:
    """An opening question, picked by the text so the same post gets the same hook."""
    return HOOKS[hashlib.sha256(text.encode()).digest()[0] % len(HOOKS)]


def fit(body: str, tail: str, limit: int | None, atomic: bool = False) -> str:
    """`body` + `tail` within `limit` characters. The tail (hashtags, a call to action)
    keeps what it can while the body keeps at least a few words; then the body shortens."""
    tail_words = tail.split()
    room = min(len(body), 24)
    while limit and tail_words and room + 1 + len(" ".join(tail_words)) > limit:
        tail_words = [] if atomic else tail_words[:-1]
    tail = " ".join(tail_words)
    if limit and len(body) + len(tail) + 1 > limit:
        body = shorten(body, limit - len(tail) - 1 if tail else limit)
    return f"{body} {tail}".strip()


def shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else head
    return cut.rstrip(" ,;:-") + "…"


CALL_TO_ACTION = "What do you think? Tell us in the comments."


def variants(post: str, count: int, limit: int | None) -> list[str]:
    """`count` suggestions for `post`, each within `limit` characters."""
    if not post.strip():
        post = "Here is what we are up to this week"
    words = keywords(post)
    short = concise(post)
    tags = " ".join(hashtag(w) for w in words)
    makers = [
        lambda: fit(short, "", limit),
        lambda: fit(tidy(post), tags, limit),
        lambda: lead(hook(post), short, limit),
        lambda: fit(short, CALL_TO_ACTION, limit, atomic=True),
        lambda: lead("✨", short, limit),
    ]
    return [makers[i % len(makers)]() for i in range(count)]


def lead(opening: str, body: str, limit: int | None) -> str:
    """`opening` then `body`; the body is what gets shortened when space runs out."""
    if not limit or len(opening) + 1 + len(body) <= limit:
        return f"{opening} {body}"
    if len(opening) + 12 > limit:  # no room for both: the post matters more
        return shorten(body, limit)
    return f"{opening} {shorten(body, limit - len(opening) - 1)}"


# -- completions ----------------------------------------------------------------------
def answers(body: dict[str, Any]) -> list[str]:
    """The content of each choice."""
    messages = body["messages"]
    prompt = instructions(messages)
    post_ = post_text(last_user_text(messages))
    limit = char_limit(prompt)
    n = body.get("n", 1)
    response_format = body.get("response_format") or {}
    if response_format.get("type") in ("json_object", "json_schema"):
        listed = variants(post_, max(asked_count(prompt), 3) if n == 1 else 3, limit)
        return [json.dumps({list_name(response_format): listed}, ensure_ascii=False)] * n
    if n > 1:
        return variants(post_, n, limit)
    return ["\n".join(variants(post_, asked_count(prompt), limit))]


def list_name(response_format: dict[str, Any]) -> str:
    schema = (response_format.get("json_schema") or {}).get("schema") or {}
    for name, spec in (schema.get("properties") or {}).items():
        if isinstance(spec, dict) and spec.get("type") == "array":
            return name
    return "suggestions"


def truncate(content: str, body: dict[str, Any]) -> tuple[str, str]:
    budget = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(budget, int) and budget > 0 and len(content) > budget * 4:
        return content[: budget * 4], "length"
    return content, "stop"


def tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def usage(body: dict[str, Any], contents: list[str]) -> dict[str, Any]:
    prompt = sum(tokens(text_of(m)) + 4 for m in body["messages"])
    completion = sum(tokens(c) for c in contents)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    choices, contents = [], []
    for index, text in enumerate(answers(body)):
        content, finish = truncate(text, body)
        contents.append(content)
        message = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
        choices.append(
            {"index": index, "message": message, "logprobs": None, "finish_reason": finish}
        )
    return {
        "id": "chatcmpl-" + secrets.token_urlsafe(22),
        "object": "chat.completion",
        "created": int(state.now()),
        "model": body["model"],
        "choices": choices,
        "usage": usage(body, contents),
        "service_tier": "default",
        "system_fingerprint": "fp_sandbox",
    }


def chunks(state: SandboxState, body: dict[str, Any]) -> Iterator[bytes]:
    """Server-sent events of a streamed completion."""
    with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": "chatcmpl-" + secrets.token_urlsafe(22),
        "object": "chat.completion.chunk",
        "created": int(state.now()),
        "model": body["model"],
        "service_tier": "default",
        "system_fingerprint": "fp_sandbox",
    }

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {**base, "choices": choices, **({"usage": None} if with_usage else {}), **extra}
        return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"

    contents = []
    for index, text in enumerate(answers(body)):
        content, finish = truncate(text, body)
        contents.append(content)
        first = {"role": "assistant", "content": "", "refusal": None}
        yield event([{"index": index, "delta": first, "logprobs": None, "finish_reason": None}])
        for piece in re.findall(r"\S+\s*|\s+", content):
            delta = {"content": piece}
            yield event([{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}])
        yield event([{"index": index, "delta": {}, "logprobs": None, "finish_reason": finish}])
    if with_usage:
        yield event([], usage=usage(body, contents))
    yield b"data: [DONE]\n\n"


async def events(state: SandboxState, body: dict[str, Any]) -> AsyncIterator[bytes]:
    # An async generator: Litestar would hop to a thread for every item of a sync one.
    for event in chunks(state, body):
        yield event


def success_headers(started: float) -> dict[str, str]:
    elapsed = str(max(1, int((time.perf_counter() - started) * 1000)))
    return {"x-request-id": request_id(), "openai-processing-ms": elapsed, **RATE_HEADERS}


@post("/openai/v1/chat/completions", status_code=200)
async def chat_completions(request: Request) -> Response | Stream:
    started = time.perf_counter()
    state: SandboxState = request.app.state.sandbox
    try:
        check_key(state, request)
        body = parse_body(await request.body())
    except ApiError as refusal:
        return refusal.response()
    headers = success_headers(started)
    if body.get("stream"):
        return Stream(events(state, body), media_type="text/event-stream", headers=headers)
    return Response(completion(state, body), headers=headers)


def model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": MODEL_CREATED, "owned_by": "system"}


@get("/openai/v1/models", sync_to_thread=False)
def models(request: Request) -> Response:
    try:
        check_key(request.app.state.sandbox, request)
    except ApiError as refusal:
        return refusal.response()
    return Response({"object": "list", "data": [model_object(m) for m in MODELS]})


@get("/openai/v1/models/{model:str}", sync_to_thread=False)
def model(request: Request, model: FromPath[str]) -> Response:
    try:
        check_key(request.app.state.sandbox, request)
        if model not in MODELS:
            msg = f"The model '{model}' does not exist"
            raise ApiError(404, msg, param="model", code="model_not_found")
    except ApiError as refusal:
        return refusal.response()
    return Response(model_object(model))


# -- injected faults -----------------------------------------------------------------
def render_error(kind: str, rule: FaultRule, state: SandboxState) -> Response:
    if kind == "rate_limit":
        wait = rule.retry_after
        msg = (
            "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. "
            f"Please try again in {wait}s. Visit https://platform.openai.com/account/rate-limits "
            "to learn more."
        )
        headers = {
            "retry-after": str(wait),
            "retry-after-ms": str(wait * 1000),
            "x-ratelimit-limit-requests": "3",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{wait}s",
        }
        return ApiError(429, msg, "requests", code="rate_limit_exceeded").response(headers)
    if kind in ("expired_token", "revoked_token"):
        msg = (
            "Incorrect API key provided: sk-****. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        return ApiError(401, msg, code="invalid_api_key").response()
    msg = "The server had an error while processing your request. Sorry about that!"
    return ApiError(500, msg, "server_error").response()


register_errors(PLATFORM, render_error)


def routes() -> list:
    return [chat_completions, models, model]
