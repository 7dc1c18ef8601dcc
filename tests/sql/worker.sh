#!/usr/bin/env bash
# A pgq-thin worker written in bash + psql only, to show that any client gets the queue's
# behaviour from the SQL functions alone. It claims a batch (pgq.claim), does the "work" in
# SQL, finishes the batch (pgq.complete_many), and stops when dequeue returns nothing.
#
#   tests/sql/worker.sh [-d CONNINFO] [-e ENTRYPOINT] [-b BATCH] [-w WORKER_ID] [-l LEASE]
#
#   -d  libpq connection string or URI (default: the PG* environment variables)
#   -e  entrypoint to work on (default: sqlwork)
#   -b  jobs per batch (default: 10)
#   -w  worker id recorded on the jobs (default: bash-<pid>)
#   -l  lease duration (default: 30 seconds)
#
# The work for a job with payload {"n": N}: the sum 1 + ... + N and the md5 of the payload,
# stored as the job's result with the worker id. Each batch is two transactions of one psql
# session: the claim commits before the work starts, as in any worker.
# Prints one line at the end: "worker ID: batches B claimed C completed D" (D < C means leases
# were lost, e.g. reaped while the batch ran). Exits non-zero when psql fails.
set -euo pipefail

conninfo=""
entrypoint=sqlwork
batch=10
worker="bash-$$"
lease="30 seconds"
while getopts "d:e:b:w:l:h" opt; do
    case $opt in
        d) conninfo=$OPTARG ;;
        e) entrypoint=$OPTARG ;;
        b) batch=$OPTARG ;;
        w) worker=$OPTARG ;;
        l) lease=$OPTARG ;;
        h) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) exit 2 ;;
    esac
done
[[ $batch =~ ^[0-9]+$ ]] || { echo "worker.sh: -b needs a number" >&2; exit 2; }

psql_args=(-X -q -A -t -v ON_ERROR_STOP=1 -v ep="$entrypoint" -v batch="$batch"
           -v worker="$worker" -v lease="$lease")
[[ -n $conninfo ]] && psql_args+=(-d "$conninfo")

batches=0
claimed=0
completed=0
while :; do
    # Prints "<claimed> <completed>".
    out=$(psql "${psql_args[@]}" <<'SQL'
SELECT count(*) AS n,
       coalesce(array_agg(c.id ORDER BY c.id), '{}') AS ids,
       coalesce(array_agg(c.lease_token ORDER BY c.id), '{}') AS tokens,
       coalesce(array_agg(c.payload ORDER BY c.id), '{}') AS payloads
FROM pgq.claim(ARRAY[:'ep'], :batch, :'worker', :'lease'::interval) AS c
\gset
SELECT :n || ' ' || cardinality(pgq.complete_many(
    :'ids'::bigint[],
    :'tokens'::uuid[],
    ARRAY(SELECT jsonb_build_object(
                     'sum', (SELECT coalesce(sum(i), 0)
                             FROM generate_series(1, coalesce((p.doc ->> 'n')::int, 0)) AS i),
                     'md5', md5(p.doc::text),
                     'worker', :'worker')
          FROM unnest(:'payloads'::jsonb[]) WITH ORDINALITY AS p(doc, ord)
          ORDER BY p.ord)));
SQL
    )
    read -r n done <<<"$out"
    if ((n == 0)); then
        break
    fi
    batches=$((batches + 1))
    claimed=$((claimed + n))
    completed=$((completed + done))
done
echo "worker $worker: batches $batches claimed $claimed completed $completed"
