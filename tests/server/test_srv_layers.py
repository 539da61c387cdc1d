"""test_srv_layers.py — the include rule of docs/layers.md, checked on every C/CUDA file: between
top-level folders (kernels <- engine <- quant <- engine/tool; server on engine; backend-private
headers only inside kernels/) and, inside server/, between the layers base, http, sched, state,
gen, api and top. A file the tables do not place fails the test, so the map stays complete.
Reads the sources only (no build needed)."""
import os
import re
import sys

SRC = os.environ.get("CLAQ_SRC", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                              "..", ".."))

# server/: file (without extension, or with it where .h and .c differ) -> layer
SERVER_LAYER = {
    "srv_buf": "base", "srv_json": "base", "srv_limits": "base", "srv_config": "base",
    "srv_log.h": "base",
    "srv_http": "http", "srv_errors": "http", "srv_log.c": "http",
    "srv_sched": "sched",
    "srv_metrics": "state", "srv_server.h": "state",
    "srv_gen": "gen", "srv_gen_tools": "gen", "srv_tokjob": "gen", "srv_gen_impl": "gen",
    "srv_gen_map": "gen", "srv_gen_params": "gen", "srv_gen_json": "gen",
    "srv_api": "api", "srv_api_chat": "api", "srv_api_completions": "api",
    "srv_api_format": "api", "srv_api_misc": "api", "srv_api_tools": "api", "srv_router": "api",
    "srv_api_embeddings": "api",
    "srv_server.c": "top", "srv_main": "top",
}
MAY = {   # layer -> server layers it may include, and whether it may include the engine
    "base": ({"base"}, False),
    "http": ({"base", "http"}, False),
    "sched": ({"base", "sched"}, True),
    "state": ({"base", "http", "sched", "state"}, True),
    "gen": ({"base", "http", "sched", "state", "gen"}, True),
    "api": ({"base", "http", "sched", "state", "gen", "api"}, True),
    "top": ({"base", "http", "sched", "state", "gen", "api", "top"}, True),
}
# top-level folders: folder -> folders whose headers it may include
FOLDER_MAY = {
    "kernels": {"kernels"},
    "engine": {"engine", "kernels/include"},
    "quant": {"quant", "engine", "kernels/include"},
    "engine/tool": {"engine/tool", "quant", "engine", "kernels/include"},
    "server": {"server", "engine", "kernels/include"},
    "clients": {"clients"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def server_layer(name):
    base, ext = os.path.splitext(name)
    return SERVER_LAYER.get(name) or SERVER_LAYER.get(base)


def main():
    # where every header of the repository lives (by base name: names are unique)
    where = {}
    files = []
    for top in FOLDER_MAY:
        d = os.path.join(SRC, top)
        for root, dirs, names in os.walk(d):
            dirs[:] = [x for x in dirs if x not in ("node_modules",)]
            rel = os.path.relpath(root, SRC)
            if top == "engine" and rel.startswith("engine/tool"):
                continue   # walked as its own folder
            for n in names:
                if n.endswith((".h", ".cuh")):
                    where.setdefault(n, rel)
                if n.endswith((".c", ".h", ".cu", ".cuh")):
                    files.append((top, rel, n))
    fails = 0
    checked = 0
    for top, rel, n in sorted(set(files)):
        path = os.path.join(SRC, rel, n)
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        layer = server_layer(n) if top == "server" else None
        if top == "server" and layer is None:
            print("FAIL: %s/%s has no layer in docs/layers.md / this test's table" % (rel, n))
            fails += 1
            continue
        for inc in INCLUDE.findall(text):
            checked += 1
            name = os.path.basename(inc)
            home = where.get(name)
            if home is None:
                continue   # a system or generated header (llhttp.h, cjson, cuda)
            # backend-private headers: only from inside kernels/
            if home.startswith(("kernels/cpu", "kernels/cuda")) and not rel.startswith("kernels"):
                print("FAIL: %s/%s includes %s, private to %s" % (rel, n, inc, home))
                fails += 1
                continue
            allowed = FOLDER_MAY[top]
            ok = any(home == a or home.startswith(a + "/") for a in allowed)
            if not ok:
                print("FAIL: %s/%s includes %s (%s): %s may include only %s"
                      % (rel, n, inc, home, top, ", ".join(sorted(allowed))))
                fails += 1
                continue
            if top == "server":
                may, engine_ok = MAY[layer]
                if home == "server":
                    other = server_layer(name)
                    if other is None or other not in may:
                        print("FAIL: server/%s (%s) includes %s (%s): a higher layer"
                              % (n, layer, inc, other))
                        fails += 1
                elif not engine_ok:
                    print("FAIL: server/%s (%s) includes %s: the %s layer stays off the engine"
                          % (n, layer, inc, layer))
                    fails += 1
    print("%d files, %d includes checked, %d failed" % (len(set(files)), checked, fails))
    return 1 if fails or checked < 100 else 0


if __name__ == "__main__":
    sys.exit(main())
