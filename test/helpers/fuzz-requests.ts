import fc from 'fast-check';
import type { RawRequest } from './raw-http.ts';

/**
 * Building blocks for malformed HTTP requests: parameter lists with
 * duplicates, broken encodings, wrong content types, junk credentials and
 * odd methods. Every request keeps correct HTTP framing (one request line,
 * a right Content-Length), so the server always receives one whole request.
 */

/** Methods that no route expects, including ones the HTTP parser itself rejects. */
const ODD_METHODS = ['PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'PROPFIND', 'SEARCH', 'FOO', 'get', 'M-SEARCH'];

/** Headers the fuzzer never sends at random, because they change the framing or hand the socket elsewhere. */
const RESERVED_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'upgrade', 'expect', 'te', 'trailer', 'keep-alive']);

const CONTENT_TYPES = [
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded; charset=utf-8',
  'application/x-www-form-urlencoded; charset=iso-8859-1',
  'application/json',
  'application/json; charset=utf-16',
  'APPLICATION/JSON',
  'text/plain',
  'text/html',
  'multipart/form-data; boundary=----fuzz',
  'application/xml',
  'application/octet-stream',
  'application/x-www-form-urlencoded, application/json',
  ';;;',
  '',
];

/** Percent-escapes that decode to bytes which are not UTF-8, or that are not escapes at all. */
const BROKEN_ESCAPES = ['%FF', '%C3%28', '%E2%82', '%ED%A0%80', '%C0%AF', '%zz', '%', '%0', '%00', '+', '%2B', '%26', '%3D', '%0D%0A'];

const BROKEN_JSON = [
  '{',
  '{"a":',
  '[1,2',
  '{"__proto__":{"polluted":true}}',
  '{"constructor":{"prototype":{"polluted":true}}}',
  'null',
  '"text"',
  '1e999',
  '\uFEFF{}',
  '{"a":"\\ud800"}',
  '{"a":1,"a":[1,2]}',
  '[]',
  '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]',
];

/** Strings with lone surrogates, which `fc.string` never produces but a JSON body can carry. */
const LONE_SURROGATES = ['\ud800', 'a\udfff', '\udbff\udbff', 'x\ud83d'];

export type Pair = [string, string];

/** Generates a parameter value: short text of several alphabets, a known interesting value, or a huge one. */
export function valueArbitrary(interesting: readonly string[]): fc.Arbitrary<string> {
  const choices: fc.WeightedArbitrary<string>[] = [
    { weight: 4, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
    { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
    { weight: 1, arbitrary: fc.constantFrom(...LONE_SURROGATES) },
    { weight: 1, arbitrary: fc.constantFrom('', ' ', '0', '-1', 'null', 'true', '[]', '{}', '../../etc/passwd', "' or 1=1 --", '<script>alert(1)</script>') },
    { weight: 1, arbitrary: fc.integer({ min: 4_000, max: 100_000 }).map((length) => 'A'.repeat(length)) },
  ];
  if (interesting.length > 0) choices.push({ weight: 5, arbitrary: fc.constantFrom(...interesting) });
  return fc.oneof(...choices);
}

/** Generates a list of parameters, known names more often than random ones, repeated names included. */
export function pairsArbitrary(names: readonly string[], interesting: Record<string, readonly string[]>, maxLength = 8): fc.Arbitrary<Pair[]> {
  const name = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...names) },
    { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
    { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'a[b]', 'a.b', '') },
  );
  const pair = name.chain((chosen) => fc.tuple(fc.constant(chosen), valueArbitrary(Object.hasOwn(interesting, chosen) ? interesting[chosen] : [])));
  return fc.array(pair, { maxLength });
}

/** Generates a mostly valid parameter set with a few parameters dropped, added or repeated. */
export function mutatedPairsArbitrary(
  bases: readonly Record<string, string>[],
  names: readonly string[],
  interesting: Record<string, readonly string[]>,
): fc.Arbitrary<Pair[]> {
  return fc
    .tuple(fc.constantFrom(...bases), fc.array(fc.nat(), { maxLength: 3 }), pairsArbitrary(names, interesting, 3), fc.boolean())
    .map(([base, drops, extra, repeat]) => {
      const pairs: Pair[] = Object.entries(base);
      for (const drop of drops) if (pairs.length > 0) pairs.splice(drop % pairs.length, 1);
      if (repeat && pairs.length > 0) pairs.push(pairs[0]);
      return [...pairs, ...extra];
    });
}

