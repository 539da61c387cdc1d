// openai_sdk_check.mjs — the official OpenAI JavaScript SDK (openai@4, Node 20) against a live
// claq-server: models, chat and completions, each whole and streamed (with
// stream_options.include_usage), asserting well-formed objects the way SDK users rely on them:
// ids, object types, choices, finish_reason, usage arithmetic, streamed deltas that concatenate to
// the whole (greedy) answer, one usage chunk at the end, typed errors (404 NotFoundError with a
// string code), X-Request-Id, and an aborted stream that leaves the server serving.
// Run by test_openai_sdk.sh with CLAQ_SERVER_URL (and CLAQ_API_KEY) set. Exit 0 = all passed.
import OpenAI from 'openai';

const base = process.env.CLAQ_SERVER_URL;
if (!base) {
    console.error('CLAQ_SERVER_URL is not set');
    process.exit(2);
}
const client = new OpenAI({
    baseURL: base.replace(/\/+$/, '') + '/v1',
    apiKey: process.env.CLAQ_API_KEY || 'unused',
    maxRetries: 0,
    timeout: 60_000,
});

let failures = 0;
let checks = 0;
function check(cond, what, detail) {
    checks++;
    if (!cond) {
        failures++;
        console.log(`FAIL: ${what}${detail === undefined ? '' : ': ' + JSON.stringify(detail)}`);
    }
}
const isInt = (v) => Number.isInteger(v) && v >= 0;

function checkUsage(u, maxTokens, what) {
    check(u && typeof u === 'object', `${what}: usage present`, u);
    if (!u) return;
    check(isInt(u.prompt_tokens) && u.prompt_tokens > 0, `${what}: usage.prompt_tokens`, u);
    check(isInt(u.completion_tokens) && u.completion_tokens >= 1 &&
          u.completion_tokens <= maxTokens, `${what}: usage.completion_tokens in 1..${maxTokens}`, u);
    check(u.total_tokens === u.prompt_tokens + u.completion_tokens,
          `${what}: usage.total_tokens = prompt + completion`, u);
}

function checkFinish(reason, usage, maxTokens, what) {
    check(reason === 'stop' || reason === 'length', `${what}: finish_reason stop|length`, reason);
    if (reason === 'length' && usage)
        check(usage.completion_tokens === maxTokens, `${what}: length means max_tokens used`, usage);
}

function checkCommon(obj, type, model, what) {
    check(typeof obj.id === 'string' && obj.id.length > 0, `${what}: id`, obj.id);
    check(obj.object === type, `${what}: object is ${type}`, obj.object);
    check(Number.isInteger(obj.created) && obj.created > 1.6e9, `${what}: created (unix s)`, obj.created);
    check(obj.model === model, `${what}: model echoes the served id`, obj.model);
    check(Array.isArray(obj.choices), `${what}: choices is an array`, obj.choices);
}

// Consumes a stream; returns { text, chunks, finishes, usageChunks, ids, objects, created }.
async function drain(stream, pick) {
    const r = { text: '', chunks: 0, finishes: [], usage: null, usageChunks: 0, ids: new Set(),
                objects: new Set(), created: new Set(), earlyUsage: 0, emptyChoiceChunks: 0 };
    for await (const chunk of stream) {
        r.chunks++;
        r.ids.add(chunk.id);
        r.objects.add(chunk.object);
        r.created.add(chunk.created);
        if (chunk.usage) {
            r.usageChunks++;
            r.usage = chunk.usage;
            if (chunk.choices && chunk.choices.length) r.earlyUsage++;
        }
        if (!chunk.choices || chunk.choices.length === 0) {
            r.emptyChoiceChunks++;
            continue;
        }
        for (const c of chunk.choices) {
            check(c.index === 0, 'stream: choice index 0', c.index);
            r.text += pick(c) ?? '';
            if (c.finish_reason) r.finishes.push(c.finish_reason);
        }
    }
    return r;
}

