#!/usr/bin/env python3
"""test_srv_structured_output — response_format on a live claq-server (small-lm-5m, a story
model whose free output is never JSON): json_object and json_schema on /v1/chat/completions and
/v1/completions, whole and streamed, at temperature 0 and 1, n=2: every answer that ended
("stop") parses and validates against its schema (the subset validator of
tests/engine/test_eng_grammar_validates.py), and streamed deltas concatenate to a valid answer;
string lengths, integer ranges, oneOf, nullable and allOf are kept to and annotations (format)
ignored, strict or not; without strict, keywords the grammar cannot enforce (pattern, a number's
minimum) are ignored; with strict they, like a bad type and a missing name, are 400s that name
the problem."""
# ctest-cost: 42 (about 42 s in its longer pass; ctest -j starts the costliest first)
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine"))
from srv_harness import Server, require  # noqa: E402
from test_eng_grammar_validates import validate  # noqa: E402

require("small-lm-5m")
fails = 0


def check(cond, what):
    global fails
    if not cond:
        fails += 1
        print("FAIL:", what)


PERSON = {"type": "object", "properties": {
    "name": {"type": "string"}, "age": {"type": "integer"},
    "pet": {"anyOf": [{"enum": ["cat", "dog"]}, {"type": "null"}]},
    "tags": {"type": "array", "items": {"type": "string"}},
    "home": {"$ref": "#/$defs/place"}},
    "required": ["name", "age", "pet", "home"], "additionalProperties": False,
    "$defs": {"place": {"type": "object", "properties": {"city": {"type": "string"},
                                                       "zip": {"type": "number"}},
                        "required": ["city"], "additionalProperties": False}}}
ANY_OBJECT = {"type": "object"}


def fmt(schema):
    if schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "t", "schema": schema, "strict": True}}


