// tok_bytelevel_ref.mjs — the reference side of test_tok_bytelevel_hf.py and
// test_tok_hf_added_normalized.py (not a test itself):
//   node tok_bytelevel_ref.mjs fixture DIR KIND   writes DIR/tokenizer.json + tokenizer_config.json
//       built at test time from llama3-tokenizer-js's LLaMA-3 vocabulary and merges (nothing is
//       committed): KIND llama3 = the real LLaMA-3 layout (Split with the LLaMA-3 regex + ByteLevel,
//       ignore_merges, TemplateProcessing adding <|begin_of_text|>, 256 special tokens, and
//       Llama-3.1-Instruct's chat template from templates/ in tokenizer_config.json); qwen2 = the
//       same vocabulary behind Qwen2's single-digit regex, merges as [a, b] pairs, no BOS;
//       gpt2 = ByteLevel alone (GPT-2 regex, add_prefix_space) without ignore_merges.
//   node tok_bytelevel_ref.mjs encode DIR BOS     stdin: JSON strings, one per line; stdout: ids
//   node tok_bytelevel_ref.mjs decode DIR         stdin: id lists; stdout: JSON strings
// Encoding and decoding are @huggingface/tokenizers' (tokenizers.js, HF's own JS port).
import fs from 'node:fs';
import readline from 'node:readline';

const [mode, dir, arg] = process.argv.slice(2);
const LLAMA3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2 = LLAMA3.replace('\\p{N}{1,3}', '\\p{N}');

async function fixture() {
    const { default: l3 } = await import('llama3-tokenizer-js');
    const vocab = {};
    for (let i = 0; i < 128000; i++) vocab[l3.vocabById[i]] = i;
    const pairs = [];
    for (const key of l3.merges.keys()) pairs.push(key.split(' '));
    const added = [];
    for (let i = 128000; i < l3.vocabById.length; i++)
        added.push({ id: i, content: l3.vocabById[i], single_word: false, lstrip: false,
                     rstrip: false, normalized: false, special: true });
    const kind = arg || 'llama3';
    const bos = '<|begin_of_text|>';
    const tj = {
        version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
        pre_tokenizer: kind === 'gpt2'
            ? { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true }
            : { type: 'Sequence', pretokenizers: [
                  { type: 'Split', pattern: { Regex: kind === 'qwen2' ? QWEN2 : LLAMA3 },
                    behavior: 'Isolated', invert: false },
                  { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true,
                    use_regex: false }] },
        post_processor: kind === 'llama3'
            ? { type: 'TemplateProcessing',
                single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
                pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
                       { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
                special_tokens: { [bos]: { id: bos, ids: [128000], tokens: [bos] } } }
            : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
        decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
        model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
                 end_of_word_suffix: null, fuse_unk: false, byte_fallback: false,
                 ignore_merges: kind !== 'gpt2', vocab,
                 merges: kind === 'qwen2' ? pairs : pairs.map(p => p.join(' ')) },
    };
    const here = new URL('.', import.meta.url).pathname;
    const cfg = kind === 'llama3'
        ? { bos_token: bos, eos_token: '<|eot_id|>', clean_up_tokenization_spaces: true,
            model_max_length: 131072, tokenizer_class: 'PreTrainedTokenizerFast',
            chat_template: fs.readFileSync(here + 'templates/llama-3.1-instruct.jinja', 'utf8') }
        : { bos_token: null, eos_token: '<|end_of_text|>', clean_up_tokenization_spaces: false,
            tokenizer_class: 'PreTrainedTokenizerFast' };
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(dir + '/tokenizer.json', JSON.stringify(tj));
    fs.writeFileSync(dir + '/tokenizer_config.json', JSON.stringify(cfg));
}

async function run() {
    const { Tokenizer } = await import('@huggingface/tokenizers');
    const tok = new Tokenizer(JSON.parse(fs.readFileSync(dir + '/tokenizer.json', 'utf8')),
                              JSON.parse(fs.readFileSync(dir + '/tokenizer_config.json', 'utf8')));
    const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
    const out = [];
    for await (const line of rl) {
        if (!line) continue;
        const v = JSON.parse(line);
        if (mode === 'encode')
            out.push(tok.encode(v, { add_special_tokens: arg === '1' }).ids.join(' '));
        else
            out.push(JSON.stringify(tok.decode(v, { skip_special_tokens: true,
                                                    clean_up_tokenization_spaces: false })));
    }
    process.stdout.write(out.join('\n') + '\n');
}

if (mode === 'fixture') await fixture();
else await run();
