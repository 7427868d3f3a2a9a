"""The OpenAI-compatible server (lazyllm_edge.server) through the official `openai` client and raw HTTP: models,
completions, chat, streaming and not, stop strings, seeds, slot choice by prefix, a client that disconnects, the
bounded queue, and every kind of bad input answered with its status (never a 500), the server serving afterwards."""

import json
import re
import threading
import time

import pytest

from conftest import require_server_deps, start_server, stop_server

KEY = "test-key-123"
N_CTX = 512


@pytest.fixture(scope="module")
def server(default_model_path):
    require_server_deps("openai", "httpx")
    proc, base = start_server(default_model_path, "--parallel", "2", "--queue", "1", "-c", str(N_CTX),
                              "--api-key", KEY)
    yield base
    log = stop_server(proc)
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def client(server):
    import openai

    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(server):
    import httpx

    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
        yield c


def metric(http, name: str, labels: str = "") -> float:
    text = http.get("/metrics").text
    m = re.search(rf"^lazyllm_edge_{name}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def wait_until(condition, state=lambda: None, limit_s: float = 60.0) -> None:
    """Polls `condition` (a hang guard, not a timing check); fails with `state()` when it is not reached."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"condition not reached: {state()}"
        time.sleep(0.05)


def test_server_deps_are_optional():
    """`import lazyllm_edge` loads none of the server's libraries; without them the server says what to install."""
    import subprocess
    import sys

    from conftest import package_home

    code = ("import sys, lazyllm_edge, lazyllm_edge.generator, lazyllm_edge.server; "
            "assert not {'starlette', 'uvicorn', 'sse_starlette'} & set(sys.modules), sorted(sys.modules); "
            "sys.modules['uvicorn'] = None; from lazyllm_edge.server.__main__ import main; sys.exit(main([]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=package_home(), timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [
        "lazyllm-edge-server: the server needs its extra: pip install 'lazyllm_edge[server]' (uvicorn is missing)"]


@pytest.mark.parametrize("args,status,message", [
    (["-t", "0"], 2, "-t must be in [1, 1024], got 0"),
    (["--parallel", "x"], 2, "invalid int value"),
    (["-m", "/nonexistent/model.gguf"], 1, "cannot open model file"),
    (["--lazy", "bogus"], 1, "unknown lazy preset 'bogus'"),
])
def test_bad_command_line(default_model_path, args, status, message):
    import subprocess
    import sys

    from conftest import package_home

    require_server_deps()
    argv = [sys.executable, "-m", "lazyllm_edge.server", "--port", "1"] + (
        args if "-m" in args else ["-m", str(default_model_path)] + args)
    r = subprocess.run(argv, capture_output=True, text=True, cwd=package_home(), timeout=120)
    assert r.returncode == status and message in r.stderr, r.stderr


def test_models(client):
    import openai

    models = client.models.list().data
    assert [m.id for m in models] == ["smollm2-135m"]
    assert client.models.retrieve("smollm2-135m").id == "smollm2-135m"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_not_streaming(client):
    r = client.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": "Say hello."}],
                                       max_tokens=6, temperature=0)
    choice = r.choices[0]
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == "smollm2-135m"
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    assert r.usage.completion_tokens == 6 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + 6
    x = r.model_extra["x_lazyllm"]
    assert len(x["layer_kv_tokens"]) == 30 and x["ttft_ms"] > 0


def test_chat_streaming(client):
    stream = client.chat.completions.create(messages=[{"role": "user", "content": "Count to five."}],
                                            model="smollm2-135m", max_tokens=8, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text and len(finishing) == 1 and finishing[0].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)


def test_stream_is_server_sent_events_ending_with_done(http):
    with http.stream("POST", "/v1/completions", json={"prompt": "One, two,", "max_tokens": 3, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2][6:])
    assert last["choices"][0]["finish_reason"] == "length" and last["usage"]["completion_tokens"] == 3


def test_completions_and_stop_strings(client):
    r = client.completions.create(model="smollm2-135m", prompt="The capital of France is", max_tokens=12,
                                  temperature=0, stop=[".", "\n"])
    choice = r.choices[0]
    assert "Paris" in choice.text and "." not in choice.text and "\n" not in choice.text
    assert choice.finish_reason == "stop" and r.object == "text_completion"
    streamed = client.completions.create(model="smollm2-135m", prompt="The capital of France is", max_tokens=12,
                                         temperature=0, stop=".", stream=True)
    pieces = [c.choices[0] for c in streamed]
    assert "Paris" in "".join(p.text for p in pieces) and pieces[-1].finish_reason == "stop"


def test_token_id_prompt(client):
    r = client.completions.create(model="smollm2-135m", prompt=[1, 504, 3458, 282], max_tokens=2, temperature=0)
    assert r.usage.prompt_tokens == 4 and r.usage.completion_tokens == 2


