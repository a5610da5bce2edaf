import type { LastUsedRecorder } from './accounts/last-used.ts';
import type { DatabaseKind } from './db/database.ts';
import type { RateLimiter } from './db/rate-limiter.ts';
import type { OAuthContext } from './oauth/context.ts';

/** Everything the routes share: the protocol core's context and the server's own secrets. */
export interface ServerContext extends OAuthContext {
  databaseKind: DatabaseKind;
  /** Key for cookie signatures and CSRF tokens, shared by all nodes through the database. */
  cookieSecret: string;
  /** Buffered "last used" records of personal access tokens. */
  lastUsed: LastUsedRecorder;
  /** Attempt counters shared by every node, for rate limits. */
  rateLimiter: RateLimiter;
}

declare module 'fastify' {
  interface FastifyInstance {
    speedgate: ServerContext;
  }
}
