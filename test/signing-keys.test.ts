import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import t from 'tap';
import { rotateSigningKey } from '../src/oauth/keys.ts';
import { startServer, type TestServer } from './helpers/server.ts';

let server: TestServer;

t.before(async () => {
  server = await startServer(t);
});

async function publishedKeys(): Promise<JSONWebKeySet> {
  const response = await fetch(`${server.url}/.well-known/jwks.json`);
  return (await response.json()) as JSONWebKeySet;
}

const CLAIMS = { iss: 'issuer', sub: 'user-1', aud: 'audience', client_id: 'client-1', scope: 'read:profile' };

t.test('signed token verifies with jose', async (t) => {
  const { keys } = server.app.speedgate;
  const issuedAt = server.clock.now();
  const token = await keys.signAccessToken(CLAIMS, issuedAt, 300);

  const jwks = await publishedKeys();
  const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), {
    issuer: 'issuer',
    audience: 'audience',
    typ: 'at+jwt',
    algorithms: ['ES256'],
    currentDate: issuedAt,
  });

  t.equal(protectedHeader.alg, 'ES256');
  t.equal(protectedHeader.typ, 'at+jwt');
  t.equal(protectedHeader.kid, jwks.keys[0]?.kid, 'the header names the published key');
  const iat = Math.floor(issuedAt.getTime() / 1000);
  t.strictSame(payload, { ...CLAIMS, iat, exp: iat + 300 });
});

t.test('tampered token is rejected', async (t) => {
  const token = await server.app.speedgate.keys.signAccessToken(CLAIMS, server.clock.now(), 300);
  const [header, payload, signature] = token.split('.');
  const forged = Buffer.from(JSON.stringify({ ...CLAIMS, scope: 'write:profile' })).toString('base64url');

  t.not(forged, payload, 'the forged payload differs');

  const jwks = createLocalJWKSet(await publishedKeys());
  await t.rejects(jwtVerify(`${header}.${forged}.${signature}`, jwks, { currentDate: server.clock.now() }));
});

t.test('rotation signs with the new key', async (t) => {
  const { db, keys } = server.app.speedgate;
  const kid = await rotateSigningKey(db, server.clock.now());
  await keys.reload();

  const token = await keys.signAccessToken(CLAIMS, server.clock.now(), 300);
  t.equal(decodeProtectedHeader(token).kid, kid);
  const jwks = await publishedKeys();
  await t.resolves(jwtVerify(token, createLocalJWKSet(jwks), { currentDate: server.clock.now() }));
});
