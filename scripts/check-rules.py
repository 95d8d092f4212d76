#!/usr/bin/env python3
"""Check the chart's Prometheus rules with promtool. Exit 0 only if all pass.

  1. Renders charts/tradeplane with monitoring.prometheusRule.enabled (the same Helm v4 engine as
     scripts/check-chart.py, helm-python-sdk, release "tp" in namespace "tradeplane-system") and
     writes the PrometheusRule's groups as a plain rules file;
  2. `promtool check rules` on it, and on a rendering with other objectives and threshold;
  3. `promtool test rules tests/prometheus/*_test.yaml` against it;
  4. every alert of the rendered rules has at least one test where it fires and one where it
     does not (an `alert_rule_test` with non-empty and with empty `exp_alerts`).

Installs Debian's `prometheus` package (for promtool) with apt-get, and helm-python-sdk and
PyYAML with pip, when missing.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "tradeplane"
TESTS = ROOT / "tests" / "prometheus"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checklib import failures, pip_ensure, report  # noqa: E402


def ensure_promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    print("installing Debian's prometheus package (for promtool)")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"], check=True, env=env)
    found = shutil.which("promtool")
    if not found:
        sys.exit("check-rules: promtool is still missing after installing prometheus")
    return found


def render_rules(values: dict) -> dict:
    yaml = pip_ensure("yaml", "pyyaml")
    hp = pip_ensure("helm_python", "helm-python-sdk", "--ignore-requires-python")
    rendered = hp.Chart.load(str(CHART)).render(values, name="tp", namespace="tradeplane-system", is_install=True)
    rules = [yaml.safe_load(text) for path, text in rendered.items() if path.endswith("prometheusrule.yaml")]
    if len(rules) != 1 or rules[0].get("kind") != "PrometheusRule":
        sys.exit(f"check-rules: expected one PrometheusRule in the rendering, got {len(rules)}")
    return {"groups": rules[0]["spec"]["groups"]}


def promtool(tool: str, *args: str, cwd: Path) -> tuple[bool, str]:
    run = subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True)
    return run.returncode == 0, (run.stdout + run.stderr).strip()


def main() -> int:
    import_yaml = pip_ensure("yaml", "pyyaml")
    tool = ensure_promtool()
    with tempfile.TemporaryDirectory(prefix="tradeplane-rules-") as tmp:
        work = Path(tmp)
        rules = render_rules({"monitoring": {"prometheusRule": {"enabled": True}}})
        (work / "rules.yaml").write_text(import_yaml.safe_dump(rules, sort_keys=False))
        ok, out = promtool(tool, "check", "rules", "rules.yaml", cwd=work)
        report(ok, "promtool check rules (default values)", out)

        other = render_rules({"monitoring": {"prometheusRule": {
            "enabled": True, "availabilityObjective": 99.5, "latencyObjective": 95, "latencyThreshold": "0.5"}}})
        (work / "other.yaml").write_text(import_yaml.safe_dump(other, sort_keys=False))
        ok, out = promtool(tool, "check", "rules", "other.yaml", cwd=work)
        report(ok, "promtool check rules (other objectives and threshold)", out)

        tests = sorted(TESTS.glob("*_test.yaml"))
        if not tests:
            report(False, f"unit tests in {TESTS.relative_to(ROOT)}", "none found")
        for t in tests:
            shutil.copy(t, work / t.name)
        ok, out = promtool(tool, "test", "rules", *[t.name for t in tests], cwd=work)
        report(ok, f"promtool test rules {' '.join(str(t.relative_to(ROOT)) for t in tests)}", out)

        alerts = sorted({r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r})
        firing: set[str] = set()
        quiet: set[str] = set()
        for t in tests:
            for case in import_yaml.safe_load(t.read_text()).get("tests", []):
                for a in case.get("alert_rule_test", []):
                    (firing if a.get("exp_alerts") else quiet).add(a["alertname"])
        missing = [f"{a} ({'firing' if a not in firing else ''}{', ' if a not in firing and a not in quiet else ''}{'not firing' if a not in quiet else ''})"
                   for a in alerts if a not in firing or a not in quiet]
        report(not missing, f"every alert ({len(alerts)}) has a firing and a not-firing unit test",
               "untested: " + "; ".join(missing))
    print(f"check-rules: {'FAILED: ' + ', '.join(failures) if failures else 'all checks passed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
