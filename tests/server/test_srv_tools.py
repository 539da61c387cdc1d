#!/usr/bin/env python3
"""test_srv_tools — tool calling on a live claq-server: a LLaMA-3-shaped model (`claq synth
--shape llama3-tiny`, random weights, LLaMA-3's real tokenizer) through the Llama-3.1-Instruct
template it ships (its own tool format: tools in the first user turn, calls written with
"parameters", results as ipython turns), then through ChatML, which has no tool format (the
generic form of docs/api.md); last, one call from small-lm-5m, a real trained model:
  * tool_choice "required" and a named function: the answer is message.tool_calls (id, type,
    function.name, function.arguments as JSON text that validates against the function's
    parameters), content null, finish_reason "tool_calls"; streamed, the delta.tool_calls
    fragments rebuild the same name and arguments, and the id keeps its form;
  * parallel_tool_calls: sampled answers may hold several calls, each valid;
  * "auto": an answer whose first non-blank byte is '{' (forced with logit_bias) is decoded as
    a call and valid; an answer that starts otherwise is free text, never half a call;
  * "none" leaves tools out of the prompt and answers in text;
  * a follow-up carrying the assistant's tool_calls and a role "tool" result is accepted;
  * malformed tools, tool_choice, tool messages and mixes are 400s naming the problem;
  * schema keywords (through ChatML): a non-strict pydantic-style function (minimum, format,
    pattern, readOnly, allOf [$ref], nullable) is called with arguments that keep to what the
    grammar enforces; strict, an unenforceable keyword is a 400 naming it; tool_choice "none"
    compiles no parameters."""
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine"))
from srv_harness import Checker, Server, llama3_tiny, require  # noqa: E402
from test_eng_grammar_validates import validate  # noqa: E402

require("small-lm-5m")
C = Checker()
BRACE = -1           # the token that writes '{' alone (from /tokenize)

# small: the model reads 256 tokens, and its tokenizer spends about one per two bytes of JSON
FORECAST = {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]},
                                             "days": {"type": "integer"}},
            "required": ["city"]}
CLOCK = {"type": "object", "properties": {"utc": {"type": "boolean"}}, "required": ["utc"]}
# $defs and a "#" self-reference inside parameters (moved under the call grammar's root)
ROUTE = {"type": "object", "properties": {
    "via": {"type": "array", "items": {"$ref": "#/$defs/stop"}, "maxItems": 2},
    "then": {"anyOf": [{"type": "null"}, {"$ref": "#"}]}},
    "required": ["via", "then"], "additionalProperties": False,
    "$defs": {"stop": {"enum": ["A", "B"]}}}
TOOLS = [{"type": "function", "function": {"name": "forecast", "parameters": FORECAST}},
         {"type": "function", "function": {"name": "clock", "parameters": CLOCK}},
         {"type": "function", "function": {"name": "route", "parameters": ROUTE}}]
PARAMS = {"forecast": FORECAST, "clock": CLOCK, "route": ROUTE}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
ID = re.compile(r"^call_[0-9a-f]{24}$")


def check_calls(calls, what, only=None):
    """Each call: id, type, a known name, arguments that parse and validate."""
    if not C.check(isinstance(calls, list) and calls, f"{what}: tool_calls {calls!r}"):
        return
    for call in calls:
        fn = call.get("function", {})
        C.check(ID.match(call.get("id", "")) and call.get("type") == "function",
                f"{what}: id/type {call!r}")
        name = fn.get("name")
        C.check(name in PARAMS and (only is None or name == only), f"{what}: name {name!r}")
        try:
            args = json.loads(fn.get("arguments"))
        except (TypeError, ValueError):
            C.check(False, f"{what}: arguments not JSON {fn.get('arguments')!r}")
            continue
        if name in PARAMS:
            C.check(validate(args, PARAMS[name], PARAMS[name]), f"{what}: {args!r} vs {name}")


