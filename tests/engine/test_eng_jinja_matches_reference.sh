#!/usr/bin/env bash
# test_eng_jinja_matches_reference.sh — claq's Jinja interpreter renders real HF chat templates
# byte for byte as Python's jinja2 does when configured as transformers configures it
# (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, raise_exception,
# HF's tojson and strftime_now): Llama-2-chat, Llama-3.1-8B-Instruct (with and without a
# system message, with tools, date_string and tools_in_user_message variants),
# Mistral-7B-Instruct v0.1 and v0.3 (with tools), Yi chat (ChatML, two variants), and a
# template exercising the other constructs (macros, namespaces, loop attributes, filters,
# tests, slices, string methods), on seeded random conversations: unicode, whitespace, braces,
# quotes, control-token text, and role orders that must raise. A jinja2 error must be a claq
# error. The tainted ranges claq reports must be well-formed, come from message contents and
# cover every content. @huggingface/jinja (tests/engine/package.json) renders the same cases
# too when installed: where it agrees with jinja2, claq must agree with it; where the two
# references disagree, that is reported and not counted against claq.
# Skips (77) when test_eng_jinja is not built or no python3 with jinja2 is found.
set -u
bin="${CLAQ_BIN:-.}/test_eng_jinja"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ -x "$bin" ] || { echo "SKIP: $bin not built"; exit 77; }
py=""
for cand in "${CLAQ_PYTHON:-}" /usr/bin/python3 python3; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import jinja2' >/dev/null 2>&1; then
        py="$cand"
        break
    fi
done
[ -n "$py" ] || { echo "SKIP: no python3 with jinja2"; exit 77; }
node_ok=0
if command -v node >/dev/null 2>&1; then
    bash "$here/../npm_ensure.sh" "$here" @huggingface/jinja && node_ok=1
fi
[ "$node_ok" = 1 ] || echo "NOTE: @huggingface/jinja not installed: comparing with jinja2 only"

CLAQ_JINJA_NODE="$node_ok" "$py" - "$bin" "$here" <<'EOF'
import json, os, random, subprocess, sys
from datetime import datetime
import jinja2.ext
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

bin_, here = sys.argv[1], sys.argv[2]
TEMPLATES_DIR = os.path.join(here, "templates")   # the real templates too long to inline
use_node = os.environ.get("CLAQ_JINJA_NODE") == "1"
NOW = 1721995200  # 26 Jul 2024, for strftime_now

# meta-llama/Llama-2-7b-chat-hf
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
          "{% set system_message = messages[0]['content'] %}{% else %}"
          "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
          "{% for message in loop_messages %}{% if (message['role'] == 'user') != "
          "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
          "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and "
          "system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
          "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}"
          "{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
          "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
          "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
          "{% endif %}{% endfor %}")

# meta-llama/Llama-3.1-8B-Instruct
LLAMA31 = open(os.path.join(TEMPLATES_DIR, "llama-3.1-instruct.jinja"), encoding="utf-8").read()

# mistralai/Mistral-7B-Instruct-v0.1
MISTRAL01 = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
             "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
             "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
             "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
             "'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}"
             "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"
             "{% endfor %}")

# mistralai/Mistral-7B-Instruct-v0.3
MISTRAL03 = r'''{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
'''

# 01-ai/Yi-6B-Chat (ChatML)
YI = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
      "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
      "{{ '<|im_start|>assistant\n' }}{% endif %}")
# 01-ai/Yi-34B-Chat style: system printed bare, user turns open the assistant turn
YI34 = ("{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}"
        "{% endif %}{% if system_message is defined %}{{ system_message }}{% endif %}"
        "{% for message in messages %}{% set content = message['content'] %}"
        "{% if message['role'] == 'user' %}{{ '<|im_start|>user\\n' + content + "
        "'<|im_end|>\\n<|im_start|>assistant\\n' }}{% elif message['role'] == 'assistant' %}"
        "{{ content + '<|im_end|>' + '\\n' }}{% endif %}{% endfor %}")

