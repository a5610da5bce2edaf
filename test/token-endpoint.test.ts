import t from 'tap';
import { startServer, type TestServer } from './helpers/server.ts';
import {
  DEVICE_GRANT,
  basicAuthorization,
  createTestClient,
  createTestUser,
  decideDevice,
  postForm,
  postRaw,
  startDevice,
} from './helpers/tokens.ts';

let server: TestServer;
let endpoint: string;

t.before(async () => {
  server = await startServer(t);
  endpoint = `${server.url}/o/token/`;
});

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

const wrongContentType = {
  error: 'invalid_request',
  error_description: 'The Content-Type must be application/x-www-form-urlencoded or application/json',
};

function invalidRequest(description: string) {
  return { error: 'invalid_request', error_description: description };
}

function invalidUtf8(name: string) {
  return invalidRequest(`The parameter ${name} contains invalid UTF-8 or control characters`);
}

t.test('text/plain body is rejected', async (t) => {
  const response = await postRaw(endpoint, `grant_type=${DEVICE_GRANT}&device_code=x&client_id=y`, {
    'content-type': 'text/plain',
  });

  t.equal(response.status, 400);
  t.same(response.body, wrongContentType);
});

t.test('empty text/plain body is rejected', async (t) => {
  const response = await postRaw(endpoint, '', { 'content-type': 'text/plain' });

  t.equal(response.status, 400);
  t.same(response.body, wrongContentType);
});

t.test('JSON body is read as parameters', async (t) => {
  const { client } = await createTestClient(server);
  const body = JSON.stringify({ grant_type: DEVICE_GRANT, device_code: 'x', client_id: client.id });
  const response = await postRaw(endpoint, body, { 'content-type': 'application/json' });

  t.equal(response.status, 400);
  t.same(response.body, { error: 'invalid_grant', error_description: 'The device_code is invalid' });
});

t.test('JSON values must be strings', async (t) => {
  const cases: [string, unknown, string][] = [
    ['number', { grant_type: 5 }, 'The parameter grant_type must be a string'],
    ['object', { grant_type: { nested: 'x' } }, 'The parameter grant_type must be a string'],
    ['array', { grant_type: ['a', 'b'] }, 'The parameter grant_type must not be repeated'],
    ['null', { grant_type: null }, 'The parameter grant_type must be a string'],
    ['top-level array', [1, 2], 'The request body must be application/x-www-form-urlencoded parameters'],
    ['top-level string', 'grant_type', 'The request body must be application/x-www-form-urlencoded parameters'],
  ];
  for (const [label, body, description] of cases) {
    const response = await postRaw(endpoint, JSON.stringify(body), { 'content-type': 'application/json' });
    t.equal(response.status, 400, label);
    t.same(response.body, invalidRequest(description), label);
  }
});

t.test('broken JSON is invalid_request', async (t) => {
  for (const body of ['{"grant_type":', '', '{"__proto__":{"x":1}}']) {
    const response = await postRaw(endpoint, body, { 'content-type': 'application/json' });
    t.equal(response.status, 400, JSON.stringify(body));
    t.same(response.body, invalidRequest('The request body could not be parsed'), JSON.stringify(body));
  }
});

t.test('unregistered media type is rejected', async (t) => {
  const response = await postRaw(endpoint, '<grant_type/>', { 'content-type': 'application/xml' });

  t.equal(response.status, 400);
  t.same(response.body, wrongContentType);
});

t.test('body without Content-Type is rejected', async (t) => {
  const response = await postRaw(endpoint, new TextEncoder().encode('grant_type=password'), {});

  t.equal(response.status, 400);
  t.same(response.body, wrongContentType);
});

t.test('form with charset is accepted', async (t) => {
  const response = await postRaw(endpoint, 'grant_type=password', {
    'content-type': 'Application/X-WWW-Form-Urlencoded; charset=UTF-8',
  });

  t.equal(response.status, 400);
  t.same(response.body, { error: 'unsupported_grant_type', error_description: 'The grant_type password is not supported' });
});