def streamed(srv, body, what):
    """Rebuilds (content, tool_calls, finish) from a stream's deltas."""
    st, events, _ = srv.sse("/v1/chat/completions", dict(body, stream=True))
    C.check(st == 200 and events and events[-1] == "[DONE]", f"{what}: stream {st}")
    content, calls, finish = "", {}, None
    for ev in events[:-1]:
        ch = ev["choices"][0]
        d = ch.get("delta", {})
        content += d.get("content") or ""
        for tc in d.get("tool_calls") or []:
            k = tc["index"]
            if k not in calls:
                C.check("id" in tc and tc.get("type") == "function" and
                        "name" in tc.get("function", {}), f"{what}: first delta of call {tc!r}")
                calls[k] = {"id": tc.get("id", ""), "type": "function",
                            "function": {"name": tc["function"].get("name"), "arguments": ""}}
            else:
                C.check("id" not in tc and "name" not in tc.get("function", {}),
                        f"{what}: later delta repeats the header {tc!r}")
            calls[k]["function"]["arguments"] += tc.get("function", {}).get("arguments", "")
        finish = ch.get("finish_reason") or finish
    return content, [calls[k] for k in sorted(calls)], finish


def chat(srv, **kw):
    body = {"messages": ASK, "max_tokens": 60, "temperature": 0}
    body.update(kw)
    return srv.post("/v1/chat/completions", body)


def run_calls(srv, label):
    # required, one call at a time: a whole answer and its stream agree
    body = {"messages": ASK, "max_tokens": 60, "temperature": 0, "tools": TOOLS,
            "tool_choice": "required", "parallel_tool_calls": False}
    st, _, r = srv.post("/v1/chat/completions", body)
    C.check(st == 200, f"{label} required: {st} {r}")
    if st == 200:
        ch = r["choices"][0]
        C.check(ch["finish_reason"] == "tool_calls" and ch["message"]["content"] is None,
                f"{label} required: {ch!r}")
        check_calls(ch["message"].get("tool_calls"), f"{label} required")
        C.check(len(ch["message"].get("tool_calls") or []) == 1, f"{label}: one call")
        content, calls, finish = streamed(srv, body, f"{label} required")
        C.check(finish == "tool_calls" and content == "", f"{label} stream: {finish} {content!r}")
        check_calls(calls, f"{label} required stream")
        whole = ch["message"].get("tool_calls") or [{}]
        C.check([c["function"] for c in calls] == [c.get("function") for c in whole],
                f"{label}: stream {calls!r} != whole {whole!r}")

    # cut by max_tokens before the call's name is whole: text, streamed the same as whole (the
    # stream sent nothing at all); cut after it: tool_calls with the arguments written so far,
    # streamed or not, finish_reason "length"
    cut_calls = 0
    for mt in (2, 4, 6, 9, 12, 16):
        b = dict(body, max_tokens=mt)
        st, _, r = srv.post("/v1/chat/completions", b)
        ch = r["choices"][0] if st == 200 else {}
        content, calls, finish = streamed(srv, b, f"{label} max_tokens {mt}")
        msg = ch.get("message") or {}
        whole = msg.get("content")
        if ch.get("finish_reason") == "length" and not calls:
            C.check(content == whole and finish == "length" and not msg.get("tool_calls"),
                    f"{label} max_tokens {mt}: stream {content!r} {finish} != whole {whole!r}")
        elif ch.get("finish_reason") == "length":
            cut_calls += 1
            got = [c.get("function") for c in msg.get("tool_calls") or []]
            C.check(whole is None and finish == "length" and
                    [c["function"] for c in calls] == got,
                    f"{label} max_tokens {mt}: stream {calls!r} {finish} != whole {msg!r}")
    C.check(cut_calls > 0, f"{label}: no max_tokens cut a call after its name")

    # a named function
    for name in ("clock", "route"):
        st, _, r = chat(srv, tools=TOOLS, tool_choice={"type": "function",
                                                       "function": {"name": name}})
        C.check(st == 200 and r["choices"][0]["finish_reason"] in ("tool_calls", "length"),
                f"{label} named {name}: {st} {r}")
        if st == 200 and r["choices"][0]["finish_reason"] == "tool_calls":
            check_calls(r["choices"][0]["message"].get("tool_calls"), f"{label} named", name)
        elif name == "clock":
            C.check(False, f"{label}: a call of clock did not end in 60 tokens")

    # parallel calls allowed, sampled: every answer that ended is calls, each valid
    st, _, r = chat(srv, tools=TOOLS, tool_choice="required", temperature=1.0, seed=11, n=4,
                    max_tokens=90)
    C.check(st == 200, f"{label} parallel: {st} {r}")
    ended = 0
    for ch in (r or {}).get("choices", []):
        if ch["finish_reason"] == "length":
            continue
        ended += 1
        C.check(ch["finish_reason"] == "tool_calls", f"{label} parallel: {ch!r}")
        check_calls(ch["message"].get("tool_calls"), f"{label} parallel")
    C.check(ended > 0, f"{label} parallel: no sampled answer ended in 90 tokens")

    # auto: '{' first makes a call under the grammar
    st, _, r = chat(srv, tools=TOOLS, tool_choice="auto", logit_bias={str(BRACE): 100})
    C.check(st == 200 and r["choices"][0]["finish_reason"] == "tool_calls",
            f"{label} auto + '{{': {st} {r}")
    if st == 200:
        check_calls(r["choices"][0]["message"].get("tool_calls"), f"{label} auto")
    # auto left alone: this story model answers in text, and no text starts a call
    for seed in (1, 2, 3):
        st, _, r = chat(srv, tools=TOOLS, temperature=0.9, seed=seed, max_tokens=20)
        C.check(st == 200, f"{label} auto text: {st} {r}")
        if st != 200:
            continue
        m = r["choices"][0]["message"]
        if m.get("tool_calls"):
            check_calls(m["tool_calls"], f"{label} auto sampled")
        else:
            C.check(not m["content"].lstrip().startswith(("{", "[")),
                    f"{label} auto: text that opens a call {m['content']!r}")