function checkStream(r, whole, type, maxTokens, what) {
    check(r.chunks >= 2, `${what}: several chunks`, r.chunks);
    check(r.ids.size === 1 && !r.ids.has(undefined) && !r.ids.has(''),
          `${what}: one id on every chunk`, [...r.ids]);
    check(r.objects.size === 1 && r.objects.has(type), `${what}: object ${type}`, [...r.objects]);
    check(r.created.size === 1, `${what}: one created on every chunk`, [...r.created]);
    check(r.finishes.length === 1, `${what}: exactly one finish_reason`, r.finishes);
    check(r.usageChunks === 1 && r.earlyUsage === 0,
          `${what}: exactly one usage chunk, with empty choices`,
          { n: r.usageChunks, early: r.earlyUsage });
    checkUsage(r.usage, maxTokens, what);
    checkFinish(r.finishes[0], r.usage, maxTokens, what);
    check(r.text === whole.text, `${what}: deltas concatenate to the whole greedy answer`,
          { streamed: r.text, whole: whole.text });
    if (r.usage && whole.usage)
        check(r.usage.completion_tokens === whole.usage.completion_tokens &&
              r.usage.prompt_tokens === whole.usage.prompt_tokens,
              `${what}: same usage as the whole response`, { streamed: r.usage, whole: whole.usage });
}

