#!/usr/bin/env bash
# Copy the generated CRD (crds/tradingplatform.yaml, the output of `tradeplane-operator crd`)
# to the places that must ship it byte for byte:
#   charts/tradeplane/crds/tradingplatform.yaml   (Helm installs crds/ before the templates)
#   k8s/operator/crd/tradingplatform.yaml         (kustomize refuses files outside its folder)
# scripts/check-manifests.sh fails when a copy differs from the source.
#
# Usage: scripts/sync-crd.sh           copy
#        scripts/sync-crd.sh --check   only compare; exit 1 when a copy is missing or differs
set -euo pipefail
cd "$(dirname "$0")/.."

src=crds/tradingplatform.yaml
copies=(charts/tradeplane/crds/tradingplatform.yaml k8s/operator/crd/tradingplatform.yaml)

if [[ ! -f $src ]]; then
  echo "sync-crd: $src does not exist yet (generate it with: tradeplane-operator crd > $src)" >&2
  exit 1
fi

status=0
for dst in "${copies[@]}"; do
  if [[ ${1:-} == --check ]]; then
    if cmp -s "$src" "$dst"; then
      echo "sync-crd: $dst is identical to $src"
    else
      echo "sync-crd: $dst is missing or differs from $src (run scripts/sync-crd.sh)" >&2
      status=1
    fi
  else
    mkdir -p "$(dirname "$dst")"
    cp "$src" "$dst"
    echo "sync-crd: copied $src -> $dst"
  fi
done
exit $status
