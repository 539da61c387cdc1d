#!/usr/bin/env python3
"""test_eng_grammar_validates — constrained decoding on real models (small-lm-5m, 32000 tokens;
tinystories-656k, 2048 tokens, scalar schemas only): for many random JSON Schemas of the supported subset (nested
objects, enums, const, arrays with minItems/maxItems, strings with minLength/maxLength, integers
with minimum/maximum, anyOf, $defs/$ref) and several seeds and temperatures, every output
that ended on EOS parses as JSON and validates against its schema (a small validator for the
subset below; Debian's python3 has no jsonschema), every output cut by max_tokens is a prefix the
grammar still accepts, and greedy constrained decoding picks the unconstrained argmax whenever the
grammar allows it (so it equals the unconstrained output whenever that one conforms, which is also
checked directly when it happens). Drives build/test_eng_grammar_gen. Exit 77 without models."""
# ctest-cost: 41 (about 41 s in its longer pass; ctest -j starts the costliest first)
import json
import os
import random
import subprocess
import sys

SHARED = os.environ.get("CLAQ_SHARED", "/work/shared")
BIN = os.path.join(os.environ.get("CLAQ_BIN", "build"), "test_eng_grammar_gen")

NAMES = ["name", "age", "city", "tags", "id", "ok", "score", "kind", "items", "note", "x", "y"]
WORDS = ["cat", "dog", "red", "blue", "yes", "no", "Tim", "Lily", "big", "small"]


def rand_schema(rng, depth, defs):
    kinds = ["string", "number", "integer", "boolean", "null", "enum", "const"]
    if depth < 3:
        kinds += ["object", "object", "array", "anyOf"]
        if defs:
            kinds.append("ref")
    k = rng.choice(kinds)
    if k == "object":
        names = rng.sample(NAMES, rng.randint(0, 4))
        props = {n: rand_schema(rng, depth + 1, defs) for n in names}
        req = [n for n in names if rng.random() < 0.7]
        return {"type": "object", "properties": props, "required": req,
                "additionalProperties": False}
    if k == "array":
        a = {"type": "array", "items": rand_schema(rng, depth + 1, defs)}
        if rng.random() < 0.4:
            a["minItems"] = rng.randint(0, 2)
        if rng.random() < 0.4:
            a["maxItems"] = a.get("minItems", 0) + rng.randint(0, 2)
        return a
    if k == "anyOf":
        return {"anyOf": [rand_schema(rng, depth + 1, defs) for _ in range(rng.randint(2, 3))]}
    if k == "enum":
        vals = rng.sample(WORDS, rng.randint(1, 4)) + rng.sample([1, 2, 10, 3.5, None, True], rng.randint(0, 2))
        return {"enum": vals}
    if k == "const":
        return {"const": rng.choice(WORDS + [7, False])}
    if k == "ref":
        return {"$ref": "#/$defs/" + rng.choice(sorted(defs))}
    if k == "string" and rng.random() < 0.3:
        return {"type": ["string", "null"]}
    if k == "string" and rng.random() < 0.4:
        lo = rng.randint(0, 3)
        return {"type": "string", "minLength": lo, "maxLength": lo + rng.randint(0, 6),
                "format": "date"}   # an annotation: ignored
    if k == "integer" and rng.random() < 0.5:
        lo = rng.randint(-30, 30)
        return {"type": "integer", "minimum": lo, "maximum": lo + rng.choice([0, 1, 9, 150])}
    return {"type": k}


def make_schema(rng):
    defs = {}
    if rng.random() < 0.3:
        defs["thing"] = rand_schema(rng, 2, {})
    s = rand_schema(rng, 0 if rng.random() < 0.5 else 1, defs)
    if rng.random() < 0.6:
        names = rng.sample(NAMES, rng.randint(1, 4))
        s = {"type": "object", "properties": {n: (s if i == 0 else rand_schema(rng, 1, defs))
                                              for i, n in enumerate(names)},
             "required": names, "additionalProperties": False}
    if defs:
        s["$defs"] = defs
    return s


def length(v):
    """A string's length as JSON Schema counts it: code points (json.loads joins surrogate
    pairs into one)."""
    return len(v)


def validate(v, s, root):
    """The subset's semantics (JSON Schema draft 2020-12 for these keywords; nullable as
    OpenAPI 3.0; format and other annotations ignored, as 2020-12 does by default)."""
    if s is True or s == {}:
        return True
    if s.get("nullable") is True:
        return v is None or validate(v, {k: x for k, x in s.items() if k != "nullable"}, root)
    if "allOf" in s:
        rest = {k: x for k, x in s.items() if k != "allOf"}
        return all(validate(v, a, root) for a in s["allOf"]) and validate(v, rest, root)
    if "$ref" in s:
        r = s["$ref"]
        rest = {k: x for k, x in s.items() if k != "$ref"}
        return (validate(v, root if r == "#" else root["$defs"][r.split("/")[-1]], root) and
                validate(v, rest, root))
    if isinstance(v, str) and not (s.get("minLength", 0) <= length(v) <=
                                   s.get("maxLength", length(v))):
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if (("minimum" in s and v < s["minimum"]) or ("maximum" in s and v > s["maximum"]) or
                ("exclusiveMinimum" in s and v <= s["exclusiveMinimum"]) or
                ("exclusiveMaximum" in s and v >= s["exclusiveMaximum"])):
            return False
    if "oneOf" in s:
        return sum(1 for a in s["oneOf"] if validate(v, a, root)) == 1
    if "const" in s:
        return json.dumps(v) == json.dumps(s["const"]) and type(v) == type(s["const"])
    if "enum" in s:
        return any(type(v) == type(e) and v == e for e in s["enum"])
    if "anyOf" in s:
        return any(validate(v, a, root) for a in s["anyOf"])
    t = s.get("type")
    if isinstance(t, list):
        return any(validate(v, dict(s, type=x), root) for x in t)
    if t == "string":
        return isinstance(v, str)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "null":
        return v is None
    if t == "array":
        return (isinstance(v, list) and len(v) >= s.get("minItems", 0) and
                len(v) <= s.get("maxItems", len(v)) and
                all(validate(x, s.get("items", {}), root) for x in v))
    if t == "object" or "properties" in s:
        if not isinstance(v, dict):
            return False
        props = s.get("properties", {})
        if any(r not in v for r in s.get("required", [])):
            return False
        if s.get("additionalProperties") is False and any(k not in props for k in v):
            return False
        return all(validate(x, props[k], root) for k, x in v.items() if k in props)
    return True