async function main() {
    // models
    const models = await client.models.list();
    const ids = models.data.map((m) => m.id);
    check(ids.length >= 1, 'models.list returns at least one model', ids);
    for (const m of models.data) {
        check(m.object === 'model', 'model object type', m);
        check(typeof m.owned_by === 'string', 'model owned_by', m);
    }
    const model = ids[0];
    console.log(`served model: ${model}`);

    // chat, whole (withResponse to see the headers too)
    const chatReq = {
        model,
        messages: [
            { role: 'system', content: 'You are a storyteller.' },
            { role: 'user', content: 'Tell me about a little dog.' },
        ],
        max_tokens: 24,
        temperature: 0,
    };
    const { data: chat, response: chatHttp } = await client.chat.completions.create(chatReq).withResponse();
    checkCommon(chat, 'chat.completion', model, 'chat');
    check(chat.choices.length === 1, 'chat: one choice', chat.choices.length);
    const cc = chat.choices[0];
    check(cc.index === 0, 'chat: index 0', cc.index);
    check(cc.message && cc.message.role === 'assistant', 'chat: assistant message', cc.message);
    check(typeof cc.message.content === 'string' && cc.message.content.length > 0,
          'chat: content', cc.message);
    checkUsage(chat.usage, 24, 'chat');
    checkFinish(cc.finish_reason, chat.usage, 24, 'chat');
    const rid = chatHttp.headers.get('x-request-id');
    check(typeof rid === 'string' && rid.length > 0, 'chat: X-Request-Id header', rid);
    console.log(`chat: ${JSON.stringify(cc.message.content)} ` +
                `(${cc.finish_reason}, ${JSON.stringify(chat.usage)})`);

    // chat, streamed
    const chatStream = await client.chat.completions.create({
        ...chatReq, stream: true, stream_options: { include_usage: true },
    });
    const cs = await drain(chatStream, (c) => c.delta?.content);
    checkStream(cs, { text: cc.message.content, usage: chat.usage }, 'chat.completion.chunk', 24,
                'chat stream');

    // completions, whole
    const compReq = { model, prompt: 'Once upon a time', max_tokens: 20, temperature: 0 };
    const comp = await client.completions.create(compReq);
    checkCommon(comp, 'text_completion', model, 'completion');
    check(comp.choices.length === 1, 'completion: one choice', comp.choices.length);
    const pc = comp.choices[0];
    check(pc.index === 0, 'completion: index 0', pc.index);
    check(typeof pc.text === 'string' && pc.text.length > 0, 'completion: text', pc.text);
    checkUsage(comp.usage, 20, 'completion');
    checkFinish(pc.finish_reason, comp.usage, 20, 'completion');
    console.log(`completion: ${JSON.stringify(pc.text)} ` +
                `(${pc.finish_reason}, ${JSON.stringify(comp.usage)})`);

    // completions, streamed
    const compStream = await client.completions.create({
        ...compReq, stream: true, stream_options: { include_usage: true },
    });
    const ps = await drain(compStream, (c) => c.text);
    checkStream(ps, { text: pc.text, usage: comp.usage }, 'text_completion', 20, 'completion stream');

    // a stream without include_usage carries no usage chunk
    const plain = await drain(await client.completions.create({ ...compReq, stream: true }), (c) => c.text);
    check(plain.usageChunks === 0, 'stream without include_usage: no usage chunk', plain.usageChunks);
    check(plain.text === pc.text, 'stream without include_usage: same text', plain.text);

    // typed errors: unknown model -> NotFoundError with a string code
    try {
        await client.chat.completions.create({ ...chatReq, model: 'no-such-model' });
        check(false, 'unknown model must throw');
    } catch (e) {
        check(e instanceof OpenAI.NotFoundError, 'unknown model: NotFoundError', e?.constructor?.name);
        check(e.status === 404, 'unknown model: status 404', e.status);
        check(typeof e.code === 'string' && e.code.length > 0, 'unknown model: string error code', e.code);
        check(typeof e.error?.message === 'string', 'unknown model: error.message', e.error);
        console.log(`unknown model -> ${e.status} ${e.code}: ${e.error?.message}`);
    }
    // invalid parameter -> BadRequestError
    try {
        await client.completions.create({ ...compReq, max_tokens: -1 });
        check(false, 'max_tokens -1 must throw');
    } catch (e) {
        check(e instanceof OpenAI.BadRequestError, 'max_tokens -1: BadRequestError', e?.constructor?.name);
        check(e.status === 400, 'max_tokens -1: status 400', e.status);
    }

    // abort a long stream after its first chunk; the server must go on serving
    const longStream = await client.completions.create({
        ...compReq, max_tokens: 200, stream: true,
    });
    let got = 0;
    for await (const chunk of longStream) {
        if (chunk.choices?.length) got++;
        if (got >= 1) {
            longStream.controller.abort();
            break;
        }
    }
    check(got === 1, 'aborted stream delivered its first chunk', got);
    const again = await client.completions.create(compReq);
    check(again.choices?.[0]?.text === pc.text, 'after an aborted stream: same greedy answer',
          again.choices?.[0]?.text);

    // embeddings: the SDK asks for base64 by default and decodes it; a float request must agree
    const e64 = await client.embeddings.create({ model, input: ['Lily went to the park', 'Zoo'] });
    check(e64.object === 'list' && e64.data?.length === 2, 'embeddings: list of two', e64.object);
    const v0 = e64.data?.[0]?.embedding ?? [];
    const norm = Math.sqrt(v0.reduce((a, x) => a + x * x, 0));
    check(Array.isArray(v0) && v0.length > 0 && Math.abs(norm - 1) < 1e-5,
          'embeddings: decoded vector, unit length', [v0.length, norm]);
    check(isInt(e64.usage?.prompt_tokens) && e64.usage.total_tokens === e64.usage.prompt_tokens,
          'embeddings: usage', e64.usage);
    const ef = await client.embeddings.create({ model, input: 'Lily went to the park',
                                                encoding_format: 'float' });
    const v1 = ef.data?.[0]?.embedding ?? [];
    check(v1.length === v0.length && v1.every((x, i) => Math.abs(x - v0[i]) < 1e-7),
          'embeddings: float = base64 answer, one input = in a list', v1.slice(0, 3));

    console.log(`${checks - failures} passed, ${failures} failed`);
    process.exit(failures ? 1 : 0);
}

main().catch((e) => {
    console.log(`FAIL: unexpected exception: ${e?.constructor?.name}: ${e?.message}`);
    if (e?.error) console.log(JSON.stringify(e.error));
    process.exit(1);
});
