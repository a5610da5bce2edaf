import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { BlockList, isIP } from 'node:net';
import type { Kysely } from 'kysely';
import type { Config } from '../config.ts';
import type { Client, Database } from '../db/schema.ts';
import { CLIENT_CHALLENGE } from './client-auth.ts';
import { GRANT_TYPES, registerClient } from './clients.ts';
import { OAuthError } from './errors.ts';
import { readRegistrationRequest } from './registration.ts';
import type { ScopeRegistry } from './scopes.ts';

/** Largest metadata document read, in bytes. */
const MAX_DOCUMENT_BYTES = 5 * 1024;
const FETCH_TIMEOUT_MS = 3000;
const MAX_CACHED_DOCUMENTS = 500;
const DEFAULT_CACHE_SECONDS = 300;
const MIN_CACHE_SECONDS = 60;
const MAX_CACHE_SECONDS = 86_400;

// Addresses a fetch must never reach: private, loopback, link-local (cloud
// metadata services live at 169.254.169.254), shared, multicast and reserved ranges.
const FORBIDDEN = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 3],
] as const) {
  FORBIDDEN.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['::ffff:0:0', 96], ['64:ff9b::', 96]] as const) {
  FORBIDDEN.addSubnet(network, prefix, 'ipv6');
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.');
}

/** Returns why `address` may not be fetched, or null when it may. */
export function forbiddenAddress(address: string, allowLoopback: boolean): string | null {
  const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
  if (allowLoopback && isLoopback(address)) return null;
  return FORBIDDEN.check(address, family) ? `the address ${address} is private, loopback or reserved` : null;
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

// Checks the addresses DNS returns at connect time, so a name cannot resolve
// to a public address for a check and a private one for the connection.
function checkedLookup(allowLoopback: boolean) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, []);
      const list = addresses as LookupAddress[];
      const problem = list.map((entry) => forbiddenAddress(entry.address, allowLoopback)).find((reason) => reason !== null);
      if (problem) return callback(Object.assign(new Error(problem), { code: 'EFORBIDDEN' }), []);
      if (options.all) return callback(null, list);
      callback(null, list[0].address, list[0].family);
    });
  };
}

interface FetchedDocument {
  body: unknown;
  maxAgeSeconds: number;
}

function readMaxAge(header: string | undefined): number {
  const match = /max-age=(\d+)/i.exec(header ?? '');
  const seconds = match === null ? DEFAULT_CACHE_SECONDS : Number(match[1]);
  return Math.min(MAX_CACHE_SECONDS, Math.max(MIN_CACHE_SECONDS, seconds));
}

