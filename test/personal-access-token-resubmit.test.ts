import t from 'tap';
import { createUser } from '../src/accounts/users.ts';
import { BrowserSession } from './helpers/browser-session.ts';
import { startServer } from './helpers/server.ts';

t.test('resubmitted token form creates no second token', async (t) => {
  const server = await startServer(t);
  const { db } = server.app.speedgate;
  await createUser(db, { email: 'ada@example.com', password: 'correct horse battery' }, new Date());
  const browser = new BrowserSession(server.url);
  await browser.logIn('ada@example.com', 'correct horse battery');

  const page = await browser.page('/accounts/tokens/');
  const formId = /name="form_id" value="([^"]+)"/.exec(page.html)?.[1] ?? '';
  t.match(formId, /^[A-Za-z0-9_-]{16,}$/, 'the form carries an id');

  const fields = { csrf_token: page.csrfToken, form_id: formId, name: 'CI', 'scope:read:profile': 'on', expires: '30' };
  const first = await browser.post('/accounts/tokens/', fields);
  t.equal(first.status, 201);
  t.match(await first.text(), /value="spd_/);

  const again = await browser.post('/accounts/tokens/', fields);
  t.equal(again.status, 400);
  const html = await again.text();
  t.match(html, /already submitted/);
  t.notMatch(html, /value="spd_/, 'no token is shown the second time');

  const rows = await db.selectFrom('personal_access_tokens').select('id').execute();
  t.equal(rows.length, 1, 'one token exists');
});
