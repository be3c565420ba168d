"""Contract tests of the fake OpenAI-compatible API, through the real openai SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import AsyncOpenAI

KEY = "sandbox-openai-key"
POST = (
    "We just opened our new sourdough bakery in Lyon! Come taste fresh croissants and "
    "sourdough bread every morning from 7am."
)
SYSTEM = "You help people improve social media posts. Keep each suggestion at most 120 characters."


def client(sandbox, key: str = KEY, retries: int = 0) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{sandbox.url}/openai/v1", api_key=key, max_retries=retries)


def messages(user: str = f"Suggest 3 improvements for this post: {POST}") -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


async def test_completion_gives_three_useful_suggestions(sandbox):
    async with client(sandbox) as ai:
        result = await ai.chat.completions.create(model="gpt-4o-mini", messages=messages())
    assert result.object == "chat.completion" and result.model == "gpt-4o-mini"
    assert result.id.startswith("chatcmpl-")
    (choice,) = result.choices
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    concise, tagged, hooked = choice.message.content.split("\n")
    assert concise == "We opened our new sourdough bakery in Lyon!"
    tags = [w for w in tagged.split() if w.startswith("#")]
    assert 2 <= len(tags) <= 3
    assert all(t[1:].lower() in POST.lower() for t in tags)
    assert hooked.endswith(concise) and "?" in hooked
    assert all(len(line) <= 120 for line in (concise, tagged, hooked))
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


async def test_answers_are_deterministic(sandbox):
    async with client(sandbox) as ai:
        first, second = [
            await ai.chat.completions.create(model="gpt-4o-mini", messages=messages())
            for _ in range(2)
        ]
    assert first.choices[0].message.content == second.choices[0].message.content


async def test_n_gives_one_variant_per_choice(sandbox):
    async with client(sandbox) as ai:
        result = await ai.chat.completions.create(
            model="gpt-4o-mini", messages=messages(f'Improve "{POST}"'), n=4
        )
    contents = [c.message.content for c in result.choices]
    assert [c.index for c in result.choices] == [0, 1, 2, 3]
    assert len(set(contents)) == 4
    assert "#" in contents[1] and "?" in contents[2] and "comments" in contents[3]


async def test_character_limit_is_honoured(sandbox):
    prompt = f"Rewrite this post in no more than 40 characters: {POST}"
    async with client(sandbox) as ai:
        result = await ai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], n=5
        )
    lengths = [len(c.message.content) for c in result.choices]
    assert max(lengths) <= 40 and min(lengths) > 10


async def test_single_text_when_one_is_asked_for(sandbox):
    prompt = f"Make this post shorter. {POST}"
    async with client(sandbox) as ai:
        result = await ai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
    assert result.choices[0].message.content == "We opened our new sourdough bakery in Lyon!"


async def test_json_response_format(sandbox):
    async with client(sandbox) as ai:
        result = await ai.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages(),
            response_format={"type": "json_object"},
        )
    suggestions = json.loads(result.choices[0].message.content)["suggestions"]
    assert len(suggestions) == 3 and all(isinstance(s, str) for s in suggestions)


async def test_max_tokens_cuts_with_finish_reason_length(sandbox):
    async with client(sandbox) as ai:
        result = await ai.chat.completions.create(
            model="gpt-4o-mini", messages=messages(), max_tokens=5
        )
    assert result.choices[0].finish_reason == "length"
    assert len(result.choices[0].message.content) == 20


async def test_streamed_matches_non_streamed(sandbox):
    async with client(sandbox) as ai:
        whole = await ai.chat.completions.create(model="gpt-4o-mini", messages=messages(), n=2)
        stream = await ai.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages(),
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts: dict[int, str] = {0: "", 1: ""}
        finishes, usage = {}, None
        async for chunk in stream:
            assert chunk.object == "chat.completion.chunk"
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                parts[choice.index] += choice.delta.content or ""
                if choice.finish_reason:
                    finishes[choice.index] = choice.finish_reason
    assert parts == {c.index: c.message.content for c in whole.choices}
    assert finishes == {0: "stop", 1: "stop"}
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens


def test_stream_is_server_sent_events(sandbox):
    body = {"model": "gpt-4o-mini", "messages": messages(), "stream": True}
    headers = {"Authorization": f"Bearer {KEY}"}
    url = f"{sandbox.url}/openai/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0][6:])
    assert first["choices"][0]["delta"]["role"] == "assistant"


# -- refusals ------------------------------------------------------------------------
def test_bad_key_has_openai_error_shape(sandbox):
    response = httpx.post(
        f"{sandbox.url}/openai/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": messages()},
        headers={"Authorization": "Bearer sk-wrong-key-123456"},
    )
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] is None
    assert error["code"] == "invalid_api_key"
    assert error["message"].startswith("Incorrect API key provided: sk-")
    assert "wrong-key" not in error["message"]  # keys are shown masked


async def test_bad_and_missing_key_through_the_sdk(sandbox):
    async with client(sandbox, key="sk-nope-nope-nope") as ai:
        with pytest.raises(openai.AuthenticationError) as caught:
            await ai.chat.completions.create(model="gpt-4o-mini", messages=messages())
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    response = httpx.get(f"{sandbox.url}/openai/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith("You didn't provide an API key.")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "gpt-4o-mini"}, "messages", "missing_required_parameter"),
        ({"model": "gpt-4o-mini", "messages": []}, "messages", "empty_array"),
        ({"model": "gpt-4o-mini", "messages": messages(), "n": 0}, "n", "integer_below_min_value"),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "hi"}]},
            "messages[0].role",
            "invalid_value",
        ),
        ({"messages": messages()}, None, None),
    ],
)
def test_invalid_requests_are_refused(sandbox, body, param, code):
    response = httpx.post(
        f"{sandbox.url}/openai/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


def test_body_that_is_not_json_is_refused(sandbox):
    response = httpx.post(
        f"{sandbox.url}/openai/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("We could not parse the JSON body")


# -- injected faults -----------------------------------------------------------------
async def test_injected_rate_limit(sandbox):
    sandbox.fault(platform="openai", path="/v1/chat/completions", kind="rate_limit", retry_after=20)
    async with client(sandbox) as ai:
        with pytest.raises(openai.RateLimitError) as caught:
            await ai.chat.completions.create(model="gpt-4o-mini", messages=messages())
    response = caught.value.response
    assert response.status_code == 429
    assert response.headers["retry-after"] == "20"
    assert response.headers["retry-after-ms"] == "20000"
    assert caught.value.code == "rate_limit_exceeded"
    assert "Please try again in 20s" in caught.value.message


async def test_injected_server_error_then_sdk_retry_succeeds(sandbox):
    sandbox.fault(platform="openai", path="/v1/chat/completions", kind="error", remaining=1)
    async with client(sandbox) as ai:
        with pytest.raises(openai.InternalServerError) as caught:
            await ai.chat.completions.create(model="gpt-4o-mini", messages=messages())
    assert caught.value.status_code == 500
    assert caught.value.body["type"] == "server_error"

    sandbox.fault(platform="openai", path="/v1/chat/completions", kind="error", remaining=1)
    async with client(sandbox, retries=1) as ai:
        result = await ai.chat.completions.create(model="gpt-4o-mini", messages=messages())
    assert result.choices[0].message.content
    assert len(sandbox.records(platform="openai", path="/v1/chat/completions")) == 3


# -- models and records --------------------------------------------------------------
async def test_models(sandbox):
    async with client(sandbox) as ai:
        listed = [m.id async for m in ai.models.list()]
        assert "gpt-4o-mini" in listed
        assert (await ai.models.retrieve("gpt-4o-mini")).owned_by == "system"
        with pytest.raises(openai.NotFoundError):
            await ai.models.retrieve("gpt-0")


async def test_records_hold_the_full_json_body(sandbox):
    """What privacy tests read: exactly what the product sent to the AI provider."""
    sent = messages()
    async with client(sandbox) as ai:
        await ai.chat.completions.create(model="gpt-4o-mini", messages=sent, user="u-1")
    (record,) = sandbox.records(platform="openai")
    assert record["method"] == "POST" and record["path"] == "/v1/chat/completions"
    assert record["body"]["messages"] == sent
    assert record["body"]["user"] == "u-1"
    assert record["authorization"] == f"Bearer {KEY}"