def run(model, jobs):
    p = subprocess.run([BIN, model], input="".join(json.dumps(j) + "\n" for j in jobs),
                       capture_output=True, text=True, timeout=800)
    if p.returncode != 0:
        print(p.stderr, file=sys.stderr)
        raise SystemExit(f"FAIL: {BIN} exited {p.returncode}")
    return [json.loads(l) for l in p.stdout.splitlines()]


def main():
    models = [m for m in ("small-lm-5m", "tinystories-656k")
              if os.path.isdir(os.path.join(SHARED, "models", m))]
    if not models or not os.path.exists(BIN):
        print("skip: models or test_eng_grammar_gen missing")
        return 77
    # 40 random schemas per model; 16 under ASan + UBSan (CLAQ_TEST_SANITIZED=1), where each
    # costs ~3x more and every schema drives the same compiler and matcher code
    default = "16" if os.environ.get("CLAQ_TEST_SANITIZED") == "1" else "40"
    n_schemas = int(os.environ.get("GRAMMAR_SCHEMAS", default))
    fails = 0
    for model in models:
        rng = random.Random(16)
        if model == "tinystories-656k":
            # its 2048 pieces have no "{" or "[" (and no byte fallback): only scalars, enums and
            # anyOf of them are expressible
            schemas = [rand_schema(rng, 3, {}) for _ in range(n_schemas)]
        else:
            schemas = [make_schema(rng) for _ in range(n_schemas)]
        prompts = ["Once upon a time", "The answer in JSON:", "Tom said"]
        jobs, meta = [], []
        for i, s in enumerate(schemas):
            for seed, temp in ((i, 0.0), (i + 1000, 1.0), (i + 2000, 0.7)):
                jobs.append({"schema": s, "prompt": prompts[i % 3], "seed": seed,
                             "temperature": temp, "max_tokens": 120})
                meta.append((i, temp))
            jobs.append({"schema": None, "prompt": prompts[i % 3], "seed": 0,
                         "temperature": 0.0, "max_tokens": 120})
            meta.append((i, "free"))
        res = run(os.path.join(SHARED, "models", model), jobs)
        ended = cut = checks = same = 0
        free = {}
        for (i, temp), r in zip(meta, res):
            if temp == "free":
                free[i] = r
        for (i, temp), r, j in zip(meta, res, jobs):
            if temp == "free":
                continue
            if "error" in r or "compile_error" in r:
                print(f"FAIL {model} schema {i}: {r.get('error') or r.get('compile_error')}")
                fails += 1
                continue
            checks += r["argmax_allowed"]
            if r["argmax_violations"]:
                print(f"FAIL {model} schema {i}: greedy skipped an allowed argmax "
                      f"{r['argmax_violations']} times")
                fails += 1
            if not r["ended"]:
                cut += 1
                continue
            ended += 1
            try:
                v = json.loads(r["text"])
            except ValueError as e:
                print(f"FAIL {model} schema {i} temp {temp}: not JSON ({e}): {r['text']!r}")
                fails += 1
                continue
            if not validate(v, schemas[i], schemas[i]):
                print(f"FAIL {model} schema {i} temp {temp}: does not validate: {r['text']!r}\n"
                      f"  schema {json.dumps(schemas[i])}")
                fails += 1
            if temp == 0.0:
                f = free[i]
                try:
                    fv = json.loads(f["text"]) if f["ended"] else None
                    conforms = f["ended"] and validate(fv, schemas[i], schemas[i])
                except ValueError:
                    conforms = False
                if conforms:
                    same += 1
                    if f["text"] != r["text"]:
                        print(f"FAIL {model} schema {i}: unconstrained output conforms but the "
                              f"constrained one differs: {f['text']!r} vs {r['text']!r}")
                        fails += 1
        print(f"{model}: {len(schemas)} schemas x 3 runs: {ended} ended and validated, {cut} cut "
              f"by max_tokens; {checks} greedy steps where the argmax was allowed (all taken); "
              f"{same} unconstrained outputs already conformed")
        if ended < len(schemas):
            print(f"FAIL {model}: too few outputs ended ({ended})")
            fails += 1
    print("FAIL" if fails else "ok", fails)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
