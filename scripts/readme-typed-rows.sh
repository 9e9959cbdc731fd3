#!/bin/bash
# The README's Cargo lines for typed rows, checked as a user meets them: a scratch crate whose
# [dependencies] are exactly the README's block (momoko's path pointed at this checkout) and
# whose main.rs is examples/typed_rows.rs, resolved afresh and built with warnings denied.
# A feature the README forgets (chrono's or uuid's serde, serde's derive) fails here.
# Usage: scripts/readme-typed-rows.sh SCRATCH_DIR   (make deps-fresh calls it)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCRATCH=${1:?usage: $0 SCRATCH_DIR}
CARGO=${CARGO:-cargo}
# The ```toml block of the README that turns on momoko's typed-value features.
block=$(awk '/^```toml$/ {grab=1; buf=""; next}
             /^```$/ && grab {if (buf ~ /"rust_decimal", "serde"/) {printf "%s", buf; exit} grab=0; next}
             grab {buf = buf $0 "\n"}' "$ROOT/README.md")
[ -n "$block" ] || { echo "README.md has no toml block with momoko's typed-value features" >&2; exit 1; }
grep -q 'path = "../momoko"' <<<"$block" || { echo "the README's typed-rows block no longer depends on ../momoko" >&2; exit 1; }
mkdir -p "$SCRATCH/src"
{
  printf '[package]\nname = "momoko-readme-typed-rows"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
  sed "s|path = \"../momoko\"|path = \"$ROOT\"|" <<<"$block"
  printf '\n[workspace]\n'
} >"$SCRATCH/Cargo.toml"
cp "$ROOT/examples/typed_rows.rs" "$SCRATCH/src/main.rs"
rm -f "$SCRATCH/Cargo.lock"
cd "$SCRATCH"
"$CARGO" generate-lockfile -q 2>/dev/null || "$CARGO" generate-lockfile -q --offline
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SCRATCH/target}" RUSTFLAGS="-D warnings" "$CARGO" check -q
echo "==> examples/typed_rows.rs builds with exactly the README's Cargo lines"
