#!/usr/bin/env bash
# What the test suite needs beyond the venv, installed when missing (`make deps`, which
# `make test` runs): Debian packages as root via apt-get, for the PostgreSQL major version
# actually installed (PG_MAJOR overrides it). Where it cannot install, it says so and the
# tests that need the tool skip with a message naming it.
set -euo pipefail

pgver="${PG_MAJOR:-}"
if [ -z "$pgver" ]; then
    pgver=$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null \
        | sed -E 's|^/usr/lib/postgresql/([^/]+)/.*|\1|' | sort -n | tail -1 || true)
fi
if [ -z "$pgver" ] && command -v pg_config >/dev/null; then
    pgver=$(pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
fi
ext=/usr/share/postgresql/$pgver/extension

missing=()
have() { command -v "$1" >/dev/null; }
need() {  # need PACKAGE TEST...: add PACKAGE unless the test (a shell condition) holds
    local package=$1
    shift
    "$@" || missing+=("$package")
}
if [ -n "$pgver" ]; then
    need "postgresql-$pgver-plpgsql-check" test -f "$ext/plpgsql_check.control"  # SQL lint
    need "postgresql-$pgver-pgtap" test -f "$ext/pgtap.control"
    need pgtap have pg_prove
    need "postgresql-$pgver-pgq3" test -f "$ext/pgq.control"  # living beside SkyTools PgQ
else
    echo "deps: no PostgreSQL found; the tests start none and skip"
fi
need chromium test -x /usr/bin/chromium  # tests/browser (Playwright drives the system browser)
need pgbouncer test -x /usr/sbin/pgbouncer  # tests/e2e/test_topology.py, bench/topology.py
need nodejs have node  # tests/conformance: the Node worker of examples/node
need npm have npm

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "deps: missing ${missing[*]} (not root or no apt-get; install them yourself);" \
            "the tests that need them skip"
    else
        echo "deps: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

# The Node worker's dependencies (the npm pg package, from examples/node's lockfile).
node_dir=$(dirname "$0")/../examples/node
if ! have node || ! have npm; then
    echo "deps: node/npm not found; the Node worker's conformance scenarios will be skipped"
elif [ ! -d "$node_dir/node_modules/pg" ] \
    || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]; then
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
