#!/usr/bin/env python3
"""Validates deploy/k8s (run by .ci/run).

1. Renders the base and overlays/example with `kubectl kustomize` (the overlay's Secret files
   are generated in a scratch copy, as an operator would make them). Without kubectl, every
   file the kustomizations list is validated on its own instead.
2. Validates every object against the Kubernetes OpenAPI schemas shipped by the PyPI package
   `kubernetes-validate`, strictly (unknown fields are errors), for each Kubernetes version in
   K8S_VERSIONS.
3. Validates the ServiceMonitor (a CRD, so not in those schemas) with the validator generated
   from prometheus-operator's CRD schema (npm `@kubernetes-models/prometheus-operator`, in the
   directory given by --servicemonitor-validator), plus a structural check of its fields.
4. Checks what no schema can: one replica and a claim (sled is single-writer), the security
   context, read-only 0400 Secret mounts, probes and Services pointing at real container ports,
   the ServiceMonitor and NetworkPolicy selecting the pod, resources set, and every file the
   mounted onboard.toml names being a key of a mounted Secret.
5. A negative control: broken copies of the rendered objects must fail, so this check can fail.

Exit status 0 when everything holds; every problem is printed on its own line.
"""

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import kubernetes_validate
import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "deploy", "k8s")
# The oldest and newest versions the manifests are meant for.
K8S_VERSIONS = ["1.30.0", "1.34.0"]
SECRET_FILES = [
    "audit.key",
    "sealing.key",
    "invitation-token.key",
    "tls.crt",
    "tls.key",
    "ca.crt",
]
SERVICEMONITOR_ENDPOINT_KEYS = {
    "port",
    "path",
    "scheme",
    "interval",
    "scrapeTimeout",
    "honorLabels",
    "metricRelabelings",
    "relabelings",
    "tlsConfig",
    "bearerTokenSecret",
}


