"""test_k8s_manifests.py — every Kubernetes manifest under deploy/k8s validates offline against
the Kubernetes OpenAPI schemas (kubernetes-models, @kubernetes-models/validate; the ServiceMonitor
against @kubernetes-models/prometheus-operator's CRD schema), a broken manifest is rejected (the
validator really validates), and the manifests agree with the server: every CLAQ_* variable is
one of claq-server's (--help), probes hit /health on the port CLAQ_PORT opens, the grace period
covers preStop + CLAQ_DRAIN_TIMEOUT, liveness does not kill a draining pod, selectors, named ports
and the HPA target line up, and a claq-server started with the CPU Deployment's environment
answers the probes and serves the HPA's metric on /metrics without the API key. The schemas allow
unknown fields (as the API server's non-strict mode does), so a misspelt field is caught only
where this test reads it. Skips (77) without node, without the npm packages (deploy/install-deps.sh
installs them, else npm ci here) or without the binary."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("CLAQ_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "server"))
import srv_harness as h  # noqa: E402

HERE = os.path.join(SRC, "tests", "deploy")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def validate(files):
    p = subprocess.run(["node", os.path.join(HERE, "k8s_validate.mjs")] + files,
                       capture_output=True, text=True, cwd=HERE)
    docs = [json.loads(ln) for ln in p.stdout.splitlines() if ln.strip()]
    return p.returncode, docs, p.stderr


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def check_deployment(d, help_env, services, pdbs, hpas):
    name = d["metadata"]["name"]
    pod = d["spec"]["template"]
    spec = pod["spec"]
    c = spec["containers"][0]
    env = env_of(c)
    unknown = sorted(k for k in env if k.startswith("CLAQ_") and k not in help_env)
    check(not unknown, "%s: every CLAQ_* variable is a claq-server flag (unknown: %s)"
          % (name, unknown))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(str(ports.get("http")) == env.get("CLAQ_PORT"),
          "%s: containerPort 'http' (%s) is CLAQ_PORT (%s)" % (name, ports.get("http"),
                                                              env.get("CLAQ_PORT")))
    check(env.get("CLAQ_HOST") == "0.0.0.0",
          "%s: CLAQ_HOST=0.0.0.0 (the kubelet's probes do not come from loopback)" % name)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        g = c.get(probe, {}).get("httpGet", {})
        check(g.get("path") == "/health" and g.get("port") in ports,
              "%s: %s is GET /health on a named container port (%s)" % (name, probe, g))
    pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_s = int(pre[1]) if len(pre) == 2 and pre[0] == "sleep" else 0
    drain = float(env.get("CLAQ_DRAIN_TIMEOUT") or 30)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    check(pre_s > 0, "%s: preStop sleeps so endpoints drop the pod first (%s)" % (name, pre))
    check(grace >= pre_s + drain + 5,
          "%s: terminationGracePeriodSeconds %s >= preStop %s + CLAQ_DRAIN_TIMEOUT %g + 5"
          % (name, grace, pre_s, drain))
    live = c["livenessProbe"]
    check(live.get("periodSeconds", 10) * live.get("failureThreshold", 3) > drain,
          "%s: liveness tolerates a draining pod's 503s longer than the drain" % name)
    sc = c.get("securityContext", {})
    docker_user = re.search(r"^USER (\d+)", open(os.path.join(SRC, "deploy", "Dockerfile")).read(),
                            re.M)
    uid = int(docker_user.group(1)) if docker_user else None
    check(sc.get("readOnlyRootFilesystem") is True and spec["securityContext"].get("runAsUser")
          == uid, "%s: read-only root, uid %s (deploy/Dockerfile's USER)" % (name, uid))
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    model = env.get("CLAQ_MODEL", "")
    check(any(model.startswith(p.rstrip("/") + "/") and m.get("readOnly") for p, m in
              mounts.items()), "%s: CLAQ_MODEL %s lies in a read-only mount" % (name, model))
    gpu = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
    if env.get("CLAQ_DEVICE") == "cuda":
        check(str(gpu) == "1" and c["image"].endswith(":cuda"),
              "%s: GPU variant requests nvidia.com/gpu and runs the :cuda image" % name)
    else:
        check(gpu is None and env.get("CLAQ_DEVICE") == "cpu",
              "%s: CPU variant asks for no GPU" % name)
    labels = pod["metadata"]["labels"]
    check(matches(d["spec"]["selector"]["matchLabels"], labels), "%s: selector matches" % name)
    svc = [s for s in services if matches(s["spec"]["selector"], labels)]
    check(len(svc) == 1 and all(p["targetPort"] in ports for p in svc[0]["spec"]["ports"]),
          "%s: one Service selects it and targets its named port" % name)
    check(any(matches(p["spec"]["selector"]["matchLabels"], labels) for p in pdbs),
          "%s: a PodDisruptionBudget covers it" % name)
    hpa = [a for a in hpas if a["spec"]["scaleTargetRef"]["name"] == name]
    check(len(hpa) == 1 and hpa[0]["spec"]["scaleTargetRef"]["kind"] == "Deployment",
          "%s: one HorizontalPodAutoscaler scales it" % name)
    check(env.get("CLAQ_METRICS_PUBLIC") == "1",
          "%s: CLAQ_METRICS_PUBLIC=1 (the ServiceMonitor scrapes without the API key)" % name)
    return env


def main():
    if not shutil.which("node"):
        print("SKIP: node is not installed (deploy/install-deps.sh)")
        return h.SKIP
    # installed by deploy/install-deps.sh; else tests/npm_ensure.sh tries npm ci (locked)
    if subprocess.run(["bash", os.path.join(HERE, "..", "npm_ensure.sh"), HERE,
                       "kubernetes-models", "@kubernetes-models/validate",
                       "@kubernetes-models/prometheus-operator", "yaml"],
                      timeout=600).returncode != 0:
        print("SKIP: tests/deploy/node_modules is missing and npm could not install it")
        return h.SKIP
    shared, binary = h.paths()
    if not os.access(binary, os.X_OK):
        print("SKIP: claq-server not built at", binary)
        return h.SKIP

    files = sorted(glob.glob(os.path.join(SRC, "deploy", "k8s", "**", "*.yaml"), recursive=True))
    rc, docs, err = validate(files)
    for d in docs:
        check(d["ok"], "%s: %s %s validates (%s)" % (os.path.relpath(d["file"], SRC), d["kind"],
                                                      d["name"], d["error"] or "schema ok"))
    check(rc == 0 and docs, "validator: %d manifests in %d files (%s)" % (len(docs), len(files),
                                                                         err.strip() or "rc 0"))

    # Negative control: the same validator rejects type errors and missing required fields.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
                "spec:\n  ports:\n    - {name: http, port: eighty}\n---\n"
                "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\n"
                "spec:\n  endpoints: [{port: http}]\n")
    rc_bad, bad, _ = validate([f.name])
    os.unlink(f.name)
    check(rc_bad == 1 and len(bad) == 2 and not any(d["ok"] for d in bad),
          "a Service with a string port and a ServiceMonitor without selector are rejected (%s)"
          % [d["error"] for d in bad])

    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d["object"])
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
                 "ServiceMonitor"):
        check(kind in by_kind, "deploy/k8s has a %s" % kind)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1

    help_text = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
    help_env = set(re.findall(r"\[env (CLAQ_[A-Z_]+)\]", help_text))
    check(len(help_env) > 20, "claq-server --help lists its environment variables (%d)"
          % len(help_env))
    deps = by_kind["Deployment"]
    check(sorted(env_of(d["spec"]["template"]["spec"]["containers"][0]).get("CLAQ_DEVICE")
                 for d in deps) == ["cpu", "cuda"], "a CPU and a GPU Deployment")
    envs = {d["metadata"]["name"]: check_deployment(d, help_env, by_kind["Service"],
                                                    by_kind["PodDisruptionBudget"],
                                                    by_kind["HorizontalPodAutoscaler"])
            for d in deps}
    svc_ports = {p["name"] for s in by_kind["Service"] for p in s["spec"]["ports"]}
    svc_labels = [s["metadata"]["labels"] for s in by_kind["Service"]]
    for sm in by_kind["ServiceMonitor"]:
        check(any(matches(sm["spec"]["selector"]["matchLabels"], lb) for lb in svc_labels),
              "ServiceMonitor %s selects the Service" % sm["metadata"]["name"])
        for ep in sm["spec"]["endpoints"]:
            check(ep.get("port") in svc_ports and ep.get("path") == "/metrics",
                  "ServiceMonitor endpoint scrapes /metrics on the Service port '%s'"
                  % ep.get("port"))
    hpa_metrics = {m["pods"]["metric"]["name"] for a in by_kind["HorizontalPodAutoscaler"]
                   for m in a["spec"]["metrics"] if m["type"] == "Pods"}

    # The CPU Deployment's environment on a real claq-server (model from $CLAQ_SHARED, loopback,
    # an API key as if the optional Secret existed): probes and /metrics answer without the key.
    env = {k: v for k, v in envs["claq-server"].items() if v is not None}
    model = os.path.basename(env["CLAQ_MODEL"])
    h.require(model)
    env.update({"CLAQ_MODEL": os.path.join(shared, "models", model), "CLAQ_HOST": "127.0.0.1",
                "CLAQ_PORT": "0", "CLAQ_API_KEY": "k8s-test-key"})
    s = h.Server(model, env=env)
    try:
        st, _, _ = s.request("GET", "/health")
        check(st == 200, "the probes' GET /health answers 200 without the key")
        st, _, body = s.request("GET", "/metrics")
        text = body.decode()
        missing = [m for m in hpa_metrics if not re.search(r"^%s[ {]" % m, text, re.M)]
        check(st == 200 and not missing, "GET /metrics (no key, CLAQ_METRICS_PUBLIC=1) serves "
              "the HPA's metric(s) %s" % sorted(hpa_metrics))
        st, _, body = s.request("GET", "/v1/models", headers={"Authorization": "Bearer k8s-test-key"})
        ids = [m["id"] for m in json.loads(body)["data"]] if st == 200 else []
        check(ids == [model], "the API's model id is the model's name (%s)" % ids)
        st, _, _ = s.request("GET", "/v1/models")
        check(st == 401, "the API itself still wants the key (%d)" % st)
    finally:
        s.proc.terminate()
        s.proc.wait(30)

    print("%d manifests validated in %d files" % (len(docs), len(files)))
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