srv = Server("small-lm-5m")
try:
    ended = 0
    for path in ("/v1/chat/completions", "/v1/completions"):
        for schema in (PERSON, None):
            for temp in (0, 1):
                body = {"max_tokens": 200, "temperature": temp, "seed": 7, "n": 2,
                        "response_format": fmt(schema)}
                if path.endswith("chat/completions"):
                    body["messages"] = [{"role": "user", "content": "Describe a person as JSON."}]
                else:
                    body["prompt"] = "A person as JSON:"
                st, _, r = srv.post(path, body)
                check(st == 200, f"{path} {st} {r}")
                if st != 200:
                    continue
                for c in r["choices"]:
                    text = c["message"]["content"] if "message" in c else c["text"]
                    if c["finish_reason"] != "stop":
                        check(c["finish_reason"] == "length", f"finish {c['finish_reason']}")
                        continue
                    ended += 1
                    try:
                        v = json.loads(text)
                    except ValueError:
                        check(False, f"{path} not JSON: {text!r}")
                        continue
                    check(validate(v, schema or ANY_OBJECT, schema or ANY_OBJECT),
                          f"{path} does not validate: {text!r}")
                # streamed: the deltas concatenate to a valid answer
                body["stream"] = True
                body["n"] = 1
                st, events, _ = srv.sse(path, body)
                check(st == 200 and events and events[-1] == "[DONE]", f"{path} stream {st}")
                parts, finish = [], None
                for e in events[:-1]:
                    for c in e.get("choices", []):
                        d = c.get("delta", {}).get("content") if "delta" in c else c.get("text")
                        parts.append(d or "")
                        finish = c.get("finish_reason") or finish
                if finish == "stop":
                    text = "".join(parts)
                    try:
                        v = json.loads(text)
                        check(validate(v, schema or ANY_OBJECT, schema or ANY_OBJECT),
                              f"streamed answer does not validate: {text!r}")
                    except ValueError:
                        check(False, f"streamed answer is not JSON: {text!r}")
    check(ended >= 4, f"only {ended} answers ended")
    print(f"{ended} whole answers ended on EOS, all valid")

    bad = [
        # strict: what the grammar cannot enforce is refused by name
        ({"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": {
            "type": "object", "properties": {"a": {"type": "string", "pattern": "^a"}}}}},
         "\"pattern\" at #/properties/a cannot be enforced"),
        ({"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": {
            "type": "object", "properties": {"a": {"type": "number", "minimum": 0}}}}},
         "\"minimum\" at #/properties/a cannot be enforced"),
        ({"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": {
            "type": "array", "uniqueItems": True}}}, "\"uniqueItems\""),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "allOf": [{"type": "object", "properties": {"a": {"type": "string"}}},
                      {"type": "object", "properties": {"a": {"type": "integer"}}}]}}},
         "contradicts"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"oneOf": []}}}, "oneOf"),
        ({"type": "json_schema", "json_schema": {"schema": {"type": "string"}}}, "name"),
        ({"type": "xml"}, "json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "date"}}},
         "type"),
        # over the grammar's 64 KiB of schema text (the request body itself is allowed)
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "description": "d" * 70000}}}, "65536"),
    ]
    for rf, word in bad:
        for path, extra in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
                            ("/v1/completions", {"prompt": "hi"})):
            st, _, r = srv.post(path, dict(extra, response_format=rf, max_tokens=4))
            msg = (r or {}).get("error", {}).get("message", "")
            check(st == 400 and word in msg and r["error"].get("param") == "response_format",
                  f"{path} {rf}: {st} {msg}")
    st, _, r = srv.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                                 "response_format": {"type": "text"},
                                                 "max_tokens": 3})
    check(st == 200, f"type text still works: {st}")

    # Under a grammar stop strings do not cut the value (a "}" or " " stop used to end an
    # object mid-way with finish_reason "stop"), whole or streamed
    OBJ_A = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    for temp in (0, 1):
        body = {"prompt": "x", "max_tokens": 60, "temperature": temp, "seed": 3,
                "stop": ["}", " ", ":"], "response_format": fmt(OBJ_A)}
        st, _, r = srv.post("/v1/completions", body)
        c = r["choices"][0] if st == 200 else {}
        if c.get("finish_reason") == "stop":
            try:
                ok = validate(json.loads(c["text"]), OBJ_A, OBJ_A)
            except ValueError:
                ok = False
            check(ok, f"stop strings under a grammar: {c['text']!r} does not validate")
        else:
            check(st == 200 and c.get("finish_reason") == "length", f"stop strings: {st} {r}")
        st, events, _ = srv.sse("/v1/completions", dict(body, stream=True))
        text = "".join(ch.get("text") or "" for e in events[:-1] for ch in e.get("choices", []))
        check(st == 200 and text == c.get("text"), f"streamed the same: {text!r} vs {c.get('text')!r}")

    # enum / const values exactly as given; constraints beside them enforced or refused
    for schema, want in (({"const": 0.30000000000000004}, 0.30000000000000004),
                         ({"const": [1, 2, 3]}, [1, 2, 3]),
                         ({"type": "string", "enum": [1, "a", None]}, "a")):
        st, _, r = srv.post("/v1/completions", {"prompt": "x", "max_tokens": 30, "temperature": 0,
                                                "response_format": fmt(schema)})
        got = r["choices"][0]["text"] if st == 200 else None
        check(st == 200 and got is not None and json.loads(got) == want and
              type(json.loads(got)) is type(want), f"{schema}: {st} {got!r}, want {want!r}")
    for schema, word in (({"type": "string", "enum": [1, 2]}, "enum"),
                         ({"$defs": {"a": {"type": "integer"}}, "$ref": "#/$defs/a",
                           "type": "string"}, "$ref"),
                         ({"enum": ["INF"]}, "out of range")):
        # 1e400 is valid JSON that no double holds (Python would write it as Infinity)
        raw = json.dumps({"prompt": "x", "max_tokens": 4, "response_format": fmt(schema)})
        st, _, r = srv.request("POST", "/v1/completions", raw.replace('"INF"', "1e400").encode(),
                               headers={"Content-Type": "application/json"})
        try:
            r = json.loads(r)
        except (TypeError, ValueError):
            r = {}
        msg = (r or {}).get("error", {}).get("message", "")
        check(st == 400 and word in msg, f"{schema}: 400 naming {word} ({st} {msg})")

    # keywords beyond the old subset: enforced ones kept to in every answer that ends,
    # annotations ignored, strict or not; without strict, unenforceable ones ignored
    LIMITS = {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 3, "exclusiveMaximum": 8, "readOnly": True},
        "s": {"type": "string", "minLength": 2, "maxLength": 5, "format": "date-time"},
        "k": {"oneOf": [{"type": "boolean"}, {"type": "integer", "minimum": 100}]},
        "m": {"type": "string", "enum": ["a", "b"], "nullable": True, "deprecated": True},
        "o": {"allOf": [{"$ref": "#/$defs/base"}, {"type": "object", "properties": {
            "z": {"type": "integer", "maximum": -1}}, "required": ["z"]}],
            "description": "merged"}},
        "required": ["n", "s", "k", "m", "o"], "additionalProperties": False,
        "$defs": {"base": {"type": "object", "properties": {"y": {"type": "string",
                                                                  "maxLength": 3}},
                           "required": ["y"], "contentMediaType": "application/json"}}}
    LOOSE = {"type": "object", "properties": {
        "e": {"type": "string", "pattern": "^[a-z]+@[a-z]+$", "format": "email"},
        "x": {"type": "number", "minimum": 0, "multipleOf": 0.5},
        "n": {"type": "integer", "minimum": 1}},
        "required": ["e", "x", "n"], "additionalProperties": False, "x-origin": "zod"}
    got = 0
    for schema, strict in ((LIMITS, True), (LIMITS, False), (LOOSE, False), (LOOSE, None)):
        for temp, seed in ((0, 0), (1, 1), (1, 2), (1, 3)):
            js = {"name": "t", "schema": schema}
            if strict is not None:
                js["strict"] = strict
            st, _, r = srv.post("/v1/chat/completions", {
                "messages": [{"role": "user", "content": "JSON please"}], "max_tokens": 150,
                "temperature": temp, "seed": seed,
                "response_format": {"type": "json_schema", "json_schema": js}})
            check(st == 200, f"strict={strict} {st} {r}")
            c = r["choices"][0] if st == 200 else {}
            if c.get("finish_reason") != "stop":
                continue
            got += 1
            v = json.loads(c["message"]["content"])
            # LOOSE: structure and n's minimum enforced; pattern and x's limits are not
            want = schema if schema is LIMITS else dict(LOOSE, properties=dict(
                LOOSE["properties"], e={"type": "string"}, x={"type": "number"}))
            check(validate(v, want, want), f"strict={strict}: {v} does not validate")
    check(got >= 4, f"only {got} answers with the newer keywords ended")

    # tool calls: an optional parameter before a required one never dead-ends (in declaration
    # order a comma was allowed after the last property), and parameters must be an object
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}},
        "required": ["b"]}}},
             {"type": "function", "function": {"name": "g", "parameters": {
                 "type": "object", "properties": {"o": {"type": "object", "properties": {
                     "x": {"type": "integer"}, "y": {"type": "boolean"}}, "required": ["y"]}},
                 "required": ["o"]}}}]
    for k, name in enumerate(("f", "g")):
        for seed in range(8):
            st, _, r = srv.post("/v1/chat/completions", {
                "messages": [{"role": "user", "content": "x"}], "seed": seed, "max_tokens": 80,
                "temperature": 1, "tools": [tools[k]],
                "tool_choice": {"type": "function", "function": {"name": name}}})
            fin = r["choices"][0]["finish_reason"] if st == 200 else None
            check(st == 200 and fin in ("tool_calls", "length"),
                  f"tool {name} seed {seed}: {st} {fin} {r if st != 200 else ''}")
    for params in ({"type": "integer"}, {"type": "string"}, {"enum": [1]}):
        st, _, r = srv.post("/v1/chat/completions", {
            "messages": [{"role": "user", "content": "x"}], "max_tokens": 4, "tools": [
                {"type": "function", "function": {"name": "f", "parameters": params}}]})
        msg = (r or {}).get("error", {}).get("message", "")
        check(st == 400 and "object" in msg, f"tool parameters {params}: 400 ({st} {msg})")