/** Fetches a JSON document without following redirects, within the size and time limits. */
function fetchDocument(url: URL, allowLoopback: boolean): Promise<FetchedDocument> {
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolvePromise, rejectPromise) => {
    const resolve = (document: FetchedDocument) => {
      clearTimeout(deadline);
      resolvePromise(document);
    };
    const reject = (error: Error) => {
      clearTimeout(deadline);
      rejectPromise(error);
    };
    // Once a response has started, destroying the request instead leaves its
    // socket's error without a listener, which ends the whole process.
    let activeResponse: IncomingMessage | undefined;
    const abort = (error: Error) => (activeResponse ?? request).destroy(error);

    const request = client.get(url, { lookup: checkedLookup(allowLoopback) as never, headers: { accept: 'application/json' } }, (response) => {
      activeResponse = response;
      if (response.statusCode !== 200) {
        // Destroyed, not drained: the body of a redirect or error page is never needed.
        response.destroy();
        reject(new Error(`the server responded with HTTP ${response.statusCode}, and redirects are not followed`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_DOCUMENT_BYTES) {
          abort(new Error(`the document is larger than ${MAX_DOCUMENT_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => {
        try {
          resolve({ body: JSON.parse(Buffer.concat(chunks).toString('utf8')), maxAgeSeconds: readMaxAge(response.headers['cache-control']) });
        } catch {
          reject(new Error('the document is not valid JSON'));
        }
      });
      response.on('error', reject);
    });
    request.on('error', reject);

    // One deadline covers the whole exchange, because a socket timeout alone would
    // let a server that sends a byte every second hold the fetch indefinitely.
    const deadline = setTimeout(() => abort(new Error(`timed out after ${FETCH_TIMEOUT_MS} ms`)), FETCH_TIMEOUT_MS);
  });
}

/**
 * Client ID Metadata Documents: a client whose `client_id` is an https URL
 * publishes its metadata at that URL. Fetched documents become `clients`
 * rows (so grants can reference them) and are cached in memory with a bound.
 */
export class MetadataDocumentClients {
  readonly #db: Kysely<Database>;
  readonly #config: Config;
  readonly #scopes: ScopeRegistry;
  readonly #cache = new Map<string, { client: Client; expiresAt: number }>();

  constructor(db: Kysely<Database>, config: Config, scopes: ScopeRegistry) {
    this.#db = db;
    this.#config = config;
    this.#scopes = scopes;
  }

  /** Returns whether `clientId` names a metadata document rather than a registered client. */
  isDocumentUrl(clientId: string): boolean {
    if (clientId.startsWith('https://')) return true;
    return this.#config.cimdAllowLoopback && /^http:\/\/(127\.0\.0\.1|\[::1\]|localhost)[:/]/.test(clientId);
  }

  /** Fetches (or takes from the cache) the document at `clientId` and returns its client. Throws invalid_client. */
  async resolve(clientId: string): Promise<Client> {
    const cached = this.#cache.get(clientId);
    if (cached !== undefined && cached.expiresAt > this.#config.now().getTime()) return cached.client;

    const url = this.#checkUrl(clientId);
    let fetched: FetchedDocument;
    try {
      fetched = await fetchDocument(url, this.#config.cimdAllowLoopback);
    } catch (error) {
      throw this.#failure(clientId, `could not fetch the client metadata document: ${(error as Error).message}`);
    }

    const client = await this.#store(clientId, fetched.body);
    this.#cache.delete(clientId);
    if (this.#cache.size >= MAX_CACHED_DOCUMENTS) this.#cache.delete(this.#cache.keys().next().value as string);
    this.#cache.set(clientId, { client, expiresAt: this.#config.now().getTime() + fetched.maxAgeSeconds * 1000 });
    return client;
  }

  #failure(clientId: string, detail: string): OAuthError {
    const description = `The client metadata document at ${clientId} is not usable: ${detail}`;
    return new OAuthError('invalid_client', description, { status: 401, detail, headers: CLIENT_CHALLENGE });
  }

  #checkUrl(clientId: string): URL {
    const url = new URL(clientId);
    if (url.hash !== '' || url.username !== '' || url.password !== '' || url.pathname === '/') {
      throw this.#failure(clientId, 'a client_id URL needs a path and no fragment or credentials');
    }
    const literal = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(literal) !== 0) {
      const problem = forbiddenAddress(literal, this.#config.cimdAllowLoopback);
      if (problem !== null) throw this.#failure(clientId, problem);
    }
    return url;
  }

  async #store(clientId: string, body: unknown): Promise<Client> {
    if (typeof body !== 'object' || body === null || (body as { client_id?: unknown }).client_id !== clientId) {
      throw this.#failure(clientId, 'the document client_id must equal its URL');
    }
    let registration;
    try {
      registration = readRegistrationRequest({ token_endpoint_auth_method: 'none', ...body });
    } catch (error) {
      throw this.#failure(clientId, (error as OAuthError).description);
    }
    if (registration.tokenEndpointAuthMethod !== 'none') {
      throw this.#failure(clientId, 'a metadata document client must use token_endpoint_auth_method none');
    }
    const grantTypes = registration.grantTypes?.filter((grant) => grant === GRANT_TYPES.authorizationCode || grant === GRANT_TYPES.refreshToken);

    try {
      const { client } = await registerClient(
        this.#db,
        this.#scopes,
        { ...registration, grantTypes, clientId, registrationType: 'metadata_document', replaceExisting: true },
        this.#config.now(),
      );
      return client;
    } catch (error) {
      throw error instanceof OAuthError ? this.#failure(clientId, error.description) : error;
    }
  }
}