def render(path):
    out = subprocess.run(
        ["kubectl", "kustomize", path], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def unrendered(path):
    """Without kubectl: the resources and patches each kustomization lists, file by file."""
    docs = []
    with open(os.path.join(path, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    for r in k.get("resources", []):
        full = os.path.join(path, r)
        if os.path.isdir(full):
            docs += unrendered(full)
        else:
            with open(full) as f:
                docs += [d for d in yaml.safe_load_all(f) if d]
    for p in k.get("patches", []):
        if not os.path.exists(os.path.join(path, p["path"])):
            raise SystemExit(f"{path}: patch {p['path']} does not exist")
    return docs


def schema_problems(doc, version):
    if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
        return []
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{kind_name(doc)}: {version}: {e.message} at {'/'.join(map(str, e.path))}"]
    except Exception as e:  # an unknown kind or version is a problem too
        return [f"{kind_name(doc)}: {version}: {e}"]
    return []


def kind_name(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# The CRD's pattern for durations (monitoring.coreos.com/v1 Duration).
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")


def servicemonitor_problems(doc, validator_dir):
    problems = []
    spec = doc.get("spec", {})
    for i, ep in enumerate(spec.get("endpoints", [])):
        for key in ("interval", "scrapeTimeout"):
            if key in ep and not DURATION.match(ep[key]):
                problems.append(f"{kind_name(doc)}: endpoints[{i}].{key} {ep[key]!r} is not a duration")
        if ep.get("scheme", "http") not in ("http", "https"):
            problems.append(f"{kind_name(doc)}: endpoints[{i}].scheme must be http or https")
        unknown = set(ep) - SERVICEMONITOR_ENDPOINT_KEYS
        if unknown:
            problems.append(f"{kind_name(doc)}: endpoints[{i}] has unknown fields {sorted(unknown)}")
        if "port" not in ep:
            problems.append(f"{kind_name(doc)}: endpoints[{i}] names no port")
    if not spec.get("selector", {}).get("matchLabels"):
        problems.append(f"{kind_name(doc)}: no selector.matchLabels")
    if validator_dir:
        script = os.path.join(validator_dir, "validate-servicemonitor.mjs")
        with open(script, "w") as f:
            f.write(
                'import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";\n'
                "try { new ServiceMonitor(JSON.parse(process.argv[2])).validate(); }\n"
                "catch (e) { console.log(e.message); process.exit(1); }\n"
            )
        r = subprocess.run(
            ["node", script, json.dumps(doc)], cwd=validator_dir, capture_output=True, text=True
        )
        if r.returncode != 0:
            problems.append(f"{kind_name(doc)}: CRD schema: {(r.stdout + r.stderr).strip()}")
    return problems


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def cross_problems(docs, rendered_secrets):
    """What the schemas cannot see."""
    p = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    sts_list = by_kind.get("StatefulSet", [])
    if len(sts_list) != 1:
        return [f"want one StatefulSet, found {len(sts_list)}"]
    sts = sts_list[0]
    spec = sts["spec"]
    if spec.get("replicas") != 1:
        p.append("StatefulSet: replicas must be 1 (sled is single-writer)")
    if not spec.get("volumeClaimTemplates"):
        p.append("StatefulSet: no volumeClaimTemplates (the data must persist)")
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    headless = [
        s for s in by_kind.get("Service", [])
        if s["metadata"]["name"] == spec.get("serviceName") and s["spec"].get("clusterIP") == "None"
    ]
    if not headless:
        p.append(f"StatefulSet: serviceName {spec.get('serviceName')} is not a headless Service")
    psc = pod.get("securityContext", {})
    if not psc.get("runAsNonRoot") or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        p.append("pod securityContext: runAsNonRoot and seccomp RuntimeDefault required")
    if pod.get("automountServiceAccountToken") is not False:
        p.append("pod: automountServiceAccountToken must be false")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    ports = set()
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            p.append(f"container {c['name']}: allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            p.append(f"container {c['name']}: readOnlyRootFilesystem must be true")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            p.append(f"container {c['name']}: capabilities must drop ALL")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(part, {}):
                    p.append(f"container {c['name']}: resources.{part}.{r} unset")
        ports |= {x["name"] for x in c.get("ports", [])}
        ports |= {x["containerPort"] for x in c.get("ports", [])}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            pr = c.get(probe)
            if not pr:
                p.append(f"container {c['name']}: no {probe}")
                continue
            action = pr.get("grpc") or pr.get("tcpSocket") or pr.get("httpGet")
            if not action or action.get("port") not in ports:
                p.append(f"container {c['name']}: {probe} port {action and action.get('port')} is no container port")
        mounts = {}
        for m in c.get("volumeMounts", []):
            v = volumes.get(m["name"])
            if v is None and m["name"] not in [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]:
                p.append(f"mount {m['name']}: no such volume")
            if v and "secret" in v:
                if not m.get("readOnly"):
                    p.append(f"mount {m['name']}: Secret mounts must be readOnly")
                if v["secret"].get("defaultMode") != 0o400:
                    p.append(f"volume {m['name']}: Secret defaultMode must be 0400")
            mounts[m["mountPath"]] = v
        # Every file the mounted onboard.toml names is provided by a mounted Secret.
        config = next(
            (v for v in volumes.values() if "configMap" in v), None
        )
        cms = [cm for cm in by_kind.get("ConfigMap", []) if config and cm["metadata"]["name"] == config["configMap"]["name"]]
        if rendered_secrets and not cms:
            p.append("the config volume's ConfigMap is not rendered")
        for cm in cms:
            toml = tomllib.loads(cm["data"]["onboard.toml"])
            paths = [
                toml["audit"]["signing_key"],
                toml["storage"].get("sealing_key"),
                toml["invitations"].get("token_key"),
                toml.get("tls", {}).get("cert"),
                toml.get("tls", {}).get("key"),
                toml.get("tls", {}).get("client_ca"),
            ]
            data_mount = [m["mountPath"] for m in c["volumeMounts"] if m["name"] == "data"]
            # Inside the volume, not its root: the mount point belongs to root (fsGroup changes
            # only its group), and the server makes its data directory 0700 at start-up.
            data_dir = toml["storage"]["data_dir"]
            if len(data_mount) != 1 or not data_dir.startswith(data_mount[0].rstrip("/") + "/"):
                p.append(f"storage.data_dir {data_dir} is not a directory inside the data volume's mount {data_mount}")
            for path in filter(None, paths):
                d, f = os.path.split(path)
                v = mounts.get(d)
                if not v or "secret" not in v:
                    p.append(f"{path}: no Secret is mounted at {d}")
                    continue
                secrets = [s for s in by_kind.get("Secret", []) if s["metadata"]["name"] == v["secret"]["secretName"]]
                if rendered_secrets and (not secrets or f not in secrets[0].get("data", {})):
                    p.append(f"{path}: Secret {v['secret']['secretName']} has no key {f}")
    for s in by_kind.get("Service", []):
        if not matches(s["spec"].get("selector", {}), pod_labels):
            p.append(f"Service/{s['metadata']['name']}: selector does not match the pod")
        for port in s["spec"]["ports"]:
            if port.get("targetPort", port["port"]) not in ports:
                p.append(f"Service/{s['metadata']['name']}: targetPort {port.get('targetPort')} is no container port")
    for sm in by_kind.get("ServiceMonitor", []):
        sel = sm["spec"]["selector"]["matchLabels"]
        targets = [s for s in by_kind.get("Service", []) if matches(sel, s["metadata"].get("labels", {}))]
        if len(targets) != 1:
            p.append(f"ServiceMonitor: selects {len(targets)} Services, want exactly 1")
        for ep in sm["spec"]["endpoints"]:
            if targets and ep["port"] not in [x["name"] for x in targets[0]["spec"]["ports"]]:
                p.append(f"ServiceMonitor: port {ep['port']} is not a port of Service/{targets[0]['metadata']['name']}")
    for np in by_kind.get("NetworkPolicy", []):
        if not matches(np["spec"]["podSelector"].get("matchLabels", {}), pod_labels):
            p.append("NetworkPolicy: podSelector does not match the pod")
        if set(np["spec"].get("policyTypes", [])) != {"Ingress", "Egress"}:
            p.append("NetworkPolicy: must restrict both Ingress and Egress")
        for rule in np["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                if port["port"] not in ports:
                    p.append(f"NetworkPolicy: ingress port {port['port']} is no container port")
        egress_ports = {port["port"] for rule in np["spec"].get("egress", []) for port in rule.get("ports", [])}
        if not {53, 443} <= egress_ports:
            p.append(f"NetworkPolicy: egress must allow DNS (53) and HTTPS (443), has {sorted(egress_ports)}")
    return p


def all_problems(docs, validator_dir, rendered_secrets):
    problems = []
    for d in docs:
        for v in K8S_VERSIONS:
            problems += schema_problems(d, v)
        if d.get("kind") == "ServiceMonitor":
            problems += servicemonitor_problems(d, validator_dir)
    problems += cross_problems(docs, rendered_secrets)
    return problems


def negative_control(docs, validator_dir):
    """Each mutation must be caught; returns the mutations that were not."""
    def sts(ds):
        return next(d for d in ds if d["kind"] == "StatefulSet")

    def sm(ds):
        return next(d for d in ds if d["kind"] == "ServiceMonitor")

    mutations = {
        "unknown field": lambda ds: sts(ds)["spec"]["template"]["spec"]["containers"][0].update({"imagePullPolicyy": "Always"}),
        "two replicas": lambda ds: sts(ds)["spec"].update({"replicas": 2}),
        "privilege escalation": lambda ds: sts(ds)["spec"]["template"]["spec"]["containers"][0]["securityContext"].update({"allowPrivilegeEscalation": True}),
        "probe on a missing port": lambda ds: sts(ds)["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"].update({"port": 8082}),
        "health probe on a missing port": lambda ds: sts(ds)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"].update({"port": 8082}),
        "bad scrape interval": lambda ds: sm(ds)["spec"]["endpoints"][0].update({"interval": "30 seconds"}),
        "typo in an endpoint": lambda ds: sm(ds)["spec"]["endpoints"][0].update({"prot": "metrics"}),
    }
    missed = []
    for name, mutate in mutations.items():
        broken = copy.deepcopy(docs)
        mutate(broken)
        if not all_problems(broken, validator_dir, rendered_secrets=False):
            missed.append(name)
    return missed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--servicemonitor-validator", help="npm prefix with @kubernetes-models/prometheus-operator installed")
    args = ap.parse_args()
    if args.servicemonitor_validator and not shutil.which("node"):
        raise SystemExit("--servicemonitor-validator needs node")
    problems = []
    with tempfile.TemporaryDirectory() as scratch:
        copy_dir = os.path.join(scratch, "k8s")
        shutil.copytree(K8S, copy_dir)
        for f in SECRET_FILES:
            with open(os.path.join(copy_dir, "overlays", "example", "secrets", f), "w") as out:
                out.write(f"placeholder {f}\n")
        kubectl = shutil.which("kubectl") is not None
        sets = {}
        for name in ("base", os.path.join("overlays", "example")):
            path = os.path.join(copy_dir, name)
            sets[name] = render(path) if kubectl else unrendered(path)
            print(f"{name}: {len(sets[name])} objects ({'rendered by kubectl kustomize' if kubectl else 'files as listed'})")
        for name, docs in sets.items():
            problems += [f"{name}: {x}" for x in all_problems(docs, args.servicemonitor_validator, rendered_secrets=kubectl and name != "base")]
        missed = negative_control(sets["base"], args.servicemonitor_validator)
        problems += [f"negative control: a manifest with '{m}' was not rejected" for m in missed]
    for x in problems:
        print(f"INVALID: {x}")
    checks = f"{len(K8S_VERSIONS)} Kubernetes versions, ServiceMonitor {'CRD schema + ' if args.servicemonitor_validator else ''}structure"
    print(f"{'FAILED' if problems else 'OK'}: deploy/k8s against {checks}; {len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
