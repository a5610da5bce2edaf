import t from 'tap';
import { createUser } from '../src/accounts/users.ts';
import { registerClient } from '../src/oauth/clients.ts';
import { ScopeRegistry } from '../src/oauth/scopes.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { startServer } from './helpers/server.ts';

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

async function postForm(url: string, fields: Record<string, string>) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
  return { status: response.status, body: (await response.json()) as Record<string, string> };
}

t.test('approved device is revocable on applications page', async (t) => {
  const server = await startServer(t);
  const { db } = server.app.speedgate;
  await createUser(db, { email: 'ada@example.com', password: 'correct horse battery' }, new Date());
  const { client } = await registerClient(db, new ScopeRegistry(), { name: 'Terminal CLI', registrationType: 'operator' }, new Date());

  const started = await postForm(`${server.url}/o/device-authorization/`, { client_id: client.id, scope: 'read:profile' });
  const browser = new BrowserSession(server.url);
  await browser.logIn('ada@example.com', 'correct horse battery');
  const approved = await browser.submit('/o/device/', { user_code: started.body.user_code, action: 'approve' });
  t.equal(approved.status, 200);

  server.clock.advance(6);
  const tokens = await postForm(`${server.url}/o/token/`, { grant_type: DEVICE_GRANT, device_code: started.body.device_code, client_id: client.id });
  t.equal(tokens.status, 200);

  const page = await browser.page('/accounts/applications/');
  t.match(page.html, /Terminal CLI/, 'the device client is listed');

  const revoke = await browser.post('/accounts/applications/revoke/', { csrf_token: page.csrfToken, client_id: client.id });
  t.equal(revoke.status, 303);

  const me = await fetch(`${server.url}/api/v1/me/`, { headers: { authorization: `Bearer ${tokens.body.access_token}` } });
  t.equal(me.status, 401, 'the access token stops working at once');
  const refreshed = await postForm(`${server.url}/o/token/`, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.id });
  t.equal(refreshed.status, 400);
  t.equal(refreshed.body.error, 'invalid_grant');
});