def test_seed_reproduces(client):
    def sample(seed):
        r = client.completions.create(model="smollm2-135m", prompt="A list of ten random animal names:", max_tokens=16,
                                      temperature=1.0, top_p=1.0, seed=seed)
        return r.choices[0].text

    first, again = sample(42), sample(42)  # computed afresh, then found in the slot's cache
    assert first == again
    assert any(sample(s) != first for s in (43, 44))


def test_follow_up_lands_on_its_conversation_slot(client, http):
    def turn(messages):
        r = client.chat.completions.create(model="smollm2-135m", messages=messages, max_tokens=4, temperature=0)
        return r, messages + [{"role": "assistant", "content": r.choices[0].message.content}]

    a = [{"role": "system", "content": "You are a pirate who talks about the sea, ships and treasure maps."},
         {"role": "user", "content": "Tell me about your ship."}]
    b = [{"role": "system", "content": "You are a chef. You cook Italian food: pasta, risotto and pizza."},
         {"role": "user", "content": "What is for dinner?"}]
    reused_before = metric(http, "prompt_tokens_reused_total")
    ra, a = turn(a)
    rb, b = turn(b)
    slot_a, slot_b = ra.model_extra["x_lazyllm"]["slot"], rb.model_extra["x_lazyllm"]["slot"]
    assert slot_a != slot_b  # the second conversation did not evict the first
    for conversation, first, slot in ((a, ra, slot_a), (b, rb, slot_b)):
        follow, _ = turn(conversation + [{"role": "user", "content": "And then?"}])
        assert follow.model_extra["x_lazyllm"]["slot"] == slot
        cached = follow.usage.prompt_tokens_details.cached_tokens
        assert cached >= first.usage.prompt_tokens  # the first turn's prompt (and at least part of its reply)
    assert metric(http, "prompt_tokens_reused_total") >= reused_before + ra.usage.prompt_tokens + rb.usage.prompt_tokens


def test_disconnect_cancels_and_a_full_queue_answers_503(server, http):
    """Two streams hold both slots, a third request waits in the queue (capacity 1), a fourth is refused with 503
    and Retry-After; the two streams' clients disconnect, their generations are cancelled and the queued request
    is answered."""
    import httpx

    cancelled_before = metric(http, "generations_total", '{finish_reason="cancelled"}')
    long = {"prompt": "Once upon a time, in a land far away, there lived", "max_tokens": 400, "temperature": 1.0,
            "min_p": 0.0, "stream": True, "ignore_eos": True}
    clients = [httpx.Client(base_url=server, headers=http.headers, timeout=120) for _ in range(2)]
    holds = [c.stream("POST", "/v1/completions", json=long) for c in clients]
    responses = [h.__enter__() for h in holds]
    assert [r.status_code for r in responses] == [200, 200]
    lines = [r.iter_lines() for r in responses]  # (kept: an iterator closed early closes its connection)
    for events in lines:
        next(events)  # a first event: the slot is taken
    queued = {}
    waiter = threading.Thread(target=lambda: queued.update(r=http.post(
        "/v1/completions", json={"prompt": "Hi", "max_tokens": 1})))
    waiter.start()
    wait_until(lambda: http.get("/health").json()["queued"] == 1, lambda: (http.get("/health").json(), queued))
    refused = http.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 1})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "server_busy"
    for h, c in zip(holds, clients):  # disconnect mid-stream
        h.__exit__(None, None, None)
        c.close()
    waiter.join(120)
    assert queued["r"].status_code == 200
    wait_until(lambda: http.get("/health").json()["slots_processing"] == 0)
    assert metric(http, "generations_total", '{finish_reason="cancelled"}') == cancelled_before + 2


def test_disconnect_while_waiting_for_a_whole_answer(server, http):
    """A client that gives up on a non-streamed answer cancels its generation too."""
    import httpx

    cancelled_before = metric(http, "generations_total", '{finish_reason="cancelled"}')
    body = {"prompt": "Once upon a time", "max_tokens": 450, "ignore_eos": True, "min_p": 0.0}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server + "/v1/completions", json=body, headers=http.headers, timeout=httpx.Timeout(60, read=0.5))
    wait_until(lambda: metric(http, "generations_total", '{finish_reason="cancelled"}') == cancelled_before + 1,
               lambda: http.get("/metrics").text)
    wait_until(lambda: http.get("/health").json()["slots_processing"] == 0)


