#!/usr/bin/env bash
# Renders every k8s/examples/*.yaml with `tradeplane-operator render` and validates the output
# (and the CRD) against the Kubernetes OpenAPI schemas with kubernetes-validate, strictly (unknown
# fields fail), for the minimum supported and the newest Kubernetes version.
# Usage: scripts/validate-operator-output.sh   (env: K8S_VERSIONS="1.33.0 1.37.0", OPERATOR_BIN=path)
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSIONS=${K8S_VERSIONS:-"1.33.0 1.37.0"}
# The workspace's own target directory: scripts/test has built the operator there already.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "installing kubernetes-validate with pip" >&2
  python3 -m pip install --quiet kubernetes-validate
fi

if [[ -z "${OPERATOR_BIN:-}" ]]; then
  cargo build --quiet -p tradeplane-operator
  OPERATOR_BIN="$CARGO_TARGET_DIR/debug/tradeplane-operator"
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$OPERATOR_BIN" crd > "$out/crd.yaml"
if ! diff -q "$out/crd.yaml" crds/tradingplatform.yaml >/dev/null; then
  echo "FAIL: crds/tradingplatform.yaml differs from 'tradeplane-operator crd'" >&2
  exit 1
fi

status=0
for example in k8s/examples/*.yaml; do
  name=$(basename "$example" .yaml)
  "$OPERATOR_BIN" render -f "$example" > "$out/$name.yaml"
  echo "$example: $(grep -c '^kind:' "$out/$name.yaml") objects"
done

for version in $K8S_VERSIONS; do
  for f in "$out"/*.yaml; do
    if ! kubernetes-validate --strict --quiet -k "$version" "$f"; then
      echo "FAIL: $(basename "$f") against Kubernetes $version" >&2
      status=1
    fi
  done
  echo "Kubernetes $version: done"
done

if [[ $status -eq 0 ]]; then echo "all rendered objects valid"; fi
exit $status
