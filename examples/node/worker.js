'use strict';
// A pgq-thin worker in Node.js, written from docs/sql-api.md alone: the npm `pg` package and the
// SQL functions of schema pgq, nothing else. The loop of "Writing a worker in another language":
// claim (pgq.claim, rows in the order to run them), renew every third of the lease (pgq.renew,
// stopping the jobs it reports gone), report outcomes (pgq.complete_many in batches, pgq.fail),
// sleep until a NOTIFY, the next scheduled job (pgq.next_due) or the poll interval, and on
// SIGINT/SIGTERM stop claiming, give running jobs a grace period, then release what is left.
//
//   const { Worker } = require('./worker');
//   new Worker({ handlers: { send_email: async (job) => ({ sent: true }) } }).run();
//
// A handler gets the job ({ id, entrypoint, payload, headers, priority, attempt, maxAttempts,
// timeoutAt, signal }) and returns a JSON-serialisable result or throws. `job.signal` aborts when
// the worker wants it to stop (timeout, cancel, lost lease, shutdown); a handler that ignores it
// runs on, but its outcome is no longer recorded. An error with `retryable = false` dead-letters
// the job at once.
const os = require('node:os');
const pg = require('pg');

const CLAIM = `SELECT id, entrypoint, payload, headers, priority, attempt, max_attempts,
                      lease_token, timeout_at
               FROM pgq.claim($1::text[], $2::integer, $3::text, $4::interval)`;
const RENEW = `SELECT job_id, gone FROM pgq.renew($1::bigint[], $2::uuid[], $3::interval)
               WHERE gone IS NOT NULL`;
const COMPLETE_MANY = 'SELECT pgq.complete_many($1::bigint[], $2::uuid[], $3::jsonb[]) AS done';
const FAIL = 'SELECT pgq.fail($1::bigint, $2::uuid, $3::text, $4::boolean) AS outcome';
const RELEASE = 'SELECT pgq.release($1::bigint[], $2::uuid[]) AS released';
const NEXT_DUE = 'SELECT pgq.next_due($1::text[]) AS due';
const FLUSH_MS = 10; // a completion waits this long to share its write with others

