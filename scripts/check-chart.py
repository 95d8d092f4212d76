#!/usr/bin/env python3
"""Check charts/tradeplane with the real Helm (v4) library, offline. Exit 0 only if all pass.

What it checks, each line printed as PASS/FAIL:
  1. values.yaml validates against values.schema.json, every leaf key in values.yaml has its own
     comment line right above it, and the schema rejects wrong types and unknown keys;
  2. the Grafana dashboard JSON parses, has the panels the issue asks for, and every query
     parses as PromQL;
  3. `helm lint` (helm-sdkpy, as the issue asks) of the chart as shipped and of temporary copies
     whose values switch every optional part on (watching all namespaces, watching one); no lint
     message of severity warning or error and no "missing required value" in Helm's log;
  4. the lint has teeth: copies with a template syntax error, an unknown values key, a value of
     the wrong type, and two replicas without leader election must FAIL the lint;
  5. rendering (helm-python-sdk: the same Helm v4 engine, `helm template` without a cluster) of
     the same value sets; every rendered object validates: built-in kinds against the Kubernetes
     1.33 schemas (kubernetes-validate, strict: unknown fields rejected), the TradingPlatform
     against the CRD's own openAPIV3Schema, the PrometheusRule's and ServiceMonitors' shape and
     every PromQL expression; plus the chart's invariants (standard labels on every object,
     Role vs ClusterRole by watchNamespace, probes and restricted security context);
  6. rendering fails where a template `fail`s/`required`s (lint mode does not enforce those).

Installs helm-sdkpy, helm-python-sdk, kubernetes-validate and promql-parser with pip if missing.
"""
from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "tradeplane"

# Helm's lint severities (pkg/lint/support): 0 unknown, 1 info, 2 warning, 3 error.
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checklib import failures, pip_ensure, report  # noqa: E402


def ensure_helm_sdkpy():
    return pip_ensure("helm_sdkpy", "helm-sdkpy", "--ignore-requires-python")


def ensure_yaml_jsonschema():
    pip_ensure("yaml", "pyyaml")
    pip_ensure("jsonschema", "jsonschema")


def lint(helm, chart_dir: Path) -> tuple[bool, str]:
    """Run Helm's lint on chart_dir. Returns (clean, explanation)."""
    # Helm logs "missing required value" (and other template warnings) through Go's logger on
    # fd 2, not in the lint result, so capture fd 2 around the call.
    log = tempfile.TemporaryFile()
    saved = os.dup(2)
    sys.stderr.flush()
    os.dup2(log.fileno(), 2)
    try:
        cfg = helm.Configuration(namespace="tradeplane-system")
        result = asyncio.run(helm.Lint(cfg).run(str(chart_dir)))
        error = None
    except Exception as exc:  # a chart that cannot be loaded at all
        result, error = None, exc
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
    log.seek(0)
    logged = log.read().decode(errors="replace").strip()
    if error is not None:
        return False, f"helm lint raised: {error}"
    problems = [
        f"{SEVERITY.get(m.get('Severity'), m.get('Severity'))} in {m.get('Path')}"
        for m in result.get("Messages") or []
        if (m.get("Severity") or 0) >= 2
    ]
    if result.get("Errors"):
        problems.append(f"{len(result['Errors'])} lint error(s)")
    if "missing required value" in logged or "ERROR" in logged:
        problems.append("Helm logged: " + logged.replace("\n", " | "))
    if result.get("TotalChartsLinted") != 1:
        problems.append(f"TotalChartsLinted={result.get('TotalChartsLinted')}")
    return not problems, "; ".join(problems)


