import t from 'tap';
import { createPat } from '../src/accounts/personal-access-tokens.ts';
import { createUser } from '../src/accounts/users.ts';
import { startServer } from './helpers/server.ts';

t.test('profile update rejects wrong types and unknown fields', async (t) => {
  const server = await startServer(t);
  const { db, scopes } = server.app.speedgate;
  const user = await createUser(db, { email: 'ada@example.com', password: 'correct horse battery', name: 'Ada' }, new Date());
  const { token } = await createPat(db, scopes, user, { name: 'test', scopes: ['read:profile', 'write:profile'], expiresAt: null }, new Date());

  const patch = (body: unknown) =>
    fetch(`${server.url}/api/v1/me/`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  const numeric = await patch({ name: 5 });
  t.equal(numeric.status, 400);
  t.same(await numeric.json(), { error: 'invalid_request', error_description: 'body/name must be string' });

  const extra = await patch({ name: 'Ada L.', admin: true });
  t.equal(extra.status, 400);
  t.same(await extra.json(), { error: 'invalid_request', error_description: 'body must NOT have additional properties' });

  const row = await db.selectFrom('users').select('name').where('id', '=', user.id).executeTakeFirstOrThrow();
  t.equal(row.name, 'Ada', 'nothing was written');

  const valid = await patch({ name: 'Ada L.' });
  t.equal(valid.status, 200);
});