t.test('duplicated parameters are named', async (t) => {
  const cases = [
    ['grant_type', `grant_type=${DEVICE_GRANT}&grant_type=${DEVICE_GRANT}&device_code=x&client_id=y`],
    ['device_code', `grant_type=${DEVICE_GRANT}&device_code=x&device_code=z&client_id=y`],
    ['client_id', `grant_type=${DEVICE_GRANT}&device_code=x&client_id=y&client_id=y`],
    ['scope', `grant_type=refresh_token&refresh_token=x&client_id=y&scope=a&scope=`],
  ];
  for (const [name, body] of cases) {
    const response = await postRaw(endpoint, body, FORM);
    t.equal(response.status, 400, `${name} repeated`);
    t.same(response.body, invalidRequest(`The parameter ${name} must not be repeated`), `${name} repeated`);
  }
});

t.test('over-long value is rejected', async (t) => {
  const { client } = await createTestClient(server);
  const fields = { grant_type: DEVICE_GRANT, client_id: client.id, device_code: 'a'.repeat(4097) };
  const response = await postForm(endpoint, fields);

  t.equal(response.status, 400);
  t.same(response.body, invalidRequest('The parameter device_code is longer than 4096 characters'));
});

t.test('value at the length limit is read', async (t) => {
  const { client } = await createTestClient(server);
  const fields = { grant_type: DEVICE_GRANT, client_id: client.id, device_code: 'a'.repeat(4096) };
  const response = await postForm(endpoint, fields);

  t.equal(response.status, 400);
  t.same(response.body, { error: 'invalid_grant', error_description: 'The device_code is invalid' });
});

t.test('body over 64 KiB is rejected', async (t) => {
  const response = await postRaw(endpoint, `grant_type=${DEVICE_GRANT}&pad=${'a'.repeat(70_000)}`, FORM);

  t.equal(response.status, 413);
  t.same(response.body, invalidRequest('The request body is too large'));
});

t.test('percent-encoded invalid UTF-8 is rejected', async (t) => {
  const cases = [
    ['lone continuation byte', 'grant_type=%FF'],
    ['overlong encoding', 'grant_type=%C0%AF'],
    ['encoded surrogate', 'grant_type=%ED%A0%80'],
    ['truncated sequence', 'grant_type=%E2%82'],
  ];
  for (const [label, body] of cases) {
    const response = await postRaw(endpoint, body, FORM);
    t.equal(response.status, 400, label);
    t.same(response.body, invalidUtf8('grant_type'), label);
  }
});

t.test('raw invalid UTF-8 bytes are rejected', async (t) => {
  const body = new Uint8Array([...new TextEncoder().encode(`grant_type=${DEVICE_GRANT}&device_code=`), 0xff, 0xfe]);
  const response = await postRaw(endpoint, body, FORM);

  t.equal(response.status, 400);
  t.same(response.body, invalidUtf8('device_code'));
});

t.test('invalid UTF-8 in a refresh token', async (t) => {
  const { client } = await createTestClient(server);
  const response = await postRaw(endpoint, `grant_type=refresh_token&client_id=${client.id}&refresh_token=sgr_%FF`, FORM);

  t.equal(response.status, 400);
  t.same(response.body, invalidUtf8('refresh_token'));
});

t.test('invalid UTF-8 in a name is rejected', async (t) => {
  const response = await postRaw(endpoint, `grant_type=${DEVICE_GRANT}&%FF=1`, FORM);

  t.equal(response.status, 400);
  t.same(response.body, invalidRequest('A parameter name contains invalid UTF-8 or control characters'));
});

t.test('control characters are rejected', async (t) => {
  const response = await postRaw(endpoint, 'grant_type=refresh%00_token', FORM);

  t.equal(response.status, 400);
  t.same(response.body, invalidUtf8('grant_type'));
});

t.test('valid multibyte UTF-8 is read', async (t) => {
  const response = await postRaw(endpoint, 'grant_type=%F0%9F%98%80', FORM);

  t.equal(response.status, 400);
  t.same(response.body, { error: 'unsupported_grant_type', error_description: 'The grant_type 😀 is not supported' });
});

t.test('missing grant_type is invalid_request', async (t) => {
  const response = await postForm(endpoint, { client_id: 'anything', device_code: 'x' });

  t.equal(response.status, 400);
  t.same(response.body, invalidRequest('Missing required parameter: grant_type'));
});

t.test('empty body is missing grant_type', async (t) => {
  const withType = await postRaw(endpoint, '', FORM);
  t.equal(withType.status, 400);
  t.same(withType.body, invalidRequest('Missing required parameter: grant_type'));

  const bare = await fetch(endpoint, { method: 'POST' });
  t.equal(bare.status, 400);
  t.same(await bare.json(), invalidRequest('Missing required parameter: grant_type'));
});

