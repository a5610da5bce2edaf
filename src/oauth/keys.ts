import { createPrivateKey, randomUUID, sign, type KeyObject, type JsonWebKey } from 'node:crypto';
import { promisify } from 'node:util';
import {
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database } from '../db/schema.ts';

const ALGORITHM = 'ES256';

/** Shortest time between two reloads of the key set triggered by an unknown `kid`. */
const RELOAD_INTERVAL_MS = 1000;
/** How often every node reloads the key set, to start signing with a rotated key. */
const PERIODIC_RELOAD_MS = 60_000;

interface ActiveKey {
  kid: string;
  privateKey: KeyObject;
  /** The base64url JWS protected header, the same for every token this key signs. */
  encodedHeader: string;
}

/** node:crypto's sign, run on the libuv thread pool so another core can compute the signature. */
const signOnThreadPool = promisify(sign);

function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

/**
 * The signing keys, kept in the database so every node and every restart signs
 * with the same key. Keys are parsed once at load, never per request.
 */
export class SigningKeys {
  readonly #db: Kysely<Database>;
  #active!: ActiveKey;
  #jwks!: JSONWebKeySet;
  #verifyKey!: JWTVerifyGetKey;
  #loadedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #now: () => Date;
  readonly #tokenTtlSeconds: number;

  private constructor(db: Kysely<Database>, now: () => Date, tokenTtlSeconds: number) {
    this.#db = db;
    this.#now = now;
    this.#tokenTtlSeconds = tokenTtlSeconds;
  }

  /**
   * Loads the key set, creating the first key if the database has none, and
   * reloads it every minute. A retired key stays in the set for
   * `tokenTtlSeconds`, so tokens it signed still verify until they expire.
   */
  static async load(db: Kysely<Database>, now: () => Date, tokenTtlSeconds: number): Promise<SigningKeys> {
    const keys = new SigningKeys(db, now, tokenTtlSeconds);
    await ensureSigningKey(db, now());
    await keys.reload();
    keys.#timer = setInterval(() => void keys.reload().catch(() => {}), PERIODIC_RELOAD_MS);
    keys.#timer.unref();
    return keys;
  }

  close(): void {
    clearInterval(this.#timer);
  }

  async reload(): Promise<void> {
    const oldest = new Date(this.#now().getTime() - this.#tokenTtlSeconds * 1000);
    const rows = await this.#db
      .selectFrom('signing_keys')
      .select(['kid', 'alg', 'private_jwk', 'public_jwk', 'created_at', 'retired_at'])
      .where((eb) => eb.or([eb('retired_at', 'is', null), eb('retired_at', '>', oldest)]))
      .orderBy('created_at', 'desc')
      .execute();

    const current = rows.find((row) => row.retired_at === null);
    if (current === undefined) throw new Error('No active signing key in signing_keys');

    this.#active = {
      kid: current.kid,
      privateKey: createPrivateKey({ key: current.private_jwk as JsonWebKey, format: 'jwk' }),
      encodedHeader: base64url(JSON.stringify({ alg: ALGORITHM, kid: current.kid, typ: 'at+jwt' })),
    };
    this.#jwks = {
      keys: rows.map((row) => ({ ...(row.public_jwk as JWK), kid: row.kid, alg: row.alg, use: 'sig' })),
    };
    this.#verifyKey = createLocalJWKSet(this.#jwks);
    this.#loadedAt = Date.now();
  }

  /** Returns the public keys, current and retiring, as served at `/.well-known/jwks.json`. */
  jwks(): JSONWebKeySet {
    return this.#jwks;
  }

  /**
   * Signs an RFC 9068 access token (`typ: at+jwt`) with the current key.
   * jose's SignJWT signs through WebCrypto, whose checks measured a third of the
   * token endpoint's event-loop time, so the JWS is built here and jose verifies it.
   */
  async signAccessToken(claims: JWTPayload, issuedAt: Date, ttlSeconds: number): Promise<string> {
    const iat = Math.floor(issuedAt.getTime() / 1000);
    const { encodedHeader, privateKey } = this.#active;
    const signingInput = `${encodedHeader}.${base64url(JSON.stringify({ ...claims, iat, exp: iat + ttlSeconds }))}`;
    const signature = await signOnThreadPool('sha256', Buffer.from(signingInput, 'ascii'), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    return `${signingInput}.${signature.toString('base64url')}`;
  }

  /**
   * Verifies an access token's signature, type, issuer, expiry and audience
   * (one of `audience`, or any when it is undefined).
   * A token signed by a key this node has not loaded yet triggers one reload.
   */
  async verifyAccessToken(token: string, issuer: string, audience: string | string[] | undefined, now: Date): Promise<JWTPayload> {
    const options = { issuer, audience, typ: 'at+jwt', algorithms: [ALGORITHM], currentDate: now };
    try {
      const { payload } = await jwtVerify(token, this.#verifyKey, options);
      return payload;
    } catch (error) {
      const noKey = (error as { code?: string }).code === 'ERR_JWKS_NO_MATCHING_KEY';
      if (!noKey || Date.now() - this.#loadedAt < RELOAD_INTERVAL_MS) throw error;

      await this.reload();
      const { payload } = await jwtVerify(token, this.#verifyKey, options);
      return payload;
    }
  }
}

async function insertKey(trx: Transaction<Database>, now: Date): Promise<string> {
  const kid = randomUUID();
  const { privateKey, publicKey } = await generateKeyPair(ALGORITHM, { extractable: true });
  await trx
    .insertInto('signing_keys')
    .values({
      kid,
      alg: ALGORITHM,
      private_jwk: JSON.stringify(await exportJWK(privateKey)),
      public_jwk: JSON.stringify(await exportJWK(publicKey)),
      created_at: now,
    })
    .execute();
  return kid;
}

// Two nodes starting on an empty database, or two rotations, must not race.
async function lockKeys(trx: Transaction<Database>): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext('speedgate.signing_keys'))`.execute(trx);
}

async function ensureSigningKey(db: Kysely<Database>, now: Date): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await lockKeys(trx);
    const existing = await trx.selectFrom('signing_keys').select('kid').where('retired_at', 'is', null).executeTakeFirst();
    if (existing === undefined) await insertKey(trx, now);
  });
}

/**
 * Adds a new signing key and retires the current one. Every node signs with
 * the new key after its next reload (within a minute). The retired key stays
 * in the JWKS until the tokens it signed have expired. Returns the new `kid`.
 */
export async function rotateSigningKey(db: Kysely<Database>, now: Date): Promise<string> {
  return db.transaction().execute(async (trx) => {
    await lockKeys(trx);
    await trx.updateTable('signing_keys').set({ retired_at: now }).where('retired_at', 'is', null).execute();
    return insertKey(trx, now);
  });
}