def follow_up(srv, label):
    """The assistant's call and the tool's result go into the next prompt."""
    follow = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "forecast", "arguments": "{\"city\":\"Paris\",\"days\":1}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C, light wind"}]
    st, _, r = chat(srv, messages=follow, tools=TOOLS, max_tokens=8)
    C.check(st == 200 and r["choices"][0]["message"]["role"] == "assistant",
            f"{label} follow-up: {st} {r}")
    st, _, r1 = chat(srv, messages=follow[:2] + [dict(follow[2], content="Rain")], tools=TOOLS,
                     max_tokens=1)
    C.check(st == 200 and r1["usage"]["prompt_tokens"] < r["usage"]["prompt_tokens"],
            f"{label}: the tool's result is in the prompt")
    # /tokenize renders the same prompt: tools, the call and its result as the chat does
    for body, resp in (({"messages": follow, "tools": TOOLS}, r),
                       ({"messages": follow[:2] + [dict(follow[2], content="Rain")],
                         "tools": TOOLS}, r1)):
        st, _, t = srv.post("/tokenize", body)
        C.check(st == 200 and t["count"] == resp["usage"]["prompt_tokens"],
                f"{label}: /tokenize counts the chat's prompt ({t.get('count')} vs "
                f"{resp['usage']['prompt_tokens']})")
    # none: tools stay out of the prompt, the answer is text
    st, _, with_tools = chat(srv, tools=TOOLS, max_tokens=5)
    st2, _, r = chat(srv, tools=TOOLS, tool_choice="none", max_tokens=5)
    C.check(st == 200 and st2 == 200 and r["choices"][0]["message"].get("tool_calls") is None and
            r["usage"]["prompt_tokens"] < with_tools["usage"]["prompt_tokens"],
            f"{label} none: {st2} {r}")