function percentEncodeBytes(bytes: Buffer): string {
  let out = '';
  for (const byte of bytes) {
    const char = String.fromCharCode(byte);
    out += /[A-Za-z0-9_.~-]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** How a form or query string is encoded: correctly, as Latin-1, with raw bytes, or with broken escapes. */
export type FormEncoding = 'standard' | 'latin1' | 'raw' | 'broken';

export const formEncodingArbitrary: fc.Arbitrary<FormEncoding> = fc.constantFrom('standard', 'standard', 'latin1', 'raw', 'broken');

function encodeComponent(value: string, encoding: FormEncoding, salt: number): Buffer {
  switch (encoding) {
    case 'standard':
      return Buffer.from(percentEncodeBytes(Buffer.from(value, 'utf8')));
    case 'latin1':
      return Buffer.from(percentEncodeBytes(Buffer.from(value, 'latin1')));
    case 'raw':
      // Only the separators are escaped. Every other byte goes out as UTF-8.
      return Buffer.from(value.replace(/[&=%+#]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`), 'utf8');
    case 'broken': {
      const escape = BROKEN_ESCAPES[salt % BROKEN_ESCAPES.length];
      return Buffer.concat([Buffer.from(percentEncodeBytes(Buffer.from(value, 'utf8'))), Buffer.from(escape)]);
    }
  }
}

/** Encodes parameters as `name=value&…` bytes. */
export function encodePairs(pairs: readonly Pair[], encoding: FormEncoding): Buffer {
  const parts = pairs.map(([name, value], index) =>
    Buffer.concat([encodeComponent(name, encoding, index), Buffer.from('='), encodeComponent(value, encoding, index + 7)]),
  );
  const joined: Buffer[] = [];
  parts.forEach((part, index) => {
    if (index > 0) joined.push(Buffer.from('&'));
    joined.push(part);
  });
  return Buffer.concat(joined);
}

/**
 * Makes a request target safe to put on the request line: bytes that would
 * end or split it (controls, space, DEL) are escaped, bytes above 0x7f stay raw.
 */
export function sanitizeTarget(target: Buffer): Buffer {
  const out: number[] = [];
  for (const byte of target) {
    if (byte <= 0x20 || byte === 0x7f) out.push(...Buffer.from(`%${byte.toString(16).toUpperCase().padStart(2, '0')}`));
    else out.push(byte);
  }
  return Buffer.from(out);
}

/** Turns parameters into a JSON object. A repeated name becomes an array, as a naive client would send it. */
export function pairsToJson(pairs: readonly Pair[]): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  for (const [name, value] of pairs) {
    const previous = object[name];
    if (previous === undefined) object[name] = value;
    else object[name] = Array.isArray(previous) ? [...previous, value] : [previous, value];
  }
  return object;
}

export type BodyKind = 'none' | 'empty' | 'form' | 'json' | 'json-random' | 'json-broken' | 'bytes' | 'huge';

export interface BodyChoice {
  kind: BodyKind;
  encoding: FormEncoding;
  /** Random bytes, random JSON or a broken JSON text, depending on `kind`. */
  raw: Buffer;
  hugeLength: number;
}

export const bodyChoiceArbitrary = (preferred: BodyKind): fc.Arbitrary<BodyChoice> =>
  fc.record({
    kind: fc.oneof(
      { weight: 8, arbitrary: fc.constant(preferred) },
      { weight: 6, arbitrary: fc.constantFrom<BodyKind>('none', 'empty', 'form', 'json', 'json-random', 'json-broken', 'bytes') },
      { weight: 1, arbitrary: fc.constant<BodyKind>('huge') },
    ),
    encoding: formEncodingArbitrary,
    raw: fc.oneof(
      fc.uint8Array({ maxLength: 2048 }).map((bytes) => Buffer.from(bytes)),
      fc.jsonValue({ maxDepth: 3 }).map((value) => Buffer.from(JSON.stringify(value) ?? 'null')),
      fc.constantFrom(...BROKEN_JSON).map((text) => Buffer.from(text)),
    ),
    hugeLength: fc.integer({ min: 10_000, max: 100_000 }),
  });

/** Serializes the body chosen for `pairs` and returns the content type that matches it. */
export function buildBody(choice: BodyChoice, pairs: readonly Pair[]): { body: Buffer | undefined; matchingType: string | undefined } {
  switch (choice.kind) {
    case 'none':
      return { body: undefined, matchingType: undefined };
    case 'empty':
      return { body: Buffer.alloc(0), matchingType: 'application/x-www-form-urlencoded' };
    case 'form':
      return { body: encodePairs(pairs, choice.encoding), matchingType: 'application/x-www-form-urlencoded' };
    case 'json':
      return { body: Buffer.from(JSON.stringify(pairsToJson(pairs))), matchingType: 'application/json' };
    case 'json-random':
    case 'json-broken':
      return { body: choice.raw, matchingType: 'application/json' };
    case 'bytes':
      return { body: choice.raw, matchingType: 'application/x-www-form-urlencoded' };
    case 'huge':
      return { body: Buffer.from(`a=${'A'.repeat(choice.hugeLength)}`), matchingType: 'application/x-www-form-urlencoded' };
  }
}

/** The content type sent: usually the one that matches the body, else a wrong, odd or missing one. */
export const contentTypeChoiceArbitrary: fc.Arbitrary<string | 'matching' | undefined> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<'matching'>('matching') },
  { weight: 3, arbitrary: fc.constantFrom(...CONTENT_TYPES) },
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 30 }) },
);

