import path from 'node:path';
import { fileURLToPath } from 'node:url';
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import view from '@fastify/view';
import { Eta } from 'eta';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import helmet from 'helmet';
import { LastUsedRecorder } from './accounts/last-used.ts';
import type { Config } from './config.ts';
import type { ServerContext } from './context.ts';
import { migrateToLatest, openDatabase } from './db/database.ts';
import { AuditLog } from './db/audit-log.ts';
import { AuthCache } from './db/auth-cache.ts';
import { EmbeddedListener, PostgresListener } from './db/invalidation.ts';
import { PostgresRateLimiter, RedisRateLimiter } from './db/rate-limiter.ts';
import { schedulePurge } from './maintenance.ts';
import { loadOrCreateSetting } from './db/settings.ts';
import { SigningKeys } from './oauth/keys.ts';
import { MetadataDocumentClients } from './oauth/metadata-documents.ts';
import { parseFormBody } from './oauth/parameters.ts';
import { ScopeRegistry } from './oauth/scopes.ts';
import { randomToken } from './oauth/secrets.ts';
import { registerErrorHandler } from './plugins/errors.ts';
import accountRoutes from './routes/accounts.ts';
import apiRoutes from './routes/api.ts';
import personalAccessTokenRoutes from './routes/personal-access-tokens.ts';
import registerRoutes from './routes/register.ts';
import developerRoutes from './routes/developer.ts';
import securityEventRoutes from './routes/security-events.ts';
import applicationRoutes from './routes/applications.ts';
import authorizeRoutes from './routes/authorize.ts';
import devicePageRoutes from './routes/device-page.ts';
import homeRoutes from './routes/home.ts';
import metadataRoutes from './routes/metadata.ts';
import oauthRoutes from './routes/oauth.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Request and response fields that carry secrets, removed from every log line. */
const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'body.client_secret',
  'body.code',
  'body.code_verifier',
  'body.refresh_token',
  'body.device_code',
  'body.password',
];

export interface BuildOptions {
  logger?: FastifyServerOptions['logger'];
}

/**
 * Builds the Speedgate server: opens and migrates the database, loads the
 * signing keys and registers every route. The caller listens and closes.
 */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? {
      level: config.logLevel,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      // Query strings can carry user codes and authorization codes: log the path only.
      serializers: {
        req: (request) => ({ method: request.method, url: request.url.split('?')[0], remoteAddress: request.ip }),
      },
    },
    // Bodies of OAuth requests are small; this bounds what one request can make the server parse.
    bodyLimit: 64 * 1024,
    // API bodies are validated as sent: no silent type coercion, and unknown fields are rejected.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
    // Rate limits count per client address, so behind a load balancer it must come from X-Forwarded-For.
    trustProxy: config.trustProxy as FastifyServerOptions['trustProxy'],
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
  });

  // Node.js keeps a keep-alive connection open after its response even while the
  // server closes, until keepAliveTimeout (72 s in Fastify 5), so close() would wait
  // that long for a client that had a request in flight. Responses sent during
  // shutdown ask the client to close the connection instead.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });

  const onConnectionError = (error: Error) => app.log.error({ err: error }, 'idle database connection failed');
  const { db, kind, embedded } = await openDatabase({ ...config, poolSize: config.databasePoolSize, onConnectionError });
  let context: ServerContext;
  try {
    const applied = await migrateToLatest(db);
    for (const migration of applied) app.log.info({ migration: migration.migrationName }, 'applied migration');

    const scopes = new ScopeRegistry(config.extraScopes);
    context = {
      db,
      config,
      databaseKind: kind,
      keys: await SigningKeys.load(db, config.now, config.accessTokenTtlSeconds),
      scopes,
      metadataDocuments: new MetadataDocumentClients(db, config, scopes),
      audit: new AuditLog(db, config.now, (error) => app.log.error({ err: error }, 'writing audit events failed')),
      cache: new AuthCache(
        embedded !== undefined
          ? new EmbeddedListener(embedded)
          : new PostgresListener(config.databaseUrl as string, (error) => app.log.warn({ err: error }, 'cache invalidation connection lost; caches off until it is back')),
      ),
      cookieSecret: await loadOrCreateSetting(db, 'cookie_secret', () => randomToken(32)),
      lastUsed: new LastUsedRecorder(db, (error) => app.log.error({ err: error }, 'recording token use failed')),
      rateLimiter: config.redisUrl === undefined ? new PostgresRateLimiter(db, config.now) : new RedisRateLimiter(config.redisUrl, config.now),
    };
    await context.cache.start();
  } catch (error) {
    await db.destroy();
    throw error;
  }
  app.decorate('speedgate', context);
  // Changes a request makes reach this node's cache at once, not when the NOTIFY comes back.
  app.addHook('onRequest', (_request, _reply, done) => context.cache.withLocalAnnouncements(done));
  const stopPurge = schedulePurge(db, config, app.log);
  app.addHook('onClose', async () => {
    stopPurge();
    context.keys.close();
    await context.lastUsed.close();
    await context.audit.close();
    await context.cache.close();
    await context.rateLimiter.close();
    await db.destroy();
  });

  await app.register(formbody, { parser: parseFormBody });
  await app.register(cookie, { secret: context.cookieSecret });
  // helmet's middleware is built once here. @fastify/helmet builds a new one
  // for every request, which measured 8% of the token endpoint's CPU time.
  const securityHeaders = helmet({
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        frameAncestors: ["'none'"],
        formAction: ["'self'"],
        upgradeInsecureRequests: null,
      },
    },
    strictTransportSecurity: config.issuer.startsWith('https:'),
    referrerPolicy: { policy: 'no-referrer' },
    frameguard: { action: 'deny' },
  });
  app.addHook('onRequest', (request, reply, done) => securityHeaders(request.raw, reply.raw, (error) => done(error as Error | undefined)));
  await app.register(view, {
    engine: { eta: new Eta({ views: path.join(ROOT, 'views'), cache: config.production }) },
    root: path.join(ROOT, 'views'),
    viewExt: 'eta',
  });

  registerErrorHandler(app);
  await app.register(homeRoutes);
  await app.register(metadataRoutes);
  await app.register(oauthRoutes);
  await app.register(accountRoutes);
  await app.register(devicePageRoutes);
  await app.register(authorizeRoutes);
  await app.register(applicationRoutes);
  await app.register(personalAccessTokenRoutes);
  await app.register(registerRoutes);
  await app.register(developerRoutes);
  await app.register(securityEventRoutes);
  await app.register(apiRoutes);
  return app;
}