t.test('empty value counts as absent', async (t) => {
  const response = await postForm(endpoint, { grant_type: '', client_id: 'anything' });

  t.equal(response.status, 400);
  t.same(response.body, invalidRequest('Missing required parameter: grant_type'));
});

t.test('unknown grant_type is unsupported', async (t) => {
  for (const grantType of ['password', 'implicit', 'toString', '__proto__']) {
    const response = await postForm(endpoint, { grant_type: grantType, client_id: 'anything' });
    t.equal(response.status, 400, grantType);
    t.same(
      response.body,
      { error: 'unsupported_grant_type', error_description: `The grant_type ${grantType} is not supported` },
      grantType,
    );
  }
});

t.test('malformed bodies never cause a 5xx', async (t) => {
  const cases: [string, string | Uint8Array, Record<string, string>][] = [
    ['broken JSON', '{"grant_type":', { 'content-type': 'application/json' }],
    ['JSON array', '[1,2]', { 'content-type': 'application/json' }],
    ['JSON null', 'null', { 'content-type': 'application/json' }],
    ['JSON prototype key', '{"__proto__":{"x":1}}', { 'content-type': 'application/json' }],
    ['JSON nested value', '{"grant_type":{"a":1}}', { 'content-type': 'application/json' }],
    ['multipart', '--b\r\ncontent-disposition: form-data; name="grant_type"\r\n\r\nx\r\n--b--', {
      'content-type': 'multipart/form-data; boundary=b',
    }],
    ['prototype names', '__proto__=x&constructor=y&hasOwnProperty=z&grant_type=refresh_token', FORM],
    ['only separators', '&&&===&', FORM],
    ['name without value', 'grant_type', FORM],
    ['value without name', '=refresh_token', FORM],
    ['bad percent escape', 'grant_type=%ZZ&client_id=%', FORM],
    ['thousands of parameters', Array.from({ length: 5000 }, (_, i) => `p${i}=v`).join('&'), FORM],
    ['broken Basic header', 'grant_type=refresh_token&refresh_token=x', { ...FORM, authorization: 'Basic %%%' }],
    ['Basic without colon', 'grant_type=refresh_token&refresh_token=x', {
      ...FORM,
      authorization: `Basic ${Buffer.from('just-an-id').toString('base64')}`,
    }],
    ['Basic with bad escapes', 'grant_type=refresh_token&refresh_token=x', {
      ...FORM,
      authorization: `Basic ${Buffer.from('%zz:%zz').toString('base64')}`,
    }],
    ['Bearer instead of Basic', 'grant_type=refresh_token&refresh_token=x', { ...FORM, authorization: 'Bearer abc' }],
  ];

  for (const [label, body, headers] of cases) {
    const response = await postRaw(endpoint, body, headers);
    t.ok(response.status >= 400 && response.status < 500, `${label}: status ${response.status} is a 4xx`);
    t.type(response.body?.error, 'string', `${label}: body has an error code`);
    t.type(response.body?.error_description, 'string', `${label}: body has a description`);
  }
});

t.test('failed Basic auth gets a challenge', async (t) => {
  const { client } = await createTestClient(server, { confidential: true });
  const fields = { grant_type: 'refresh_token', refresh_token: 'sgr_x' };
  const cases = [
    ['wrong secret', basicAuthorization(client.id, 'sgs_wrong')],
    ['unknown client', basicAuthorization('no-such-client', 'sgs_wrong')],
    ['empty secret', basicAuthorization(client.id, '')],
  ];

  for (const [label, authorization] of cases) {
    const response = await postForm(endpoint, fields, { authorization });
    t.equal(response.status, 401, label);
    t.same(response.body, { error: 'invalid_client', error_description: 'Client authentication failed' }, label);
    t.equal(response.headers.get('www-authenticate'), 'Basic realm="speedgate"', label);
    t.equal(response.headers.get('cache-control'), 'no-store', label);
  }
});

t.test('failed post auth gets a challenge', async (t) => {
  const { client } = await createTestClient(server, { confidential: true });
  const response = await postForm(endpoint, {
    grant_type: 'refresh_token',
    refresh_token: 'sgr_x',
    client_id: client.id,
    client_secret: 'sgs_wrong',
  });

  t.equal(response.status, 401);
  t.same(response.body, { error: 'invalid_client', error_description: 'Client authentication failed' });
  // RFC 9110 section 15.5.2: every 401 names a scheme, whichever method the client tried.
  t.equal(response.headers.get('www-authenticate'), 'Basic realm="speedgate"');
});

