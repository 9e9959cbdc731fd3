#!/usr/bin/env bash
# Runs some of the suite's integration tests on one PostgreSQL major, installed first into the
# cache by scripts/pg-install.sh, under a throwaway server of that version (momoko-testpg
# with MOMOKO_PG_BIN). A name whose tests/NAME.rs is not in this checkout is skipped with a
# note, so that the list can name tests still being written.
#
#   scripts/pg-tests.sh MAJOR TEST...
#
# Environment: CARGO (default cargo), TESTPG (the momoko-testpg binary, required),
# PG_CACHE (required), PG_TESTS_LOG (optional: the run's output is also written there, and
# its last line is the summary `PostgreSQL VERSION: N passed, N failed in S s (TESTS)`).
# Exits with cargo test's status. `--workspace` keeps the feature set of `make test`'s main
# run (the bench crate's dependencies unify features), so nothing is compiled again.
set -euo pipefail

major=${1:?usage: pg-tests.sh MAJOR TEST...}
shift
cargo=${CARGO:-cargo}
testpg=${TESTPG:?TESTPG must name the momoko-testpg binary}
cache=${PG_CACHE:?PG_CACHE must name the cache of PostgreSQL installs}
here=$(cd "$(dirname "$0")/.." && pwd)

bin=$("$here/scripts/pg-install.sh" "$major" "$cache" | tail -n1)
args=()
ran=()
missing=()
for t in "$@"; do
  if [ -f "$here/tests/$t.rs" ]; then
    args+=(--test "$t")
    ran+=("$t")
  else
    echo "==> tests/$t.rs is not in this checkout: skipped" >&2
    missing+=("$t")
  fi
done
[ ${#args[@]} -gt 0 ] || { echo "pg-tests: none of the tests named ($*) is here" >&2; exit 1; }
version=$("$bin/postgres" --version | awk '{print $NF}')
echo "==> PostgreSQL $version ($bin): cargo test --workspace --no-fail-fast ${args[*]}"

log=${PG_TESTS_LOG:-}
start=$(date +%s)
status=0
if [ -n "$log" ]; then
  mkdir -p "$(dirname "$log")"
  MOMOKO_PG_BIN=$bin "$testpg" run -- "$cargo" test --workspace --no-fail-fast "${args[@]}" 2>&1 | tee "$log" || status=$?
else
  MOMOKO_PG_BIN=$bin "$testpg" run -- "$cargo" test --workspace --no-fail-fast "${args[@]}" || status=$?
fi
took=$(( $(date +%s) - start ))
if [ -n "$log" ]; then
  # cargo's "test result: ok. 12 passed; 0 failed; ..." lines, one per test binary.
  read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p+0, f+0 }' "$log")
  summary="PostgreSQL $version: $passed passed, $failed failed in $took s (${ran[*]}"
  [ ${#missing[@]} -eq 0 ] || summary+="; not here: ${missing[*]}"
  summary+=")"
  echo "$summary" | tee -a "$log"
else
  echo "==> PostgreSQL $version: done in $took s (status $status)"
fi
exit "$status"