# the remaining constructs, on message contents
CONSTRUCTS = r'''{%- macro turn(role, text, idx=0) -%}
<{{ role|upper }}#{{ idx }}>{{ text }}</{{ role|capitalize }}>
{%- endmacro -%}
{%- set ns = namespace(users=0, chars=0, last='') -%}
{# comment {{ not rendered }} #}
{%- for m in messages if m.role != 'system' -%}
  {%- set ns.users = ns.users + (1 if m.role == 'user' else 0) -%}
  {%- set ns.chars = ns.chars + m.content|length -%}
  {%- set ns.last = m.content -%}
  {{ turn(m.role, m.content.strip(), loop.index) }}
  {% if loop.first %}[first {{ loop.length }}]{% endif %}
  {%- if not loop.last %}|{{ loop.revindex }}{% else %};{% endif %}
  {{ m.content[:3] ~ '~' ~ m.content[-2:] }}{{ m.content[::2]|length }}
  {{- (m.content.split()|join('_'))[:20] -}}
  {% set parts = m.content.split('\n') %}{{ parts|length }}{{ parts|first|trim }}
  {{ m.content|replace('<', '&lt;')|trim }}{{ m.content|tojson }}
  {%- if m.content is string and m.content.startswith(' ') %}(ws){% endif %}
  {{ 'E' if m.content == '' else 'N' }}{{ m.content|default('d', true) }}
{% endfor %}
{{ ns.users }}/{{ ns.chars }}/{{ ns.last|length }}{{ messages|map(attribute='role')|join(',') }}
{{ messages|selectattr('role', 'equalto', 'user')|list|length }}{{ (messages|last).role }}
{% raw %}{{ raw }}{% endraw %}
{{ strftime_now("%d %b %Y") }}{{ messages[1:]|length }}{{ range(3)|list }}{{ [1, 'a', none] }}
{{ {'k': messages[0].content}|tojson(indent=2) }}
{% set blk %}{{ messages[0].content|trim }}!{% endset %}{{ blk }}
{%- if add_generation_prompt %}ASSISTANT:{% endif %}'''

TEMPLATES = {"llama2": LLAMA2, "llama31": LLAMA31, "mistral01": MISTRAL01,
             "mistral03": MISTRAL03, "yi": YI, "yi34": YI34, "constructs": CONSTRUCTS}

def raise_exception(message):
    raise TemplateError(message)

def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)

def strftime_now(fmt):
    return datetime.fromtimestamp(NOW).strftime(fmt)

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                    extensions=[jinja2.ext.loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now
compiled = {k: env.from_string(v) for k, v in TEMPLATES.items()}

rng = random.Random(12)
PIECES = ["hello", "world", " ", "  ", "\n", "\n\n", "\t", "é", "中文", "😀", "\u00a0",
          "\u2028", "{{ x }}", "{% if %}", "{#", "}}", "'", '"', "\\", "\\n", "<|im_end|>",
          "<|im_start|>", "<|eot_id|>", "[INST]", "</s>", "<s>", "<<SYS>>", "a-b", "(x)",
          "Lily", "needle", "0", "1.5", "%s", "{}", "\x01", "\u3000", "Ω", "ß"]

def content():
    k = rng.choice([0, 1, 1, 2, 3, 5, 8, 13])
    return "".join(rng.choice(PIECES) for _ in range(k))

def conversation():
    msgs = []
    if rng.random() < 0.4:
        msgs.append({"role": "system", "content": content()})
    n = rng.randint(1, 6)
    for i in range(n):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": content()})
    r = rng.random()
    if r < 0.08 and len(msgs) > 1:      # two in a row
        j = rng.randrange(len(msgs))
        msgs.insert(j, dict(msgs[j]))
    elif r < 0.14:                       # unknown role
        msgs[rng.randrange(len(msgs))]["role"] = rng.choice(["tool", "developer", "bot"])
    elif r < 0.18 and msgs[0]["role"] != "system":   # starts with assistant
        msgs.insert(0, {"role": "assistant", "content": content()})
    return msgs

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description":
          "Weather \"now\" in é", "parameters": {"type": "object", "properties": {"city":
          {"type": "string"}, "n": {"type": "integer", "enum": [1, 2.5, None, True]}},
          "required": ["city"]}}}]

cases = []
for _ in range(400):
    msgs = conversation()
    for name in TEMPLATES:
        gen = rng.random() < 0.5
        cases.append({"t": name, "now": NOW, "vars": {
            "messages": msgs, "add_generation_prompt": gen, "bos_token": "<s>",
            "eos_token": "</s>", "tools": None, "documents": None}})
# non-chat variables: tools, date_string, tools_in_user_message, builtin tools
for _ in range(30):
    msgs = [{"role": "user", "content": content()}]
    if rng.random() < 0.5:
        msgs.insert(0, {"role": "system", "content": content()})
    for name, extra in (("llama31", {"tools": TOOLS}),
                        ("llama31", {"tools": TOOLS, "tools_in_user_message": False}),
                        ("llama31", {"date_string": "01 Jan 2025"}),
                        ("llama31", {"builtin_tools": ["brave_search", "code_interpreter"]}),
                        ("mistral03", {"tools": TOOLS})):
        v = {"messages": msgs, "add_generation_prompt": True, "bos_token": "<|begin_of_text|>",
             "eos_token": "</s>", "tools": None, "documents": None}
        v.update(extra)
        cases.append({"t": name, "now": NOW, "vars": v})