/** Extra headers with random names and values, never ones that change the request framing. */
export const extraHeadersArbitrary: fc.Arbitrary<[string, Buffer][]> = fc.array(
  fc.tuple(
    fc.oneof(
      fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/),
      fc.constantFrom('x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'origin', 'referer', 'accept', 'accept-language', 'user-agent', 'content-encoding', 'range', 'if-none-match', 'x-http-method-override'),
    ),
    fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.uint8Array({ maxLength: 60 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
      fc.constantFrom('gzip', 'bytes=0-1', '1.2.3.4, 127.0.0.1', 'evil.example', 'https', '*/*', 'DELETE'),
    ),
  ).map(([name, value]): [string, Buffer] => [name, Buffer.from(value.replace(/[\r\n\0]/g, ''), 'latin1')]),
  { maxLength: 3 },
).map((headers) => headers.filter(([name]) => !RESERVED_HEADERS.has(name)));

export const methodArbitrary = (usual: readonly string[]): fc.Arbitrary<string> =>
  fc.oneof({ weight: 12, arbitrary: fc.constantFrom(...usual) }, { weight: 1, arbitrary: fc.constantFrom(...ODD_METHODS) });

/** Variants of a route path: as registered, without its trailing slash, doubled, extended or case-changed. */
export function pathVariantArbitrary(paths: readonly string[]): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.constantFrom(...paths),
      fc.oneof(
        { weight: 12, arbitrary: fc.constant('as-is') },
        { weight: 2, arbitrary: fc.constant('no-slash') },
        { weight: 1, arbitrary: fc.constantFrom('double-slash', 'extra', 'dot', 'upper', 'encoded') },
      ),
      fc.string({ maxLength: 10 }),
    )
    .map(([path, variant, junk]) => {
      switch (variant) {
        case 'no-slash':
          return path.replace(/\/$/, '');
        case 'double-slash':
          return path.replace(/^\//, '//');
        case 'extra':
          return `${path}${encodeURIComponent(junk)}/`;
        case 'dot':
          return `${path}../${path.slice(1)}`;
        case 'upper':
          return path.toUpperCase();
        case 'encoded':
          return path.replace(/o/g, '%6F');
        default:
          return path;
      }
    });
}

/** Builds the raw request from a target that already carries its query string. */
export function assembleRequest(
  method: string,
  target: Buffer,
  headers: [string, Buffer | string][],
  body: Buffer | undefined,
): RawRequest {
  return { method, target: sanitizeTarget(target), headers, body };
}