BAD_REQUESTS = [
    # (path, body, status, param)
    ("/v1/chat/completions", b'{"messages": [', 400, "body"),
    ("/v1/chat/completions", b"\xff\xfe", 400, "body"),
    ("/v1/chat/completions", b"[1, 2]", 400, "body"),
    ("/v1/chat/completions", {"messages": "hello"}, 400, "messages"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages"),
    ("/v1/chat/completions", {}, 400, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400,
     "messages[0].content[0]"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, 400, "temperature"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "temperature": 7}, 400, "temperature"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}, 400, "max_tokens"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": True}, 400, "max_tokens"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, 400, "stream"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_p": 0}, 400, "top_p"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": 1}},
     400, "stream_options.include_usage"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5}, 400, "stop"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stop": 3}, 400, "stop"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "seed": "1"}, 400, "seed"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "frequency_penalty": 0.5}, 400,
     "frequency_penalty"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "presence_penalty": 1}, 400,
     "presence_penalty"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 2}, 400, "n"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "logprobs": True}, 400, "logprobs"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "lazy": "1:2:3"}, 400, "lazy"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "lazy": 5}, 400, "lazy"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "\\ud800"}]}', 400, "messages"),
    ("/v1/completions", {"prompt": None}, 400, "prompt"),
    ("/v1/completions", {"prompt": ["a", "b"]}, 400, "prompt"),
    ("/v1/completions", {"prompt": [1, 10**9]}, 400, "prompt"),
    ("/v1/completions", {"prompt": "x", "model": 3}, 400, "model"),
    ("/v1/completions", {"prompt": "x", "model": "gpt-4"}, 404, "model"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "model": "nope"}, 404, "model"),
]


@pytest.mark.parametrize("path,body,status,param", BAD_REQUESTS,
                         ids=[f"{i}-{b[3]}" for i, b in enumerate(BAD_REQUESTS)])
def test_bad_input_is_answered_with_its_status(http, path, body, status, param):
    r = http.post(path, content=body) if isinstance(body, bytes) else http.post(path, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"] and error["type"]


def test_prompt_longer_than_the_context(client):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="smollm2-135m", prompt="word " * 700, max_tokens=1)
    message = e.value.body["message"]
    n_prompt = int(re.search(r"has (\d+) tokens", message).group(1))
    assert n_prompt > N_CTX and str(N_CTX) in message and e.value.body["code"] == "context_length_exceeded"


def test_api_key(server):
    import httpx
    import openai

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.post(server + "/v1/completions", json={"prompt": "x", "max_tokens": 1}, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(server + "/v1/models", headers=headers).status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0).models.list()
    assert httpx.get(server + "/health").status_code == 200  # health and the page need no key
    assert httpx.get(server + "/").status_code == 200


def test_garbage_never_costs_the_server(server, http, client):
    """Random JSON in every field: a status below 500 for each, and the server answers normally afterwards."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    def containers(children):
        return st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)

    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                               containers, max_leaves=6)
    fields = st.sampled_from(["model", "messages", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p",
                              "repeat_penalty", "stop", "seed", "stream", "ignore_eos", "stream_options", "n", "logprobs", "lazy",
                              "frequency_penalty", "response_format", "tools", "logit_bias", "echo", "suffix"])

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(path=st.sampled_from(["/v1/completions", "/v1/chat/completions"]),
           garbage=st.dictionaries(fields, json_values, min_size=1, max_size=3))
    def check(path, garbage):
        body = {"prompt": "Hi", "messages": [{"role": "user", "content": "Hi"}], **garbage, "max_tokens": 1}
        r = http.post(path, content=json.dumps(body))  # (ASCII escapes: lone surrogates too)
        assert r.status_code < 500, (body, r.text)
        assert r.status_code in (200, 400, 404), (body, r.text)

    check()
    assert 'code="500"' not in http.get("/metrics").text
    r = client.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert r.choices[0].finish_reason in ("length", "stop")


def test_metrics_text(http):
    text = http.get("/metrics").text
    for name in ("requests_total", "prompt_tokens_total", "completion_tokens_total", "prompt_tokens_reused_total",
                 "time_to_first_token_seconds_bucket", "prompt_fraction_computed", "slots_busy", "queue_length"):
        assert f"lazyllm_edge_{name}" in text
    assert metric(http, "time_to_first_token_seconds_count") >= 1
    assert metric(http, "requests_total", '{endpoint="/v1/completions",code="400"}') >= 1


def test_lazy_request_prunes(client):
    prompt = "Notes: " + " ".join(f"item {i} is {i * 7}." for i in range(40)) + " What is item 3?"
    r = client.completions.create(model="smollm2-135m", prompt=prompt, max_tokens=2, temperature=0,
                                  extra_body={"lazy": "balanced"})
    x = r.model_extra["x_lazyllm"]
    assert x["prompt_fraction_computed"] < 1.0
    assert min(x["prompt_layer_kv_tokens"]) < max(x["prompt_layer_kv_tokens"])
