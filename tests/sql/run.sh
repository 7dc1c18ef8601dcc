#!/usr/bin/env bash
# Runs the SQL-only test suites of pgq-thin with psql, pg_regress and pg_isolation_regress:
# no Python in the loop.
#
#   tests/sql/run.sh [--db NAME] [--keep] [--outdir DIR] [regress|isolation|all] [TEST...]
#
#   regress    tests/sql/regress/sql/*.sql against tests/sql/regress/expected/*.out
#   isolation  tests/sql/isolation/specs/*.spec against tests/sql/isolation/expected/*.out
#   all        both (the default)
#   TEST...    only these tests (file names without extension); 00_setup and 99_cleanup
#              are always added to a regress run
#
# Connection: the standard libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD); the role
# must be allowed to create databases unless --db is given.
#   --db NAME    use database NAME, which must already hold the pgq schema; nothing is
#                created or dropped (the pytest module runs the suites this way)
#   (default)    create a scratch database pgq_sqltest_<pid>, install sql/install.psql into
#                it, run, and drop it afterwards (kept with --keep)
#   --outdir DIR where results and diffs go (default: tests/sql, i.e. tests/sql/results/,
#                tests/sql/regression.diffs and tests/sql/output_iso/, all git-ignored)
#
# Binaries: psql from PG_BINDIR (default: `pg_config --bindir`), pg_regress and
# pg_isolation_regress from PGXS (default: `pg_config --pkglibdir`/pgxs).
# Exit status: 0 when every test passed; otherwise the diffs are printed and it is 1.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

db=""
keep=0
outdir="$here"
suite=all
tests=()
while (($#)); do
    case "$1" in
        --db) db=$2; shift 2 ;;
        --db=*) db=${1#--db=}; shift ;;
        --keep) keep=1; shift ;;
        --outdir) outdir=$2; shift 2 ;;
        --outdir=*) outdir=${1#--outdir=}; shift ;;
        regress|isolation|all) suite=$1; shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
        *) tests+=("$1"); shift ;;
    esac
done

pg_config=${PG_CONFIG:-$(command -v pg_config || echo /usr/lib/postgresql/15/bin/pg_config)}
bindir=${PG_BINDIR:-$("$pg_config" --bindir)}
pgxs=${PGXS:-$("$pg_config" --pkglibdir)/pgxs}
pg_regress=$pgxs/src/test/regress/pg_regress
pg_isolation_regress=$pgxs/src/test/isolation/pg_isolation_regress
psql=$bindir/psql
for exe in "$psql" "$pg_regress" "$pg_isolation_regress"; do
    [[ -x $exe ]] || { echo "run.sh: $exe not found (set PG_BINDIR / PGXS)" >&2; exit 2; }
done

# pg_regress reads the connection from its options, not from PGHOST/PGPORT/PGUSER.
conn=()
[[ -n ${PGHOST:-} ]] && conn+=(--host="$PGHOST")
[[ -n ${PGPORT:-} ]] && conn+=(--port="$PGPORT")
[[ -n ${PGUSER:-} ]] && conn+=(--user="$PGUSER")

created=""
cleanup() {
    if [[ -n $created && $keep == 0 ]]; then
        "$psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$created\"" >/dev/null || true
    fi
}
trap cleanup EXIT

if [[ -z $db ]]; then
    db="pgq_sqltest_$$"
    "$psql" -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
    created=$db
    "$psql" -X -q -v ON_ERROR_STOP=1 -f "$root/sql/install.psql" -d "$db" >/dev/null
    [[ $keep == 1 ]] && echo "run.sh: database $db (kept)"
fi

status=0
mkdir -p "$outdir"

run_regress() {
    local list=()
    if ((${#tests[@]})); then
        list=(00_setup)
        for t in "${tests[@]}"; do
            [[ -f $here/regress/sql/$t.sql && $t != 00_setup && $t != 99_cleanup ]] && list+=("$t")
        done
        list+=(99_cleanup)
    else
        for f in "$here"/regress/sql/*.sql; do list+=("$(basename "$f" .sql)"); done
    fi
    echo "== pg_regress: ${list[*]}"
    if ! "$pg_regress" --use-existing --dbname="$db" "${conn[@]}" --bindir="$bindir" \
        --inputdir="$here/regress" --outputdir="$outdir" "${list[@]}"; then
        status=1
        [[ -f $outdir/regression.diffs ]] && cat "$outdir/regression.diffs"
    fi
}

run_isolation() {
    local list=()
    if ((${#tests[@]})); then
        for t in "${tests[@]}"; do
            [[ -f $here/isolation/specs/$t.spec ]] && list+=("$t")
        done
    else
        for f in "$here"/isolation/specs/*.spec; do list+=("$(basename "$f" .spec)"); done
    fi
    ((${#list[@]})) || return 0
    echo "== pg_isolation_regress: ${list[*]}"
    if ! "$pg_isolation_regress" --use-existing --dbname="$db" "${conn[@]}" --bindir="$bindir" \
        --inputdir="$here/isolation" --outputdir="$outdir/output_iso" "${list[@]}"; then
        status=1
        [[ -f $outdir/output_iso/regression.diffs ]] && cat "$outdir/output_iso/regression.diffs"
    fi
}

case $suite in
    regress) run_regress ;;
    isolation) run_isolation ;;
    all) run_regress; run_isolation ;;
esac
exit $status