def locate(helm, chart_dir: Path) -> str:
    """Helm's lint result loses the error text of a template that fails to render (it names only
    'templates/'), so find the culprit by linting the chart with one template at a time."""
    culprits = []
    templates = sorted(p for p in (chart_dir / "templates").rglob("*") if p.is_file() and p.suffix in (".yaml", ".txt"))
    for t in templates:
        with tempfile.TemporaryDirectory() as tmp:
            one = Path(tmp) / "tradeplane"
            shutil.copytree(chart_dir, one)
            for other in (one / "templates").rglob("*"):
                if other.is_file() and other.suffix in (".yaml", ".txt") and other.name != t.name:
                    other.unlink()
            ok, _ = lint(helm, one)
            if not ok:
                culprits.append(str(t.relative_to(chart_dir)))
    return "failing template(s): " + (", ".join(culprits) if culprits else "(none alone: values or schema)")


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def chart_copy(tmp: Path, name: str, values: dict | None = None, edit=None) -> Path:
    import yaml

    dst = tmp / name / "tradeplane"
    shutil.copytree(CHART, dst)
    if values is not None:
        (dst / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    if edit:
        edit(dst)
    return dst


# Every optional part switched on.
ALL_ON = {
    "commonLabels": {"team": "trading"},
    "operator": {
        "replicaCount": 2,
        "imagePullSecrets": ["registry-credentials"],
        "extraEnv": [{"name": "EXTRA", "value": "1"}],
        "podAnnotations": {"example.com/a": "b"},
        "podLabels": {"example.com/c": "d"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "trading", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}}}}]}},
        "priorityClassName": "system-cluster-critical",
        "image": {"digest": "sha256:" + "0" * 64},
    },
    "serviceAccount": {"annotations": {"example.com/role": "operator"}},
    "service": {"annotations": {"example.com/scrape": "true"}},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "apiServerTo": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
    },
    "platform": {
        "enabled": True,
        "spec": {
            "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 70},
            "backup": {"enabled": True, "schedule": "0 2 * * *", "retention": {"keepDays": 7}},
            "ingress": {"enabled": True, "className": "nginx", "host": "trade.example.com", "tlsSecretName": "trade-tls"},
            "settings": {"logLevel": "info"},
        },
    },
    "monitoring": {
        "platformServiceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}, "runbookUrl": "https://runbooks.example.com/tradeplane"},
        "dashboard": {"enabled": True, "namespace": "monitoring", "folder": "Trading"},
    },
}


