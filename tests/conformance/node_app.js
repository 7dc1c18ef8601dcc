'use strict';
// The conformance scenarios' entrypoint `conf`, served by the Node worker of examples/node (the
// same handler as python_app.py and `worker.sh -j`): record `start` in table `events`, sleep
// `payload.sleep` seconds (stopping when the worker aborts), throw while
// `attempt <= payload.fail_until`, record `end`, return { value, attempt }.
const path = require('node:path');
const { Worker, pg } = require(path.join(__dirname, '..', '..', 'examples', 'node', 'worker.js'));

const events = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
const label = `node-${process.pid}`;
const record = (job, event) => events.query(
  'INSERT INTO events (job_id, attempt, event, worker) VALUES ($1, $2, $3, $4)',
  [job.id, job.attempt, event, label]);

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => {
    clearTimeout(timer);
    reject(new Error('stopped'));
  });
});

new Worker({
  handlers: {
    async conf(job) {
      await record(job, 'start');
      await sleep(Number(job.payload.sleep ?? 0) * 1000, job.signal);
      if (job.attempt <= Number(job.payload.fail_until ?? 0)) {
        throw new Error(`failing attempt ${job.attempt}`);
      }
      await record(job, 'end');
      return { value: job.payload.value ?? null, attempt: job.attempt };
    },
  },
}).run().then(() => events.end()).catch((e) => {
  console.error(e);
  process.exit(1);
});