# tool calls and tool results
call = {"role": "assistant", "tool_calls": [{"id": "abcDEF123", "type": "function", "function":
        {"name": "get_weather", "arguments": {"city": "Paris \"é\""}}}]}
res = {"role": "tool", "tool_call_id": "abcDEF123", "content": "22 C"}
for name in ("llama31", "mistral03"):
    for msgs in ([{"role": "user", "content": "weather?"}, call, res],
                 [{"role": "user", "content": "weather?"}, dict(call, tool_calls=[])]):
        cases.append({"t": name, "now": NOW, "vars": {"messages": msgs, "tools": TOOLS,
                      "add_generation_prompt": True, "bos_token": "<s>", "eos_token": "</s>",
                      "documents": None}})

def jinja_render(c):
    try:
        return {"ok": True, "out": compiled[c["t"]].render(**c["vars"])}
    except Exception as e:   # TemplateError, UndefinedError, TypeError ...
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}

want = [jinja_render(c) for c in cases]
payload = json.dumps({"templates": TEMPLATES, "cases": cases}, ensure_ascii=False).encode()
got = json.loads(subprocess.run([bin_, "--render"], input=payload, check=True,
                                capture_output=True).stdout.decode("utf-8"))
ref2 = None
if use_node:
    p = subprocess.run(["node", os.path.join(here, "jinja_reference.mjs")], input=payload,
                       capture_output=True, cwd=here)
    if p.returncode == 0:
        ref2 = json.loads(p.stdout.decode("utf-8"))
    else:
        print("NOTE: @huggingface/jinja run failed:", p.stderr.decode()[-500:])

fails = 0
errs = 0
node_agree = node_disagree = 0
disagree_by = {}
for i, (c, w, g) in enumerate(zip(cases, want, got)):
    bad = None
    if w["ok"] != g["ok"]:
        bad = f"jinja2 {'ok' if w['ok'] else 'error'} vs claq {'ok' if g['ok'] else 'error'}"
    elif w["ok"] and w["out"] != g["out"]:
        bad = "output differs"
    elif g["ok"]:
        out = g["out"].encode()
        contents = [m["content"].encode() for m in c["vars"]["messages"]
                    if isinstance(m.get("content"), str)]
        # user text: every string in a message but its role, as is or as tojson wrote it
        user = []
        def walk(v, key=None):
            if isinstance(v, str) and key != "role":
                user.append(v.encode())
            if isinstance(v, (str, dict, list)) and key != "role":
                user.append(json.dumps(v, ensure_ascii=False).encode())
            if isinstance(v, dict):
                for k, x in v.items():
                    walk(x, k)
            elif isinstance(v, list):
                for x in v:
                    walk(x)
        for m in c["vars"]["messages"]:
            walk(m)
        prev = -1
        for b, e in g["spans"]:
            if not (prev < b < e <= len(out) if prev >= 0 else 0 <= b < e <= len(out)):
                bad = f"bad span {b}-{e}"
            frag = out[b:e]
            if not any(frag in x for x in user) and frag not in b"".join(contents) \
                    and c["t"] != "constructs":
                bad = f"span {b}-{e} {frag!r} is not message text"
            prev = e
        if c["t"] != "constructs" and "tools" not in c["vars"].get("messages", [{}])[0]:
            spans_text = [out[b:e] for b, e in g["spans"]]
            for x in contents:
                s = x.decode().strip().encode()
                if s and s in out and not any(s in t for t in spans_text):
                    bad = f"content {s[:40]!r} not inside a tainted span"
                    break
    else:
        errs += 1
    if bad:
        fails += 1
        if fails <= 10:
            print(f"FAIL case {i} template {c['t']}: {bad}\n  vars: {json.dumps(c['vars'])[:400]}"
                  f"\n  jinja2: {json.dumps(w)[:600]}\n  claq:   {json.dumps(g)[:600]}")
    if ref2 is not None:
        r2 = ref2[i]
        same = (r2["ok"] == w["ok"]) and (not w["ok"] or r2["out"] == w["out"])
        if same:
            node_agree += 1
        else:
            node_disagree += 1
            disagree_by[c["t"]] = disagree_by.get(c["t"], 0) + 1
print(f"{len(cases)} renderings ({len(cases) - errs - fails} rendered, {errs} errors as jinja2 "
      f"raised) over {len(TEMPLATES)} templates: {fails} mismatches with jinja2")
if ref2 is not None:
    print(f"@huggingface/jinja: agrees with jinja2 (and so with claq) on {node_agree}, "
          f"differs from jinja2 on {node_disagree} {disagree_by} (its own divergences: not "
          f"counted)")
if len(cases) < 2000:
    print("FAIL too few cases")
    fails += 1
sys.exit(1 if fails else 0)
EOF