def check_values_documented() -> None:
    """Every leaf key line in values.yaml has a comment line directly above it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z0-9_]+):(.*)$", line)
        if not m:
            continue
        rest = m.group(3).strip()
        is_parent = rest == "" and i + 1 < len(lines) and len(lines[i + 1]) - len(lines[i + 1].lstrip()) > len(m.group(1))
        if is_parent:
            continue
        prev = lines[i - 1].strip() if i > 0 else ""
        if not prev.startswith("#"):
            undocumented.append(f"line {i + 1}: {m.group(2)}")
    report(not undocumented, "values.yaml: every value has a comment line above it", ", ".join(undocumented))


def check_values_schema() -> None:
    import jsonschema
    import yaml

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=str)
    report(not errors, "values.yaml validates against values.schema.json", "; ".join(e.message for e in errors[:5]))
    merged = deep_merge(values, ALL_ON)
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(merged))
    report(not errors, "all-options-on values validate against values.schema.json", "; ".join(e.message for e in errors[:5]))
    bad = deep_merge(values, {"operator": {"replicaCount": "two", "unknownKey": 1}})
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(bad))
    report(len(errors) >= 2, "values.schema.json rejects a wrong type and an unknown key", f"{len(errors)} error(s) found")
    # Helm passes a parent's `global` values to every chart (and `--set global.x=y` sets them).
    with_global = deep_merge(values, {"global": {"imageRegistry": "registry.example", "any": {"nested": 1}}})
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(with_global))
    report(not errors, "values.schema.json accepts Helm's `global` values", "; ".join(e.message for e in errors[:5]))


def check_dashboard() -> None:
    path = CHART / "dashboards" / "tradeplane.json"
    try:
        dash = json.loads(path.read_text())
    except Exception as exc:  # noqa: BLE001
        report(False, f"{path.relative_to(ROOT)} parses as JSON", str(exc))
        return
    exprs = " ".join(t["expr"] for p in dash.get("panels", []) for t in p.get("targets", []))
    needed = [
        "http_requests_total", "http_request_duration_seconds_bucket", "orders_total", "trades_total",
        "match_latency_seconds_bucket", "kube_deployment_status_replicas_available",
        "kube_horizontalpodautoscaler_status_current_replicas", "backup_last_success_timestamp_seconds",
        "tradeplane:slo_error_budget_remaining:30d", "tradeplane:slo_burn_rate:1h",
    ]
    missing = [n for n in needed if n not in exprs]
    report(not missing, f"{path.relative_to(ROOT)}: request rate, errors, latency, orders, trades, match latency, replicas, HPA, backup age, error budget, burn rate", f"missing: {missing}")
    bad = []
    for p in dash.get("panels", []):
        for t in p.get("targets", []):
            # Grafana's own variables are not PromQL: give them a value first.
            expr = t["expr"].replace("$__rate_interval", "5m")
            err = promql_error(expr)
            if err:
                bad.append(f"{p['title']}: {err}")
    report(not bad, f"{path.relative_to(ROOT)}: every panel query parses as PromQL", "; ".join(bad))
    # A ratio (a query with a division at its top level, such as errors / requests) is plotted
    # in a percent unit: on a requests-per-second axis a 0-1 ratio reads as nothing.
    wrong_axis = []
    for p in dash.get("panels", []):
        defaults = p.get("fieldConfig", {}).get("defaults", {})
        overrides = {
            o.get("matcher", {}).get("options"): {x["id"]: x["value"] for x in o.get("properties", [])}
            for o in p.get("fieldConfig", {}).get("overrides", [])
            if o.get("matcher", {}).get("id") == "byFrameRefID"
        }
        for t in p.get("targets", []):
            if ") / sum(" not in t["expr"]:
                continue
            unit = overrides.get(t.get("refId"), {}).get("unit", defaults.get("unit"))
            if unit not in ("percentunit", "percent"):
                wrong_axis.append(f"{p['title']} {t.get('refId')}: unit {unit}")
    report(not wrong_axis, f"{path.relative_to(ROOT)}: ratios are plotted in percent", "; ".join(wrong_axis))
    ds_vars = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    report({"datasource", "namespace", "platform"} <= ds_vars, f"{path.relative_to(ROOT)}: datasource, namespace and platform variables", str(ds_vars))


# ---------------------------------------------------------------------------------------------
# Rendering and validation of every rendered object.

KUBE_VERSION = "1.33.0"  # the minimum supported Kubernetes version (see docs/kubernetes.md)
STANDARD_LABELS = (
    "helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
    "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "app.kubernetes.io/component",
)


def promql_error(expr: str) -> str | None:
    promql = pip_ensure("promql_parser", "promql-parser")
    try:
        promql.parse(expr)
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{exc} in: {' '.join(expr.split())[:160]}"


def strict_schema(node):
    """The CRD's schema as kubectl's strict field validation applies it: an object with declared
    properties rejects undeclared ones (unless it preserves unknown fields)."""
    if isinstance(node, dict):
        node = {k: strict_schema(v) for k, v in node.items()}
        if node.get("nullable") and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]  # OpenAPI's nullable, in JSON Schema terms
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict_schema(v) for v in node]
    return node


def crd_schema(version: str = "v1alpha1"):
    import yaml

    path = ROOT / "crds" / "tradingplatform.yaml"
    if not path.is_file():
        return None
    crd = yaml.safe_load(path.read_text())
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            root = copy.deepcopy(v["schema"]["openAPIV3Schema"])
            # The API server allows these on every object whatever the CRD's schema says.
            root.setdefault("properties", {}).update(
                {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}})
            return strict_schema(root)
    return None


def validate_object(obj: dict, tp_schema) -> list[str]:
    import jsonschema

    kv = pip_ensure("kubernetes_validate", "kubernetes-validate")
    kind, api = obj.get("kind"), obj.get("apiVersion")
    name = f"{kind}/{obj.get('metadata', {}).get('name')}"
    problems = []
    labels = obj.get("metadata", {}).get("labels") or {}
    missing = [label for label in STANDARD_LABELS if label not in labels]
    if missing:
        problems.append(f"{name}: missing labels {missing}")
    if api == "monitoring.coreos.com/v1":
        spec = obj.get("spec") or {}
        if kind == "PrometheusRule":
            for g in spec.get("groups") or []:
                for r in g.get("rules") or []:
                    if ("record" in r) == ("alert" in r) or "expr" not in r:
                        problems.append(f"{name}: rule needs exactly one of record/alert, and expr: {r}")
                        continue
                    err = promql_error(r["expr"])
                    if err:
                        problems.append(f"{name}: {r.get('record') or r.get('alert')}: {err}")
                    if "alert" in r and not {"summary", "description"} <= set(r.get("annotations") or {}):
                        problems.append(f"{name}: {r['alert']} lacks summary/description")
        elif kind == "ServiceMonitor":
            if not spec.get("selector") or not spec.get("endpoints"):
                problems.append(f"{name}: needs selector and endpoints")
        else:
            problems.append(f"{name}: unexpected kind")
    elif api == "tradeplane.io/v1alpha1":
        if tp_schema is None:
            problems.append(f"{name}: crds/tradingplatform.yaml missing, cannot validate")
        else:
            errs = list(jsonschema.Draft7Validator(tp_schema).iter_errors(obj))
            problems += [f"{name}: {'/'.join(map(str, e.path))}: {e.message}" for e in errs[:5]]
    else:
        try:
            kv.validate(obj, KUBE_VERSION, strict=True)
        except kv.ValidationError as exc:
            problems.append(f"{name}: {exc.message}")
        except Exception as exc:  # noqa: BLE001  (unknown kind: no schema)
            problems.append(f"{name}: cannot validate against Kubernetes {KUBE_VERSION}: {type(exc).__name__} {exc}")
    return problems


def render(values: dict, namespace: str = "tradeplane-system", release: str = "tp") -> dict[str, str]:
    hp = pip_ensure("helm_python", "helm-python-sdk", "--ignore-requires-python")
    return hp.Chart.load(str(CHART)).render(values, name=release, namespace=namespace, is_install=True)


def rendered_objects(rendered: dict[str, str]) -> list[dict]:
    import yaml

    objs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        objs += [d for d in yaml.safe_load_all(text) if d]
    return objs


def invariants(objs: list[dict], values: dict, namespace: str) -> list[str]:
    """What the issue asks of the chart, checked on the rendered objects."""
    import yaml

    problems = []
    by_kind: dict[str, list[dict]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    op = values.get("operator", {})
    watch = op.get("watchNamespace", "")
    rbac_on = values.get("rbac", {}).get("create", True)
    if rbac_on:
        if watch:
            if "ClusterRole" in by_kind or "ClusterRoleBinding" in by_kind:
                problems.append("single-namespace install must not create a ClusterRole/ClusterRoleBinding")
            if not any(r["metadata"].get("namespace") == watch for r in by_kind.get("Role", [])):
                problems.append(f"no Role in the watched namespace {watch}")
        elif len(by_kind.get("ClusterRole", [])) != 1 or len(by_kind.get("ClusterRoleBinding", [])) != 1:
            problems.append("all-namespace install needs one ClusterRole and one ClusterRoleBinding")
        # The chart's rule list and the kustomize base's must be the same.
        base = next(d for d in yaml.safe_load_all((ROOT / "k8s/operator/rbac.yaml").read_text())
                    if d and d["kind"] == "ClusterRole")
        main = [r for r in by_kind.get("ClusterRole", []) + by_kind.get("Role", [])
                if not r["metadata"]["name"].endswith("-leader-election")]
        for r in main:
            if r["rules"] != base["rules"]:
                problems.append(f"{r['kind']}/{r['metadata']['name']} rules differ from k8s/operator/rbac.yaml")
        le = [r for r in by_kind.get("Role", []) if r["metadata"]["name"].endswith("-leader-election")]
        if op.get("leaderElection", {}).get("enabled", True) and not (
                le and le[0]["metadata"]["namespace"] == namespace
                and le[0]["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                        "verbs": ["get", "create", "patch"]}]):
            problems.append("leader election needs a leases Role in the release namespace")
    deps = by_kind.get("Deployment", [])
    if len(deps) != 1:
        return problems + [f"expected one Deployment, got {len(deps)}"]
    pod = deps[0]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c.get("env", [])}
    if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/health/live":
        problems.append("liveness probe must GET /health/live")
    if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/health/ready":
        problems.append("readiness probe must GET /health/ready")
    port = c["ports"][0]["containerPort"]
    if env.get("OPERATOR_LISTEN_ADDR", {}).get("value") != f"0.0.0.0:{port}":
        problems.append("OPERATOR_LISTEN_ADDR must match the container port")
    sc = c.get("securityContext", {})
    if not (sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True
            and sc.get("runAsNonRoot") is True and sc.get("capabilities", {}).get("drop") == ["ALL"]
            and pod.get("securityContext", {}).get("seccompProfile", {}).get("type") == "RuntimeDefault"):
        problems.append("container is not under the restricted security profile")
    for var, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        if env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != field:
            problems.append(f"{var} must come from the downward API ({field})")
    if deps[0]["spec"]["replicas"] > 1 and env.get("LEADER_ELECTION", {}).get("value") != "true":
        problems.append("more than one replica without LEADER_ELECTION=true")
    if env.get("WATCH_NAMESPACE", {}).get("value", "") != watch:
        problems.append("WATCH_NAMESPACE does not match operator.watchNamespace")
    if not c.get("resources", {}).get("requests"):
        problems.append("operator container has no resource requests")
    plat = values.get("platform", {})
    if plat.get("enabled"):
        pns = watch or namespace
        for o in objs:
            if (o["kind"] in ("Deployment", "Service", "ServiceAccount", "NetworkPolicy", "ConfigMap")
                    and o["metadata"].get("namespace") == pns and o["metadata"]["name"] == plat.get("name")):
                problems.append(f"{o['kind']}/{o['metadata']['name']} collides with what the operator creates for the TradingPlatform")
    tests = [o for o in by_kind.get("Pod", []) if (o["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]
    if not tests or not any("/health/ready" in a for a in tests[0]["spec"]["containers"][0].get("args", [])):
        problems.append("no helm test hook calling /health/ready")
    return problems


def check_render(name: str, values: dict, namespace: str = "tradeplane-system", release: str = "tp") -> None:
    tp_schema = crd_schema()
    try:
        rendered = render(values, namespace, release)
    except Exception as exc:  # noqa: BLE001
        report(False, f"render: {name}", f"{type(exc).__name__}: {exc}")
        return
    objs = rendered_objects(rendered)
    problems = []
    for o in objs:
        problems += validate_object(o, tp_schema)
    problems += invariants(objs, values, namespace)
    kinds = sorted({o["kind"] for o in objs})
    report(not problems, f"render: {name}: {len(objs)} objects valid ({', '.join(kinds)})", "; ".join(problems[:12]))
    notes = rendered.get("tradeplane/templates/NOTES.txt", "")
    report("helm test" in notes and "kubectl" in notes, f"render: {name}: NOTES.txt tells what to do next")


def check_render_fails(name: str, values: dict) -> None:
    try:
        render(values)
        ok = False
    except Exception:  # noqa: BLE001
        ok = True
    report(ok, f"render fails on {name}", "rendered without error but should have failed")


def main() -> int:
    ensure_yaml_jsonschema()
    import yaml

    helm = ensure_helm_sdkpy()
    print(f"chart: {CHART.relative_to(ROOT)}")

    check_values_documented()
    check_values_schema()
    check_dashboard()
    crd = CHART / "crds" / "tradingplatform.yaml"
    report(crd.is_file(), "chart ships crds/tradingplatform.yaml", "missing: run scripts/sync-crd.sh")

    shipped = yaml.safe_load((CHART / "values.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        good = {
            "helm lint: chart as shipped": CHART,
            "helm lint: every optional part on, watching all namespaces (ClusterRole)": chart_copy(
                tmp, "all-on-cluster", deep_merge(shipped, ALL_ON)),
            "helm lint: every optional part on, watching one namespace (Role)": chart_copy(
                tmp, "all-on-namespaced", deep_merge(shipped, deep_merge(ALL_ON, {"operator": {"watchNamespace": "trading"}}))),
            "helm lint: one replica, leader election off, no RBAC, existing ServiceAccount": chart_copy(
                tmp, "minimal", deep_merge(shipped, {"operator": {"leaderElection": {"enabled": False}},
                                                     "rbac": {"create": False},
                                                     "serviceAccount": {"create": False, "name": "existing"},
                                                     "platform": {"enabled": True, "secrets": {"redis": {"name": ""}}}})),
        }
        for what, path in good.items():
            ok, why = lint(helm, path)
            if not ok:
                why += "; " + locate(helm, path)
            report(ok, what, why)

        def broken_template(d: Path) -> None:
            p = d / "templates" / "deployment.yaml"
            p.write_text(p.read_text().replace("{{ $op.replicaCount }}", "{{ $op.replicaCount "))

        bad = {
            "a template syntax error": chart_copy(tmp, "bad-template", None, broken_template),
            "an unknown values key": chart_copy(tmp, "bad-key", deep_merge(shipped, {"operator": {"replicas": 2}})),
            "a value of the wrong type": chart_copy(tmp, "bad-type", deep_merge(shipped, {"operator": {"port": "8081"}})),
            "two replicas without leader election": chart_copy(
                tmp, "bad-le", deep_merge(shipped, {"operator": {"replicaCount": 2, "leaderElection": {"enabled": False}}})),
        }
        for what, path in bad.items():
            ok, _ = lint(helm, path)
            report(not ok, f"helm lint fails on {what}", "lint passed but should have failed")

    merged_cluster = deep_merge(shipped, ALL_ON)
    merged_ns = deep_merge(merged_cluster, {"operator": {"watchNamespace": "trading"}})
    check_render("defaults", shipped)
    check_render("defaults plus `global` values (--set global.x=y)", deep_merge(shipped, {"global": {"imageRegistry": "registry.example"}}))
    # Release named like the TradingPlatform, in its namespace: no object names may collide.
    check_render("every optional part on, all namespaces", merged_cluster, release="tradeplane")
    check_render("every optional part on, one namespace", merged_ns)
    check_render("one replica, no leader election, no Redis", deep_merge(shipped, {
        "operator": {"leaderElection": {"enabled": False}},
        "platform": {"enabled": True, "secrets": {"redis": {"name": ""}}}}))
    bogus = {"apiVersion": "tradeplane.io/v1alpha1", "kind": "TradingPlatform",
             "metadata": {"name": "x", "labels": {k: "x" for k in STANDARD_LABELS}},
             "spec": {"image": "x", "database": {"name": "d", "key": "k"}, "jwtSecret": {"name": "j", "key": "k"},
                      "replicas": "two", "bogusField": True}}
    found = validate_object(bogus, crd_schema())
    report(len(found) >= 2, "a TradingPlatform with a wrong type and an unknown field fails the CRD schema check",
           f"found: {found}")
    check_render_fails("two replicas without leader election", deep_merge(shipped, {
        "operator": {"replicaCount": 2, "leaderElection": {"enabled": False}}}))
    check_render_fails("an existing ServiceAccount without a name", deep_merge(shipped, {
        "serviceAccount": {"create": False}}))
    check_render_fails("an unknown values key", deep_merge(shipped, {"platform": {"replica": 3}}))

    print(f"\ncheck-chart: {len(failures)} failed" + (": " + "; ".join(failures) if failures else ", all passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