const seconds = (s) => `${s} seconds`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Worker {
  constructor({
    handlers,
    connectionString = process.env.DATABASE_URL,
    concurrency = Number(process.env.MAX_CONCURRENT_JOBS || 10),
    batchSize = Number(process.env.PGQ_BATCH_SIZE || 10),
    leaseSeconds = Number(process.env.PGQ_LEASE_DURATION || 30),
    pollSeconds = Number(process.env.PGQ_POLL_INTERVAL || 1),
    graceSeconds = Number(process.env.PGQ_SHUTDOWN_GRACE || 10),
    workerId = process.env.PGQ_WORKER_ID || `node-${os.hostname()}:${process.pid}`,
    mode = process.env.PGQ_MODE || 'forever', // 'drain': exit once nothing is claimable
    log = (line) => console.log(`${new Date().toISOString()} ${line}`),
  }) {
    Object.assign(this, { handlers, concurrency, batchSize, leaseSeconds, pollSeconds });
    Object.assign(this, { graceSeconds, workerId, mode, log });
    this.names = Object.keys(handlers);
    this.pool = new pg.Pool({ connectionString, max: 4 });
    this.pool.on('error', (e) => this.log(`idle connection lost: ${e.message}`));
    this.connectionString = connectionString;
    this.held = new Map(); // job id -> { job, token, controller, done (promise) }
    this.completions = []; // { held, result } waiting for one complete_many
    this.stopping = false;
    this.wakeUp = () => {};
  }

  // --- the loop ---------------------------------------------------------------------------

  async run() {
    const stop = () => this.stop();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    await this.pool.query('SELECT pgq.register_worker($1, $2::text[], $3, $4, $5, $6)', [
      this.workerId, this.names, this.concurrency, os.hostname(), process.pid, 'node-example',
    ]);
    await this.listen();
    const beat = setInterval(() => this.renew().catch((e) => this.log(`renew failed: ${e.message}`)),
      (this.leaseSeconds * 1000) / 3);
    this.log(`worker ${this.workerId} started: entrypoints=${this.names.join(',')} ` +
      `concurrency=${this.concurrency} lease=${this.leaseSeconds}s mode=${this.mode}`);
    try {
      await this.claimLoop();
      await this.shutdown();
    } finally {
      clearInterval(beat);
      await this.pool.query('SELECT pgq.deregister_worker($1)', [this.workerId]).catch(() => {});
      if (this.listener) await this.listener.end().catch(() => {});
      await this.pool.end();
    }
  }

  stop() {
    if (!this.stopping) this.log('stopping: no more claims');
    this.stopping = true;
    this.wakeUp();
  }

  async claimLoop() {
    while (!this.stopping) {
      const free = this.concurrency - this.held.size;
      if (free <= 0) {
        await this.wait(null);
        continue;
      }
      const want = Math.min(free, this.batchSize);
      let rows;
      try {
        ({ rows } = await this.pool.query(CLAIM, [this.names, want, this.workerId,
          seconds(this.leaseSeconds)]));
      } catch (e) {
        this.log(`claim failed: ${e.message}; retrying`);
        await this.wait(1000);
        continue;
      }
      for (const row of rows) this.start(row); // in claim order: priority, then FIFO
      if (rows.length === want) continue;
      if (this.mode === 'drain' && rows.length === 0 && this.held.size === 0) {
        this.log(`drained: no job is claimable for ${this.names.join(',')}`);
        return;
      }
      await this.wait(await this.untilNextDue());
    }
  }

  // Milliseconds to sleep: until the next scheduled job is due, at most the poll interval.
  async untilNextDue() {
    const poll = this.pollSeconds * 1000;
    try {
      const { rows } = await this.pool.query(NEXT_DUE, [this.names]);
      if (rows[0].due === null) return poll;
      return Math.max(0, Math.min(poll, rows[0].due.getTime() - Date.now()));
    } catch {
      return poll;
    }
  }

  wait(ms) {
    return new Promise((resolve) => {
      const timer = ms === null ? null : setTimeout(resolve, ms);
      this.wakeUp = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
    });
  }

  async listen() {
    try {
      this.listener = new pg.Client({ connectionString: this.connectionString });
      await this.listener.connect();
      this.listener.on('notification', (note) => {
        if (note.channel === 'pgq_jobs' && this.names.includes(note.payload)) this.wakeUp();
        // A cancel is confirmed by pgq.renew before anything is stopped.
        if (note.channel === 'pgq_cancel' && this.held.has(note.payload)) this.renew().catch(() => {});
      });
      this.listener.on('error', (e) => this.log(`listener lost: ${e.message}; polling only`));
      await this.listener.query('LISTEN pgq_jobs');
      await this.listener.query('LISTEN pgq_cancel');
    } catch (e) {
      this.log(`LISTEN failed: ${e.message}; polling only`);
    }
  }

  // --- one job ----------------------------------------------------------------------------

  start(row) {
    const controller = new AbortController();
    const job = {
      id: row.id, // int8 arrives as a string: passed back as is
      entrypoint: row.entrypoint,
      payload: row.payload,
      headers: row.headers,
      priority: row.priority,
      attempt: row.attempt,
      maxAttempts: row.max_attempts,
      timeoutAt: row.timeout_at,
      signal: controller.signal,
    };
    const held = { job, token: row.lease_token, controller };
    this.held.set(job.id, held);
    let deadline = null;
    if (job.timeoutAt) { // stop the handler at the job's deadline, whatever set it
      deadline = setTimeout(() => controller.abort('timeout'), Math.max(0, job.timeoutAt - Date.now()));
    }
    held.done = this.execute(held).finally(() => {
      clearTimeout(deadline);
      this.held.delete(job.id);
      this.wakeUp();
    });
  }

  async execute(held) {
    const { job, controller } = held;
    let settled = false;
    const handler = Promise.resolve().then(() => this.handlers[job.entrypoint](job));
    handler.finally(() => { settled = true; }).catch(() => {});
    let result;
    try {
      result = await Promise.race([handler, new Promise((_, reject) =>
        controller.signal.addEventListener('abort', () => reject(controller.signal.reason)))]);
    } catch (e) {
      const reason = controller.signal.aborted ? controller.signal.reason : null;
      if (reason === 'lost') return; // the claim is over: nothing to record
      if (reason === 'timeout' || reason === 'cancelled') {
        return this.write(FAIL, [job.id, held.token, reason, true], job, 'failed');
      }
      if (reason === 'shutdown') { // released only once its handler has returned
        await Promise.race([handler.catch(() => {}), sleep(900)]);
        if (!settled) return this.log(`job left to its lease id=${job.id}: handler still running`);
        return this.write(RELEASE, [[job.id], [held.token]], job, 'released');
      }
      const error = (e && e.stack) || String(e);
      return this.write(FAIL, [job.id, held.token, error, e?.retryable !== false], job, 'failed');
    }
    let text;
    try {
      text = result === undefined ? null : JSON.stringify(result);
    } catch (e) {
      const error = `result is not JSON: ${e.message}`;
      return this.write(FAIL, [job.id, held.token, error, false], job, 'failed');
    }
    return new Promise((resolve) => {
      this.completions.push({ held, text, resolve });
      if (this.completions.length === 1) setTimeout(() => this.flush(this.completions.splice(0)), FLUSH_MS);
    });
  }

  // One pgq.complete_many for the completions waiting; when the database refuses the batch
  // (a result too large: 54000), one by one, and a refused result becomes a failure.
  async flush(batch) {
    const args = [batch.map((c) => c.held.job.id), batch.map((c) => c.held.token),
      batch.map((c) => c.text)];
    try {
      const { rows } = await this.pool.query(COMPLETE_MANY, args);
      const done = new Set(rows[0].done);
      for (const { held: { job }, resolve } of batch) {
        this.log(done.has(job.id) ? `job succeeded id=${job.id} attempt=${job.attempt}`
          : `job outcome not recorded: claim already over (timed out, lost or cancelled) id=${job.id}`);
        resolve();
      }
    } catch (e) {
      if (!e.code || e.code.startsWith('08') || e.code === '57P01') { // connection lost: again
        await sleep(200);
        return this.flush(batch);
      }
      if (batch.length > 1) {
        for (const c of batch) await this.flush([c]);
        return;
      }
      const [{ held: { job, token }, resolve }] = batch;
      await this.write(FAIL, [job.id, token, `result could not be stored: ${e.message}`, false], job,
        'failed');
      resolve();
    }
  }

  async write(sql, args, job, what) {
    for (let delay = 100; ; delay = Math.min(delay * 2, 5000)) {
      try {
        const { rows } = await this.pool.query(sql, args);
        const answer = Object.values(rows[0])[0];
        this.log(`job ${what} id=${job.id} attempt=${job.attempt} answer=${answer}`);
        return;
      } catch (e) {
        if (e.code && !e.code.startsWith('08') && e.code !== '57P01') {
          this.log(`job outcome refused by the database id=${job.id}: ${e.message}`);
          return;
        }
        this.log(`could not record job ${job.id}: ${e.message}; retrying`);
        await sleep(delay);
      }
    }
  }

  // --- leases -----------------------------------------------------------------------------

  async renew() {
    await this.pool.query('SELECT pgq.worker_heartbeat($1)', [this.workerId]);
    const held = [...this.held.values()].filter((h) => !h.controller.signal.aborted);
    if (held.length === 0) return;
    const { rows } = await this.pool.query(RENEW, [held.map((h) => h.job.id),
      held.map((h) => h.token), seconds(this.leaseSeconds)]);
    for (const { job_id: id, gone } of rows) {
      const h = this.held.get(id);
      if (!h) continue;
      this.log(`job stopped id=${id}: ${gone}`);
      h.controller.abort(gone === 'cancelled' ? 'cancelled' : 'lost');
    }
  }

  // --- shutdown ---------------------------------------------------------------------------

  async shutdown() {
    const running = [...this.held.values()];
    if (running.length) {
      this.log(`waiting up to ${this.graceSeconds}s for ${running.length} running job(s)`);
      await Promise.race([Promise.all(running.map((h) => h.done)), sleep(this.graceSeconds * 1000)]);
    }
    const late = [...this.held.values()];
    for (const h of late) h.controller.abort('shutdown'); // released once the handler returns
    await Promise.all(late.map((h) => h.done));
  }
}

module.exports = { Worker, pg };
