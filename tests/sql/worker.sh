#!/usr/bin/env bash
# A pgq-thin worker written in bash + psql only, to show that any client gets the queue's
# behaviour from the SQL functions alone. It claims a batch (pgq.claim), does the "work" in
# SQL, finishes the batch (pgq.complete_many), and stops when dequeue returns nothing.
#
#   tests/sql/worker.sh [-d CONNINFO] [-e ENTRYPOINT] [-b BATCH] [-w WORKER_ID] [-l LEASE] [-j] [-f]
#
#   -d  libpq connection string or URI (default: the PG* environment variables)
#   -e  entrypoint to work on (default: sqlwork)
#   -b  jobs per batch (default: 10); with -j, jobs running at once
#   -w  worker id recorded on the jobs (default: bash-<pid>)
#   -l  lease duration in seconds (default: 30)
#   -j  job mode, the conformance scenarios' worker (tests/conformance): each claimed job runs in
#       a psql of its own: it records "start" in table events, sleeps payload.sleep seconds,
#       fails (pgq.fail) while attempt <= payload.fail_until, else records "end" and completes
#       with {"value": payload.value, "attempt": n}. Meanwhile the loop renews the leases every
#       third of the lease (pgq.renew) and kills the jobs reported gone (a cancelled one is then
#       reported failed, which ends it cancelled); claims wait for NOTIFY-free polling (0.2 s).
#       SIGTERM/SIGINT: stop claiming, let running jobs finish for 5 s, kill and release the rest.
#   -f  with -j: run forever (default: exit once nothing is claimable and nothing runs)
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
lease=30
jobs_mode=0
forever=0
while getopts "d:e:b:w:l:jfh" opt; do
    case $opt in
        d) conninfo=$OPTARG ;;
        e) entrypoint=$OPTARG ;;
        b) batch=$OPTARG ;;
        w) worker=$OPTARG ;;
        l) lease=$OPTARG ;;
        j) jobs_mode=1 ;;
        f) forever=1 ;;
        h) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) exit 2 ;;
    esac
done
[[ $batch =~ ^[0-9]+$ ]] || { echo "worker.sh: -b needs a number" >&2; exit 2; }
[[ $lease =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "worker.sh: -l needs seconds" >&2; exit 2; }

psql_args=(-X -q -A -t -v ON_ERROR_STOP=1 -v ep="$entrypoint" -v batch="$batch"
           -v worker="$worker" -v lease="$lease seconds")
[[ -n $conninfo ]] && psql_args+=(-d "$conninfo")

# One job of -j mode, in its own psql session (run in the background). When the database
# refuses a statement (e.g. a result over max_result_bytes), the job fails with its message.
run_job() {
    local err
    err=$(psql "${psql_args[@]}" -v id="$1" -v token="$2" -v attempt="$3" -v payload="$4" \
          2>&1 >/dev/null <<'SQL'
INSERT INTO events (job_id, attempt, event, worker) VALUES (:id, :attempt, 'start', :'worker');
SELECT pg_sleep(coalesce((:'payload'::jsonb ->> 'sleep')::float8, 0));
SELECT :attempt <= coalesce((:'payload'::jsonb ->> 'fail_until')::int, 0) AS failing \gset
\if :failing
SELECT pgq.fail(:id, :'token', 'failing attempt ' || :attempt, true);
\else
INSERT INTO events (job_id, attempt, event, worker) VALUES (:id, :attempt, 'end', :'worker');
SELECT pgq.complete(:id, :'token', jsonb_build_object('value', :'payload'::jsonb -> 'value',
                                                      'attempt', :attempt));
\endif
SQL
    ) || psql "${psql_args[@]}" -v id="$1" -v token="$2" -v error="$err" \
        <<<"SELECT pgq.fail(:id, :'token', :'error', false)" >/dev/null
}

# Kills a job's subshell, then its psql (the subshell first: it must not report anything).
stop_job() {
    local kids
    kids=$(pgrep -P "$1" || true)
    kill -KILL "$1" $kids 2>/dev/null || true
}

# -j mode: claim up to -b jobs, run each in the background, renew their leases, stop the gone.
jobs_loop() {
    declare -A pids=() tokens=()
    local stopping=0 cadence last_renew=0 rows id token attempt payload gone now
    cadence=$(awk -v l="$lease" 'BEGIN { printf "%d", (l * 1000) / 3 }')  # ms
    trap 'stopping=1' TERM INT
    while :; do
        for id in "${!pids[@]}"; do  # forget the jobs whose psql ended
            kill -0 "${pids[$id]}" 2>/dev/null || unset "pids[$id]" "tokens[$id]"
        done
        if ((stopping)); then
            break
        fi
        rows=""
        if ((${#pids[@]} < batch)); then
            rows=$(psql "${psql_args[@]}" -F $'\t' -v free=$((batch - ${#pids[@]})) <<'SQL'
SELECT c.id, c.lease_token, c.attempt, c.payload
FROM pgq.claim(ARRAY[:'ep'], :free, :'worker', :'lease'::interval) AS c;
SQL
            )
            while IFS=$'\t' read -r id token attempt payload; do
                [[ -n $id ]] || continue
                run_job "$id" "$token" "$attempt" "$payload" >/dev/null &
                pids[$id]=$!
                tokens[$id]=$token
            done <<<"$rows"
        fi
        if [[ -z $rows ]] && ((${#pids[@]} == 0)) && ((!forever)); then
            break
        fi
        now=$(date +%s%3N)
        if ((${#pids[@]} > 0 && now - last_renew >= cadence)); then
            last_renew=$now
            local ids tks
            ids=$(IFS=,; echo "{${!pids[*]}}")
            tks=$(for id in "${!pids[@]}"; do echo -n "${tokens[$id]},"; done)
            tks="{${tks%,}}"
            while IFS=$'\t' read -r id gone; do
                [[ -n $id && -n ${pids[$id]:-} ]] || continue
                stop_job "${pids[$id]}"
                if [[ $gone == cancelled ]]; then
                    psql "${psql_args[@]}" -v id="$id" -v token="${tokens[$id]}" \
                        <<<"SELECT pgq.fail(:id, :'token', 'cancelled')" >/dev/null
                fi
                unset "pids[$id]" "tokens[$id]"
            done < <(psql "${psql_args[@]}" -F $'\t' -v ids="$ids" -v tokens="$tks" <<'SQL'
SELECT job_id, gone FROM pgq.renew(:'ids'::bigint[], :'tokens'::uuid[], :'lease'::interval)
WHERE gone IS NOT NULL;
SQL
            )
        fi
        if [[ -z $rows ]] || ((${#pids[@]} >= batch)); then
            sleep 0.2
        fi
    done
    # Shutdown: running jobs get 5 s, then are killed and released.
    local deadline=$((SECONDS + 5))
    while ((${#pids[@]} > 0 && SECONDS < deadline)); do
        for id in "${!pids[@]}"; do
            kill -0 "${pids[$id]}" 2>/dev/null || unset "pids[$id]" "tokens[$id]"
        done
        sleep 0.1
    done
    for id in "${!pids[@]}"; do
        stop_job "${pids[$id]}"
        psql "${psql_args[@]}" -v id="$id" -v token="${tokens[$id]}" \
            <<<"SELECT pgq.release(ARRAY[:id]::bigint[], ARRAY[:'token']::uuid[])" >/dev/null
    done
    echo "worker $worker: stopped"
}
if ((jobs_mode)); then
    jobs_loop
    exit 0
fi

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
