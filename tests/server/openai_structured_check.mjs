// openai_structured_check.mjs — the OpenAI JavaScript SDK (openai@4) against a live claq-server
// serving small-lm-5m: chat.completions.create with response_format json_schema (strict) and
// json_object, whole and streamed; every answer that ended ("stop") must JSON.parse and validate
// against the schema (a validator for the supported subset below), and a strict schema with a
// keyword the grammar cannot enforce (pattern) is a BadRequestError naming it. Then tools: a
// required call whose arguments validate, the same call streamed as delta.tool_calls, and the
// follow-up turn carrying the assistant's tool_calls message and a role "tool" result. Run by
// test_openai_structured.sh.
import OpenAI from 'openai';

const client = new OpenAI({
    baseURL: process.env.CLAQ_SERVER_URL.replace(/\/+$/, '') + '/v1',
    apiKey: process.env.CLAQ_API_KEY || 'unused', maxRetries: 0, timeout: 60_000,
});
let failures = 0, checks = 0, ended = 0;
function check(cond, what, detail) {
    checks++;
    if (!cond) {
        failures++;
        console.log(`FAIL: ${what}${detail === undefined ? '' : ': ' + JSON.stringify(detail)}`);
    }
}

function validate(v, s, root) {
    if (s === true || Object.keys(s).length === 0) return true;
    if (s.$ref) return validate(v, root.$defs[s.$ref.split('/').pop()], root);
    if ('const' in s) return JSON.stringify(v) === JSON.stringify(s.const);
    if (s.enum) return s.enum.some((e) => JSON.stringify(e) === JSON.stringify(v));
    if (s.anyOf) return s.anyOf.some((a) => validate(v, a, root));
    switch (s.type) {
    case 'string': return typeof v === 'string';
    case 'number': return typeof v === 'number';
    case 'integer': return Number.isInteger(v);
    case 'boolean': return typeof v === 'boolean';
    case 'null': return v === null;
    case 'array': return Array.isArray(v) && v.every((x) => validate(x, s.items || {}, root));
    case 'object': {
        if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
        const props = s.properties || {};
        if ((s.required || []).some((k) => !(k in v))) return false;
        if (s.additionalProperties === false && Object.keys(v).some((k) => !(k in props))) return false;
        return Object.entries(v).every(([k, x]) => !(k in props) || validate(x, props[k], root));
    }
    }
    return true;
}

const schema = {
    type: 'object',
    properties: {
        name: { type: 'string' }, age: { type: 'integer' },
        mood: { enum: ['happy', 'sad'] },
        friends: { type: 'array', items: { $ref: '#/$defs/friend' } },
    },
    required: ['name', 'age', 'mood', 'friends'], additionalProperties: false,
    $defs: { friend: { type: 'object', properties: { name: { type: 'string' } },
                       required: ['name'], additionalProperties: false } },
};
const messages = [{ role: 'user', content: 'Tell me about a child, as JSON.' }];

function judge(text, finish, sch, what) {
    if (finish !== 'stop') {
        check(finish === 'length', `${what}: finish_reason`, finish);
        return;
    }
    ended++;
    let v;
    try { v = JSON.parse(text); } catch (e) { check(false, `${what}: JSON.parse`, text); return; }
    check(validate(v, sch, sch), `${what}: validates`, text);
}

for (const [rf, sch] of [
    [{ type: 'json_schema', json_schema: { name: 'child', schema, strict: true } }, schema],
    [{ type: 'json_object' }, { type: 'object' }],
]) {
    for (const temperature of [0, 0.8]) {
        const r = await client.chat.completions.create({
            model: 'small-lm-5m', messages, response_format: rf, max_tokens: 200, temperature, seed: 3, n: 2,
        });
        for (const c of r.choices) judge(c.message.content, c.finish_reason, sch, `${rf.type} t=${temperature}`);
        const stream = await client.chat.completions.create({
            model: 'small-lm-5m', messages, response_format: rf, max_tokens: 200, temperature, seed: 5,
            stream: true,
        });
        let text = '', finish = null;
        for await (const ch of stream) {
            for (const c of ch.choices) {
                text += c.delta?.content || '';
                finish = c.finish_reason || finish;
            }
        }
        judge(text, finish, sch, `${rf.type} streamed t=${temperature}`);
    }
}
check(ended >= 3, 'enough answers ended on EOS', ended);

try {
    await client.chat.completions.create({
        model: 'small-lm-5m', messages, max_tokens: 4,
        response_format: { type: 'json_schema', json_schema: { name: 'x', strict: true, schema: {
            type: 'object', properties: { a: { type: 'string', pattern: '^a' } } } } },
    });
    check(false, 'strict pattern: a 400');
} catch (e) {
    check(e instanceof OpenAI.BadRequestError && /pattern/.test(e.message), 'strict pattern: BadRequestError naming it', e.message);
}
// Tools: one small function (the model reads 256 tokens), called whole and streamed, then the
// follow-up turn with the tool's result.
const clock = { type: 'object', properties: { utc: { type: 'boolean' } }, required: ['utc'],
                additionalProperties: false };
const tools = [{ type: 'function', function: { name: 'clock', description: 'The time', parameters: clock } }];
const ask = [{ role: 'user', content: 'What time is it?' }];
const toolReq = { model: 'small-lm-5m', messages: ask, tools, tool_choice: 'required',
                  parallel_tool_calls: false, max_tokens: 80, temperature: 0 };
const whole = await client.chat.completions.create(toolReq);
const wc = whole.choices[0];
check(wc.finish_reason === 'tool_calls' && wc.message.content === null, 'tools: finish tool_calls, content null', wc);
const calls = wc.message.tool_calls || [];
check(calls.length === 1 && /^call_/.test(calls[0].id) && calls[0].type === 'function' &&
      calls[0].function.name === 'clock', 'tools: one call to clock', calls);
let args = null;
try { args = JSON.parse(calls[0]?.function.arguments); } catch (e) { /* checked below */ }
check(args !== null && validate(args, clock, clock), 'tools: arguments validate', calls[0]?.function.arguments);
const ts = await client.chat.completions.create({ ...toolReq, stream: true });
const acc = [];
let tfinish = null;
for await (const ch of ts) {
    for (const c of ch.choices) {
        for (const d of c.delta?.tool_calls || []) {
            acc[d.index] ??= { id: d.id, name: d.function?.name, arguments: '' };
            acc[d.index].arguments += d.function?.arguments || '';
        }
        tfinish = c.finish_reason || tfinish;
    }
}
check(tfinish === 'tool_calls' && acc.length === 1 && acc[0].name === 'clock' &&
      acc[0].arguments === calls[0]?.function.arguments, 'tools streamed: same call', acc);
const follow = await client.chat.completions.create({
    model: 'small-lm-5m', max_tokens: 8, temperature: 0, tools,
    messages: [...ask, wc.message, { role: 'tool', tool_call_id: calls[0]?.id || 'x', content: '12:00' }],
});
check(follow.choices[0].message.role === 'assistant', 'tools: the follow-up with the result answers', follow.choices[0]);

console.log(`${checks} checks, ${failures} failures, ${ended} answers ended and validated`);
process.exit(failures ? 1 : 0);
