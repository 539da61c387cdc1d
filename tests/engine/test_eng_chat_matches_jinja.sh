#!/usr/bin/env bash
# test_eng_chat_matches_jinja.sh — eng_chat_render gives byte for byte what HF's own chat
# templates give when rendered by Jinja2 the way transformers does (sandboxed, trim_blocks,
# lstrip_blocks, bos "<s>", eos "</s>"): the Llama-2-chat-hf template and the ChatML template,
# on every conversation built into test_eng_chat, with and without the generation prompt.
# Skips (77) when test_eng_chat is not built or no python3 with jinja2 is found.
set -u
bin="${CLAQ_BIN:-.}/test_eng_chat"
[ -x "$bin" ] || { echo "SKIP: $bin not built"; exit 77; }
py=""
for cand in python3 "${CLAQ_PYTHON:-}" /usr/bin/python3 python3.11; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import jinja2' >/dev/null 2>&1; then
        py="$cand"
        break
    fi
done
[ -n "$py" ] || { echo "SKIP: no python3 with jinja2"; exit 77; }

"$py" - "$bin" <<'EOF'
import json, subprocess, sys
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

bin_ = sys.argv[1]

# meta-llama/Llama-2-7b-chat-hf tokenizer_config.json "chat_template"
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
# the ChatML template (as shipped by ChatML models and transformers' docs)
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
          "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")

def raise_exception(msg):
    raise TemplateError(msg)

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.globals["raise_exception"] = raise_exception

dump = json.loads(subprocess.run([bin_, "--dump-all"], check=True,
                                  capture_output=True).stdout.decode("utf-8"))
fails = runs = 0
for conv, case in enumerate(dump):
    for name, tmpl in (("llama2", LLAMA2), ("chatml", CHATML)):
        for gen in (0, 1):
            want = env.from_string(tmpl).render(messages=case["messages"],
                                                add_generation_prompt=bool(gen),
                                                bos_token="<s>", eos_token="</s>")
            got = case[name][gen]
            runs += 1
            if got != want:
                fails += 1
                print(f"FAIL conversation {conv} {name} add_generation_prompt={gen}\n"
                      f"  jinja: {want!r}\n  claq:  {got!r}")
if runs < 24:
    print(f"FAIL only {runs} renderings compared")
    fails += 1
print(f"{runs - fails} passed, {fails} failed")
sys.exit(1 if fails else 0)
EOF