t.test('Basic and client_secret together are rejected', async (t) => {
  const { client, clientSecret } = await createTestClient(server, { confidential: true });
  const response = await postForm(
    endpoint,
    { grant_type: 'refresh_token', refresh_token: 'sgr_x', client_secret: clientSecret ?? '' },
    { authorization: basicAuthorization(client.id, clientSecret ?? '') },
  );

  t.equal(response.status, 400);
  t.same(response.body, invalidRequest('Use one client authentication method, not both Basic and client_secret'));
});

t.test('client_id differing from Basic is rejected', async (t) => {
  const { client, clientSecret } = await createTestClient(server, { confidential: true });
  const response = await postForm(
    endpoint,
    { grant_type: 'refresh_token', refresh_token: 'sgr_x', client_id: 'someone-else' },
    { authorization: basicAuthorization(client.id, clientSecret ?? '') },
  );

  t.equal(response.status, 400);
  t.same(response.body, invalidRequest('The client_id parameter does not match the Authorization header'));
});

t.test('confidential client redeems by Basic', async (t) => {
  const { client, clientSecret } = await createTestClient(server, { confidential: true });
  const user = await createTestUser(server);
  const start = await startDevice(server, client.id, { client_secret: clientSecret ?? '' });
  await decideDevice(server, start, user.id);

  const withoutSecret = await postForm(endpoint, { grant_type: DEVICE_GRANT, device_code: start.deviceCode, client_id: client.id });
  t.equal(withoutSecret.status, 401, 'a confidential client must authenticate');

  const authorization = basicAuthorization(client.id, clientSecret ?? '');
  const issued = await postForm(endpoint, { grant_type: DEVICE_GRANT, device_code: start.deviceCode }, { authorization });
  t.equal(issued.status, 200);
  t.equal(issued.body.token_type, 'Bearer');
});

t.test('GET on the token endpoint fails cleanly', async (t) => {
  const response = await fetch(`${endpoint}?grant_type=${DEVICE_GRANT}`);

  t.ok(response.status >= 400 && response.status < 500, `status ${response.status} is a 4xx`);
  t.equal(((await response.json()) as { error: string }).error, 'invalid_request');
});

t.test('repeated failures block the address', async (t) => {
  const limited = await startServer(t, { env: { OAUTH_FAILURE_LIMIT: '3' } });
  const tokenEndpoint = `${limited.url}/o/token/`;
  const { client } = await createTestClient(limited);
  const guess = { grant_type: DEVICE_GRANT, client_id: client.id, device_code: 'guessed-code' };
  const blocked = invalidRequest('Too many failed requests from this address; retry later');

  for (let attempt = 1; attempt <= 3; attempt++) {
    const response = await postForm(tokenEndpoint, guess);
    t.equal(response.status, 400, `guess ${attempt} is answered`);
    t.equal(response.body.error, 'invalid_grant', `guess ${attempt} is answered`);
  }

  const rejected = await postForm(tokenEndpoint, guess);
  t.equal(rejected.status, 429);
  t.same(rejected.body, blocked);
  const retryAfter = Number(rejected.headers.get('retry-after'));
  t.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After ${retryAfter} is 1 to 60 s`);

  const device = await postForm(`${limited.url}/o/device-authorization/`, { client_id: client.id });
  t.equal(device.status, 429, 'the other OAuth endpoints are blocked too');
  t.same(device.body, blocked);

  limited.clock.advance(60);
  const later = await postForm(`${limited.url}/o/device-authorization/`, { client_id: client.id });
  t.equal(later.status, 200, 'the block lifts when the window ends');
});

t.test('non-guessing errors do not block', async (t) => {
  const limited = await startServer(t, { env: { OAUTH_FAILURE_LIMIT: '3' } });
  const { client } = await createTestClient(limited);

  for (let attempt = 1; attempt <= 6; attempt++) {
    const response = await postForm(`${limited.url}/o/token/`, { grant_type: 'password', client_id: client.id });
    t.equal(response.status, 400, `request ${attempt}`);
    t.equal(response.body.error, 'unsupported_grant_type', `request ${attempt}`);
  }

  const device = await postForm(`${limited.url}/o/device-authorization/`, { client_id: client.id });
  t.equal(device.status, 200);
});
