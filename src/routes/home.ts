import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { currentUser } from './web.ts';

const STYLESHEET = readFileSync(new URL('../../public/app.css', import.meta.url), 'utf8');
const COPY_SCRIPT = readFileSync(new URL('../../public/copy.js', import.meta.url), 'utf8');

/** Registers the landing page, the stylesheet that every page links and the copy-button script. */
export default async function homeRoutes(app: FastifyInstance): Promise<void> {
  app.get('/', async (request, reply) => {
    const user = await currentUser(request);
    return reply.view('home', { title: 'Speedgate', user, issuer: app.speedgate.config.issuer });
  });

  app.get('/static/app.css', async (_request, reply) => {
    return reply.type('text/css; charset=utf-8').header('cache-control', 'public, max-age=3600').send(STYLESHEET);
  });

  app.get('/static/copy.js', async (_request, reply) => {
    return reply.type('text/javascript; charset=utf-8').header('cache-control', 'public, max-age=3600').send(COPY_SCRIPT);
  });
}
