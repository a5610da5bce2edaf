import { createHash } from 'node:crypto';
import { REQUEST_TIMEOUT_MS } from './api.ts';

const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** Seconds before an exchanged token's `expires_in` runs out at which the cache stops returning it. */
const EXPIRY_MARGIN_SECONDS = 30;

/** Default maximum number of subject tokens whose exchanged tokens are cached. */
const MAX_CACHE_ENTRIES = 1000;

/** A failed token exchange: the token endpoint's RFC 6749 section 5.2 error, or no response (status 0). */
export class ExchangeError extends Error {
  override name = 'ExchangeError';

  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The MCP server's own confidential client at Speedgate. */
export interface ExchangeClient {
  speedgateUrl: string;
  clientId: string;
  clientSecret: string;
}

interface ExchangedToken {
  accessToken: string;
  expiresIn: number;
}

interface CacheEntry {
  token: Promise<string>;
  /** Epoch milliseconds after which the entry is stale; infinite while the exchange runs. */
  staleAt: number;
}

/** Builds the Basic header of RFC 6749 section 2.3.1: id and secret form-urlencoded, joined, Base64-encoded. */
function basicAuthorization(clientId: string, clientSecret: string): string {
  const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString('base64')}`;
}

async function postTokenRequest(client: ExchangeClient, fields: Record<string, string>): Promise<Response> {
  const url = `${client.speedgateUrl}/o/token/`;
  try {
    return await fetch(url, {
      method: 'POST',
      headers: {
        accept: 'application/json',
        authorization: basicAuthorization(client.clientId, client.clientSecret),
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams(fields).toString(),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    const cause = (error as { cause?: { message?: string } }).cause?.message ?? (error as Error).message;
    throw new ExchangeError(0, 'temporarily_unavailable', `Could not reach ${url}: ${cause}`);
  }
}

/**
 * Exchanges an access token issued for this MCP server for one to the
 * Speedgate API (RFC 8693 section 2.1), authenticated as the MCP server's
 * confidential client with client_secret_basic.
 */
export async function exchangeToken(client: ExchangeClient, subjectToken: string): Promise<ExchangedToken> {
  const response = await postTokenRequest(client, {
    grant_type: TOKEN_EXCHANGE_GRANT,
    subject_token: subjectToken,
    subject_token_type: ACCESS_TOKEN_TYPE,
    resource: `${client.speedgateUrl}/api/v1`,
  });

  let body: Record<string, unknown> = {};
  try {
    body = (await response.json()) as Record<string, unknown>;
  } catch {
    // A body that is not JSON is reported below by its status alone.
  }

  if (response.status === 200 && typeof body.access_token === 'string') {
    const expiresIn = typeof body.expires_in === 'number' ? body.expires_in : 0;
    return { accessToken: body.access_token, expiresIn };
  }
  const code = typeof body.error === 'string' ? body.error : 'server_error';
  const description =
    typeof body.error_description === 'string' ? body.error_description : `HTTP ${response.status}`;
  throw new ExchangeError(response.status, code, description);
}

/**
 * Exchanges subject tokens for API tokens and caches the results per subject
 * token until shortly before they expire. Concurrent requests with the same
 * subject token share one exchange. The cache contains at most `maxEntries`
 * tokens (default MAX_CACHE_ENTRIES) and drops the oldest when full.
 */
export class TokenExchanger {
  readonly #client: ExchangeClient;
  readonly #now: () => number;
  readonly #maxEntries: number;
  readonly #cache = new Map<string, CacheEntry>();

  constructor(client: ExchangeClient, options: { now?: () => number; maxEntries?: number } = {}) {
    this.#client = client;
    this.#now = options.now ?? Date.now;
    this.#maxEntries = options.maxEntries ?? MAX_CACHE_ENTRIES;
  }

  /** The number of cached entries, expired ones included until they are evicted. */
  get size(): number {
    return this.#cache.size;
  }

  /** Returns an API token for `subjectToken`, from the cache or from a new exchange. */
  apiToken(subjectToken: string): Promise<string> {
    const key = cacheKey(subjectToken);
    const cached = this.#cache.get(key);
    if (cached !== undefined && cached.staleAt > this.#now()) return cached.token;

    const entry: CacheEntry = { token: Promise.resolve(''), staleAt: Number.POSITIVE_INFINITY };
    entry.token = exchangeToken(this.#client, subjectToken).then(
      (exchanged) => {
        entry.staleAt = this.#now() + Math.max(0, exchanged.expiresIn - EXPIRY_MARGIN_SECONDS) * 1000;
        return exchanged.accessToken;
      },
      (error: unknown) => {
        if (this.#cache.get(key) === entry) this.#cache.delete(key);
        throw error;
      },
    );
    this.#store(key, entry);
    return entry.token;
  }

  /** Drops the cached API token of `subjectToken`, after the API rejected it. */
  forget(subjectToken: string): void {
    this.#cache.delete(cacheKey(subjectToken));
  }

  #store(key: string, entry: CacheEntry): void {
    this.#cache.delete(key);
    if (this.#cache.size >= this.#maxEntries) {
      const now = this.#now();
      for (const [oldKey, old] of this.#cache) if (old.staleAt <= now) this.#cache.delete(oldKey);
    }
    // A Map iterates in insertion order, so the first key is the oldest entry.
    if (this.#cache.size >= this.#maxEntries) this.#cache.delete(this.#cache.keys().next().value as string);
    this.#cache.set(key, entry);
  }
}

/** Keys the cache by a hash of the subject token, so no received token is kept. */
function cacheKey(subjectToken: string): string {
  return createHash('sha256').update(subjectToken).digest('base64url');
}
