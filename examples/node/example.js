'use strict';
// `node example.js` with DATABASE_URL set: serves the entrypoint `greet`.
//   psql -c "SELECT pgq.enqueue('greet', '{\"name\": \"Ada\"}')"
const { Worker } = require('./worker');

new Worker({
  handlers: {
    async greet(job) {
      return { greeting: `Hello, ${job.payload.name ?? 'world'}!` };
    },
  },
}).run().catch((e) => {
  console.error(e);
  process.exit(1);
});
