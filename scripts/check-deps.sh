#!/usr/bin/env bash
# Dependency policy with cargo-deny (deny.toml): licenses, bans (wildcards; duplicate versions
# are listed as warnings), sources (crates.io only), and RustSec advisories when a local copy of
# the advisory database exists. CI machines cannot reach GitHub, where the database lives, so
# without a copy the advisories check is skipped and says so; point ADVISORY_DB at a clone of
# https://github.com/rustsec/advisory-db to run it.
#
#   scripts/check-deps.sh            (installs cargo-deny from crates.io when it is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deny >/dev/null; then
  echo "check-deps: installing cargo-deny (cargo install --locked cargo-deny)"
  cargo install --locked --quiet cargo-deny
fi
cargo deny --version
cargo deny check licenses bans sources
ADVISORY_DB=${ADVISORY_DB:-}
if [[ -n "$ADVISORY_DB" && -d "$ADVISORY_DB" ]]; then
  # cargo-deny reads databases from a directory of clones: give it one holding ADVISORY_DB, and
  # never fetch.
  DB_ROOT=$(mktemp -d)
  trap 'rm -rf "$DB_ROOT"' EXIT
  ln -s "$(cd "$ADVISORY_DB" && pwd)" "$DB_ROOT/advisory-db"
  { sed '/^\[advisories\]/,$d' deny.toml; printf '[advisories]\nyanked = "warn"\ndb-path = "%s"\n' "$DB_ROOT"; } >"$DB_ROOT/deny.toml"
  cargo deny check --config "$DB_ROOT/deny.toml" --disable-fetch advisories
else
  echo "check-deps: SKIPPED advisories: no local copy of the RustSec advisory database (set ADVISORY_DB to a clone of https://github.com/rustsec/advisory-db)"
fi