def bad_requests(srv):
    bad = [
        ({"tools": {"type": "function"}}, "tools", "list"),
        ({"tools": [{"type": "retrieval"}]}, "tools", "function"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools", "name"),
        ({"tools": TOOLS + [TOOLS[0]]}, "tools", "both named"),
        # strict: a keyword the grammar cannot enforce is refused by name
        ({"tools": [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {
            "type": "object", "properties": {"s": {"type": "string", "pattern": "x"}}}}}]},
         "tools", "\"pattern\" at #/properties/s cannot be enforced"),
        ({"tools": [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {
            "type": "object", "properties": {"s": {"type": "number", "maximum": 3}}}}}],
          "tool_choice": "required"}, "tools", "\"maximum\""),
        # "none" compiles nothing, but the tools' shape is still checked
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}],
          "tool_choice": "none"}, "tools", "parameters"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "tool_choice", "nope"),
        ({"tools": TOOLS, "tool_choice": "always"}, "tool_choice", "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice", "empty"),
        ({"tools": TOOLS, "response_format": {"type": "json_object"}}, "response_format",
         "tools"),
        ({"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(9)]},
         "tools", "at most 8"),
        ({"tools": TOOLS, "parallel_tool_calls": "yes"}, "parallel_tool_calls", "boolean"),
        ({"functions": [{"name": "f"}]}, "functions", "deprecated"),
        ({"messages": ASK + [{"role": "tool", "content": "x"}]}, "messages", "tool_call_id"),
        ({"messages": ASK + [{"role": "assistant", "tool_calls": [{"id": "c"}]}]}, "messages",
         "tool_calls"),
    ]
    for extra, param, word in bad:
        st, _, r = chat(srv, **extra)
        err = (r or {}).get("error", {})
        C.check(st == 400 and err.get("param") == param and word in err.get("message", ""),
                f"{extra!r}: {st} {r}")
    C.check(srv.request("GET", "/health")[0] == 200, "alive after the bad requests")


# A pydantic / zod style function: Field(ge=1), datetime (format date-time), EmailStr (format
# email), a pattern, readOnly, a v1 allOf [$ref] beside a description, nullable
BOOK = {"type": "object", "properties": {
    "guests": {"type": "integer", "minimum": 1, "maximum": 9},
    "when": {"type": "string", "format": "date-time", "maxLength": 8},
    "email": {"type": "string", "format": "email", "pattern": "^.+@.+$", "readOnly": True},
    "size": {"allOf": [{"$ref": "#/$defs/Size"}], "description": "room size"},
    "note": {"type": "string", "nullable": True, "maxLength": 4}},
    "required": ["guests", "when", "size"], "$defs": {"Size": {"enum": ["S", "L"]}}}


