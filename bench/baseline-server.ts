// The benchmark's reference server: the least a Fastify route can do, with and
// without one indexed PostgreSQL query. Speedgate's routes are measured against it.
import Fastify from 'fastify';
import pg from 'pg';
import { loadConfig } from '../src/config.ts';

const port = Number(process.env.PORT);
const userId = process.env.BASELINE_USER_ID;
if (!Number.isInteger(port) || process.env.DATABASE_URL === undefined || userId === undefined) {
  console.error('baseline-server needs PORT, DATABASE_URL and BASELINE_USER_ID');
  process.exit(2);
}

// Logging at warn, as the benchmark runs Speedgate, so neither writes a line per request.
const app = Fastify({ logger: { level: 'warn' } });

// As many connections as Speedgate's pool opens: DATABASE_POOL_SIZE, or its default.
const poolSize = loadConfig(process.env).databasePoolSize;
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: poolSize });
pool.on('error', (error) => app.log.error({ err: error }, 'idle database connection failed'));

app.get('/baseline/json', async () => ({ ok: true, service: 'baseline' }));

app.get('/baseline/query', async (_request, reply) => {
  const result = await pool.query('select id, email from users where id = $1', [userId]);
  if (result.rows.length === 0) return reply.status(404).send({ error: 'not_found' });
  return result.rows[0];
});

app.addHook('onClose', async () => pool.end());

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    app.close().then(
      () => process.exit(0),
      (error) => {
        app.log.error({ err: error }, 'closing the baseline server failed');
        process.exit(1);
      },
    );
  });
}

await app.listen({ port, host: '127.0.0.1' });