finally:
    rc = srv.stop()
check(rc == 0, f"server exit status {rc}")

# A vocabulary that cannot write the value (tinystories-656k has no token holding '{'): the
# grammar only lets whitespace through, and the end token where nothing else continues. That end
# is a 400 unsatisfiable_format (in-band when streaming), never "stop" with text that does not
# parse; a max_tokens cut stays "length" with the valid prefix.
if os.path.isdir(os.path.join(os.environ.get("CLAQ_SHARED", ""), "models/tinystories-656k")):
    ts = Server("tinystories-656k")
    try:
        hi = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0}
        tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        for what, extra in (("json_object", {"response_format": {"type": "json_object"}}),
                            ("tool_choice required", {"tools": [tool],
                                                      "tool_choice": "required"})):
            st, _, r = ts.post("/v1/chat/completions", dict(hi, max_tokens=60, **extra))
            check(st == 400 and r["error"]["code"] == "unsatisfiable_format",
                  f"{what} the vocabulary cannot write: 400 unsatisfiable_format ({st} {r})")
        st, _, raw = ts.request("POST", "/v1/chat/completions", dict(
            hi, max_tokens=60, stream=True, response_format={"type": "json_object"}))
        raw = raw.decode("utf-8", "replace")
        check(st == 200 and "unsatisfiable_format" in raw and "data: [DONE]" in raw and
              '"finish_reason":"stop"' not in raw, f"streamed: the error in-band ({raw[-300:]})")
        st, _, r = ts.post("/v1/chat/completions", dict(
            hi, max_tokens=3, response_format={"type": "json_object"}))
        check(st == 200 and r["choices"][0]["finish_reason"] == "length" and
              not r["choices"][0]["message"]["content"].strip(),
              f"cut by max_tokens first: length, whitespace so far ({st} {r})")
    finally:
        check(ts.stop() == 0, "tinystories-656k server exit status")
print("FAIL" if fails else "ok", fails)
sys.exit(1 if fails else 0)
