#!/usr/bin/env python3
"""Lint charts/tradeplane with the real Helm library (helm-sdkpy), offline.

What it checks, each printed as PASS/FAIL:
  1. values.yaml validates against values.schema.json, and every leaf key in values.yaml has
     its own comment line right above it (the "documented line by line" rule);
  2. the dashboard JSON parses and has the panels the issue asks for;
  3. `helm lint` of the chart as shipped, then of temporary copies whose values switch every
     optional part on (once watching all namespaces, once a single namespace): no lint message
     of severity warning or error, no "missing required value" in Helm's log;
  4. that the lint has teeth: copies with a template syntax error, an unknown values key, a
     value of the wrong type, and more than one replica without leader election must FAIL.

Exit status 0 when everything passes, 1 otherwise. Installs helm-sdkpy with pip when missing.
Helm's lint renders every template with the values but cannot print what it rendered, so
schema validation of the rendered Kubernetes objects is done elsewhere (check-manifests.sh
validates the kustomize base, which carries the same operator objects).
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

failures: list[str] = []


def report(ok: bool, what: str, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {what}" + (f"\n      {detail}" if detail and not ok else ""))
    if not ok:
        failures.append(what)


def ensure_helm_sdkpy():
    try:
        import helm_sdkpy  # noqa: F401
    except ImportError:
        print("installing helm-sdkpy (pip install --ignore-requires-python helm-sdkpy)")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--ignore-requires-python", "helm-sdkpy"],
            check=True,
        )
    import helm_sdkpy

    return helm_sdkpy


def ensure_yaml_jsonschema():
    try:
        import jsonschema  # noqa: F401
        import yaml  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "pyyaml", "jsonschema"], check=True)


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
        "spec": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}},
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
    ]
    missing = [n for n in needed if n not in exprs]
    report(not missing, f"{path.relative_to(ROOT)}: request rate, errors, latency, orders, trades, match latency, replicas, HPA, backup age", f"missing: {missing}")


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

    print(f"\ncheck-chart: {len(failures)} failed" + (": " + "; ".join(failures) if failures else ", all passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
