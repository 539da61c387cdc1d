// k8s_validate.mjs — validates Kubernetes manifests offline against the OpenAPI schemas shipped
// in kubernetes-models (built-in kinds) and @kubernetes-models/prometheus-operator (ServiceMonitor),
// with @kubernetes-models/validate's ajv. Used by test_k8s_manifests.py, not a test itself.
//   node k8s_validate.mjs FILE.yaml...   -> one JSON line per document on stdout:
//   {"file", "index", "apiVersion", "kind", "name", "ok", "error", "object"}
// Exit 0 when every document validated, 1 otherwise, 2 on a usage or parse error.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

// apiVersion "group/version" (or "v1") -> the module holding that group's model classes
function modulePath(apiVersion) {
    if (apiVersion.startsWith("monitoring.coreos.com/"))
        return `@kubernetes-models/prometheus-operator/${apiVersion}`;
    return `kubernetes-models/${apiVersion}`;
}

const files = process.argv.slice(2);
if (!files.length) {
    console.error("usage: node k8s_validate.mjs FILE.yaml...");
    process.exit(2);
}
let bad = 0;
for (const file of files) {
    const docs = parseAllDocuments(readFileSync(file, "utf8"));
    for (const [index, doc] of docs.entries()) {
        if (doc.errors.length) {
            console.error(`${file}: YAML error: ${doc.errors[0].message}`);
            process.exit(2);
        }
        const obj = doc.toJS();
        if (obj === null || obj === undefined)
            continue;                                   // an empty document (trailing ---)
        const out = { file, index, apiVersion: obj.apiVersion, kind: obj.kind,
                      name: obj.metadata && obj.metadata.name, ok: false, error: null, object: obj };
        try {
            const mod = await import(modulePath(String(obj.apiVersion)));
            const Model = mod[obj.kind];
            if (typeof Model !== "function")
                throw new Error(`no schema for ${obj.apiVersion} ${obj.kind}`);
            new Model(obj).validate();                  // throws with the schema's complaint
            out.ok = true;
        } catch (e) {
            out.error = String(e && e.message || e);
            bad++;
        }
        console.log(JSON.stringify(out));
    }
}
process.exit(bad ? 1 : 0);
