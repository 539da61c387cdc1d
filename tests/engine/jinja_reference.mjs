// jinja_reference.mjs — renders {"templates", "cases"} (test_eng_jinja --render's input) with
// @huggingface/jinja, the renderer transformers.js uses, and prints one result per case as a
// JSON array ({"ok": true, "out"} or {"ok": false, "error"}). Used by
// test_eng_jinja_matches_reference.sh as a second reference beside Python's jinja2.
import { readFileSync } from "node:fs";
import { Template } from "@huggingface/jinja";

const input = JSON.parse(readFileSync(0, "utf8"));
const compiled = {};
for (const [name, src] of Object.entries(input.templates)) {
    try {
        compiled[name] = new Template(src);
    } catch (e) {
        compiled[name] = e;
    }
}
const out = input.cases.map((c) => {
    const t = compiled[c.t];
    if (t instanceof Error) return { ok: false, error: String(t.message) };
    try {
        // raise_exception and strftime_now are @huggingface/jinja globals already
        return { ok: true, out: t.render({ ...c.vars }) };
    } catch (e) {
        return { ok: false, error: String(e && e.message) };
    }
});
process.stdout.write(JSON.stringify(out) + "\n");
