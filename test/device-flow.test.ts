import t from 'tap';
import { registerClient } from '../src/oauth/clients.ts';
import { ScopeRegistry } from '../src/oauth/scopes.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { startServer } from './helpers/server.ts';

async function postForm(url: string, fields: Record<string, string>) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
  const body = (await response.json()) as Record<string, string>;
  return { status: response.status, headers: response.headers, body };
}

t.test('device flow issues tokens after approval', async (t) => {
  const server = await startServer(t);
  const { client } = await registerClient(server.app.speedgate.db, new ScopeRegistry(), { name: 'CLI', registrationType: 'operator' }, new Date());

  const started = await postForm(`${server.url}/o/device-authorization/`, { client_id: client.id, scope: 'read:profile' });
  t.equal(started.status, 200);
  t.match(started.body.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
  t.equal(started.body.verification_uri, `${server.url}/o/device/`);

  const grant = { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: started.body.device_code, client_id: client.id };
  const pending = await postForm(`${server.url}/o/token/`, grant);
  t.equal(pending.status, 400);
  t.equal(pending.body.error, 'authorization_pending');

  const browser = new BrowserSession(server.url);
  const signUp = await browser.signUp('ada@example.com', 'correct horse battery');
  t.equal(signUp.status, 303);

  const review = await browser.submit('/o/device/', { user_code: started.body.user_code.toLowerCase() });
  t.equal(review.status, 200);
  const reviewHtml = await review.text();
  t.match(reviewHtml, /Read your name and email address/);

  const approve = await browser.submit('/o/device/', { user_code: started.body.user_code, action: 'approve' });
  t.equal(approve.status, 200, 'approval page renders');

  server.clock.advance(6);
  const issued = await postForm(`${server.url}/o/token/`, grant);
  t.equal(issued.status, 200);
  t.equal(issued.body.token_type, 'Bearer');
  t.equal(issued.body.scope, 'read:profile');
  t.ok(issued.body.refresh_token);

  const me = await fetch(`${server.url}/api/v1/me/`, { headers: { authorization: `Bearer ${issued.body.access_token}` } });
  t.equal(me.status, 200);
  t.equal(((await me.json()) as { email: string }).email, 'ada@example.com');

  server.clock.advance(6);
  const replay = await postForm(`${server.url}/o/token/`, grant);
  t.equal(replay.status, 400);
  t.same(replay.body, { error: 'invalid_grant', error_description: 'The device_code has already been used' });
});