def schema_keywords(srv):
    """Non-strict functions take any schema: what the grammar enforces is kept to, what it
    cannot is ignored; strict ones keep the enforceable and refuse the rest; "none" compiles
    no schema at all."""
    book = [{"type": "function", "function": {"name": "book", "parameters": BOOK}}]
    # what a call must satisfy: BOOK less the ignored pattern
    want = json.loads(json.dumps(BOOK))
    del want["properties"]["email"]["pattern"]
    calls = 0
    for seed in range(4):
        st, _, r = chat(srv, tools=book, tool_choice="required", parallel_tool_calls=False,
                        max_tokens=120, temperature=1, seed=seed)
        C.check(st == 200, f"pydantic-style tool: {st} {r}")
        msg = r["choices"][0]["message"] if st == 200 else {}
        if st != 200 or r["choices"][0]["finish_reason"] != "tool_calls":
            continue   # cut by max_tokens: the arguments so far, not yet JSON
        for call in msg.get("tool_calls") or []:
            calls += 1
            args = json.loads(call["function"]["arguments"])
            C.check(validate(args, want, want), f"pydantic-style tool: {args!r}")
    C.check(calls >= 1, "pydantic-style tool: no call came back whole")
    # the same schema with strict: its pattern cannot be enforced, so a 400 naming it...
    strict = [{"type": "function", "function": {"name": "book", "strict": True,
                                                "parameters": BOOK}}]
    st, _, r = chat(srv, tools=strict, tool_choice="required", max_tokens=4)
    C.check(st == 400 and "\"pattern\" at #/properties/email" in r["error"]["message"],
            f"strict pattern: {st} {r}")
    # ...but with tool_choice "none" no grammar is built and nothing is compiled
    st, _, r = chat(srv, tools=strict, tool_choice="none", max_tokens=4)
    C.check(st == 200 and r["choices"][0]["message"].get("tool_calls") is None,
            f"strict pattern, tool_choice none: {st} {r}")
    st, _, r = chat(srv, tools=[{"type": "function", "function": {"name": "f", "parameters": {
        "type": "string"}}}], tool_choice="none", max_tokens=4)
    C.check(st == 200, f"tool_choice none: a schema no call could use is not compiled: {st} {r}")
    # non-strict with structure the grammar lacks (anyOf beside type): called with any object
    odd = {"type": "object", "properties": {"v": {"type": "string", "anyOf": [{}]}}}
    whole = 0
    for seed in range(1, 7):
        st, _, r = chat(srv, tools=[{"type": "function", "function": {"name": "odd",
                                                                      "parameters": odd}}],
                        tool_choice="required", max_tokens=160, temperature=1, seed=seed)
        C.check(st == 200, f"non-strict unsupported structure: {st} {r}")
        if st != 200 or r["choices"][0]["finish_reason"] != "tool_calls":
            continue   # cut by max_tokens: the arguments so far, not yet JSON
        for call in r["choices"][0]["message"].get("tool_calls") or []:
            whole += 1
            C.check(isinstance(json.loads(call["function"]["arguments"]), dict),
                    f"non-strict unsupported structure: {call!r}")
        break
    C.check(whole >= 1, "non-strict unsupported structure: no call came back whole")
    st, _, r = chat(srv, tools=[{"type": "function", "function": {"name": "odd", "strict": True,
                                                                  "parameters": odd}}],
                    tool_choice="required", max_tokens=4)
    C.check(st == 400 and "anyOf" in r["error"]["message"], f"strict structure: {st} {r}")


def main():
    global BRACE
    with tempfile.TemporaryDirectory() as tmp:
        model = llama3_tiny(tmp)
        # the Llama-3.1 template the model ships: its own tool format ("parameters")
        srv = Server(model)
        try:
            BRACE = srv.post("/tokenize", {"prompt": "{"})[2]["tokens"][-1]
            run_calls(srv, "llama3.1 template")
            follow_up(srv, "llama3.1 template")
            # the template allows one call per turn: two are its raise_exception, a 400
            two = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "clock", "arguments": "{\"utc\":true}"}}] * 2}
            st, _, r = chat(srv, messages=ASK + [two], tools=TOOLS, max_tokens=4)
            C.check(st == 400 and "single tool-calls" in r["error"]["message"],
                    f"two calls: {st} {r}")
            bad_requests(srv)
        finally:
            srv.stop()
        # a layout without a tool format: the generic form ("arguments")
        srv = Server(model, args=("--chat-template", "chatml"))
        try:
            run_calls(srv, "generic")
            follow_up(srv, "generic")
            schema_keywords(srv)
        finally:
            srv.stop()
    # a real trained model (its 256 positions hold one small function)
    srv = Server("small-lm-5m")
    try:
        one = [TOOLS[1]]
        st, _, r = chat(srv, tools=one, tool_choice="required", parallel_tool_calls=False,
                        max_tokens=80)
        C.check(st == 200 and r["choices"][0]["finish_reason"] == "tool_calls",
                f"small-lm-5m: {st} {r}")
        if st == 200:
            check_calls(r["choices"][0]["message"].get("tool_calls"), "small-lm-5m", "clock")
    finally:
        srv.stop()
    C.done()


main()
