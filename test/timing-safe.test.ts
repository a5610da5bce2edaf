import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import ts from 'typescript';
import { createCsrfToken, verifyCsrfToken } from '../src/accounts/csrf.ts';
import { verifyCodeChallenge } from '../src/oauth/pkce.ts';
import { constantTimeEqual } from '../src/oauth/secrets.ts';

const SOURCE_ROOT = fileURLToPath(new URL('../src', import.meta.url));

/** Names of values that may hold a secret, or something derived from one. */
const SECRET_NAME = /secret|hash|token|verifier|csrf|password|challenge|signature|binding|code/i;

/**
 * Comparisons whose operands have secret-sounding names but hold public
 * values, each with the reason it may use `===`. A new comparison of a
 * secret must go through constantTimeEqual or timingSafeEqual instead.
 */
const ALLOWED: { file: string; comparison: string; reason: string }[] = [
  {
    file: 'accounts/pat-format.ts',
    comparison: 'token.slice(-CHECKSUM_LENGTH) === encodeChecksum(body)',
    reason: 'the CRC32 checksum is computed from the presented token itself, so it reveals nothing the caller lacks',
  },
  {
    file: 'oauth/clients.ts',
    comparison: "(valid.tokenEndpointAuthMethod === 'none') !== (client.secret_hash === null)",
    reason: 'compares two booleans: whether each side is a public client',
  },
  {
    file: 'oauth/registration.ts',
    comparison: "usesCode !== responseTypes.includes('code')",
    reason: 'compares two booleans about registered grant and response types',
  },
];

type Comparison = { file: string; line: number; comparison: string };

const EQUALITY = new Set([
  ts.SyntaxKind.EqualsEqualsEqualsToken,
  ts.SyntaxKind.ExclamationEqualsEqualsToken,
  ts.SyntaxKind.EqualsEqualsToken,
  ts.SyntaxKind.ExclamationEqualsToken,
]);

function listSourceFiles(folder: string): string[] {
  return readdirSync(folder).flatMap((name) => {
    const full = path.join(folder, name);
    if (statSync(full).isDirectory()) return listSourceFiles(full);
    return full.endsWith('.ts') ? [full] : [];
  });
}

/** Tells whether an operand is a constant: a literal, null or undefined, a typeof, or an UPPER_CASE name. */
function isConstant(node: ts.Expression): boolean {
  if (ts.isStringLiteral(node) || ts.isNumericLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return true;
  if (node.kind === ts.SyntaxKind.NullKeyword || node.kind === ts.SyntaxKind.TrueKeyword || node.kind === ts.SyntaxKind.FalseKeyword) return true;
  if (ts.isIdentifier(node) && (node.text === 'undefined' || /^[A-Z][A-Z0-9_]*$/.test(node.text))) return true;
  if (ts.isPropertyAccessExpression(node) && /^[A-Z][A-Z0-9_]*$/.test(node.expression.getText())) return true;
  if (ts.isPrefixUnaryExpression(node) && ts.isNumericLiteral(node.operand)) return true;
  return ts.isTypeOfExpression(node);
}

/**
 * Returns the name that tells what an operand contains: the last property of
 * `a.b.c`, the identifier itself, or the whole text for anything else.
 */
function operandName(node: ts.Expression): string {
  if (ts.isPropertyAccessExpression(node)) return node.name.text;
  if (ts.isIdentifier(node)) return node.text;
  return node.getText();
}

function findSecretComparisons(file: string): Comparison[] {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const found: Comparison[] = [];

  const visit = (node: ts.Node) => {
    if (ts.isBinaryExpression(node) && EQUALITY.has(node.operatorToken.kind)) {
      const operands = [node.left, node.right];
      const secretish = operands.some((operand) => SECRET_NAME.test(operandName(operand)));
      if (secretish && !operands.some(isConstant)) {
        const line = source.getLineAndCharacterOfPosition(node.getStart()).line + 1;
        found.push({ file: path.relative(SOURCE_ROOT, file), line, comparison: node.getText() });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

t.test('secrets never compared with ===', async (t) => {
  const comparisons = listSourceFiles(SOURCE_ROOT).flatMap(findSecretComparisons);
  const isAllowed = (found: Comparison) => ALLOWED.some((entry) => entry.file === found.file && entry.comparison === found.comparison);

  const unexpected = comparisons.filter((found) => !isAllowed(found)).map((found) => `src/${found.file}:${found.line}: ${found.comparison}`);
  t.strictSame(unexpected, [], 'every comparison of a secret-like value goes through constantTimeEqual or timingSafeEqual, or is allow-listed with a reason');

  const stale = ALLOWED.filter((entry) => !comparisons.some((found) => found.file === entry.file && found.comparison === entry.comparison));
  for (const entry of stale) t.comment(`allow-list entry no longer found, remove it: ${entry.file}: ${entry.comparison}`);
});

t.test('secret checks use constant time', async (t) => {
  // The functions that compare secrets must call one of the two constant-time helpers.
  const expectations: [string, RegExp][] = [
    ['accounts/csrf.ts', /constantTimeEqual\(token, createCsrfToken/],
    ['oauth/pkce.ts', /constantTimeEqual\(codeChallengeOf\(verifier\), challenge\)/],
    ['oauth/client-auth.ts', /constantTimeEqual\(presentedHash, storedHash\)/],
    ['accounts/passwords.ts', /timingSafeEqual\(key, expectedKey\)/],
    ['routes/register.ts', /constantTimeEqual\(presented, expected\)/],
  ];
  for (const [file, pattern] of expectations) {
    t.match(readFileSync(path.join(SOURCE_ROOT, file), 'utf8'), pattern, `src/${file} compares in constant time`);
  }
});

t.test('constantTimeEqual handles lengths', async (t) => {
  t.equal(constantTimeEqual('abc', 'abc'), true, 'equal strings');
  t.equal(constantTimeEqual('', ''), true, 'two empty strings');
  t.equal(constantTimeEqual('abc', 'abd'), false, 'one character differs');
  t.equal(constantTimeEqual('abc', 'abcd'), false, 'a prefix of the expected value');
  t.equal(constantTimeEqual('abcd', 'abc'), false, 'the expected value is a prefix');
  t.equal(constantTimeEqual('', 'a'), false, 'empty against one character');
  t.equal(constantTimeEqual('a', ''), false, 'one character against empty');
  t.equal(constantTimeEqual('a', 'a\u0000'), false, 'a trailing NUL is not padding');
  t.equal(constantTimeEqual('a\u0000', 'a'), false, 'padding is not a trailing NUL');
  t.equal(constantTimeEqual('\u0000', ''), false, 'a lone NUL is not empty');
  const long = 'x'.repeat(10_000);
  t.equal(constantTimeEqual(long, `${long}y`), false, 'long values that differ only in length');
  t.equal(constantTimeEqual(long, 'x'.repeat(10_000)), true, 'long equal values');
});

t.test('constantTimeEqual handles unicode', async (t) => {
  t.equal(constantTimeEqual('clé', 'clé'), true, 'equal non-ASCII strings');
  t.equal(constantTimeEqual('\u00e9', 'e\u0301'), false, 'NFC and NFD forms are different strings');
  t.equal(constantTimeEqual('🔑', '🔑'), true, 'equal astral characters');
  t.equal(constantTimeEqual('🔑', '🔒'), false, 'astral characters that differ in the last code unit');
  t.equal(constantTimeEqual('ä', 'ö'), false, 'same encoded length, different characters');
  t.equal(constantTimeEqual('\u0100', 'Ā'), true, 'an escape and its character');
  t.equal(constantTimeEqual('\ud800', '\udbff'), false, 'two different lone surrogates');
  t.equal(constantTimeEqual('\ud800', '\ufffd'), false, 'a lone surrogate is not the replacement character');
  t.equal(constantTimeEqual('a\ud83d', 'a\ud83d'), true, 'equal strings ending in a lone surrogate');
});

t.test('CSRF and PKCE checks reject near misses', async (t) => {
  const token = createCsrfToken('server secret', 'binding');
  t.equal(verifyCsrfToken('server secret', 'binding', token), true, 'the token for this binding');
  t.equal(verifyCsrfToken('server secret', 'binding', token.slice(0, -1)), false, 'a truncated token');
  t.equal(verifyCsrfToken('server secret', 'binding', `${token}=`), false, 'an extended token');
  t.equal(verifyCsrfToken('server secret', 'other binding', token), false, "another browser's binding");
  t.equal(verifyCsrfToken('server secret', 'binding', undefined), false, 'no token');
  t.equal(verifyCsrfToken('server secret', 'binding', ''), false, 'an empty token');

  const verifier = 'dBjftJeZ4CVP-mJ92K8Nb2rTIqgggQLDhJgZ6CmQKSs';
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  t.equal(verifyCodeChallenge(verifier, challenge), true, 'the matching verifier');
  t.equal(verifyCodeChallenge(verifier, challenge.slice(0, -1)), false, 'a truncated challenge');
  t.equal(verifyCodeChallenge(`${verifier}a`, challenge), false, 'another verifier');
  t.equal(verifyCodeChallenge('short', challenge), false, 'a malformed verifier');
});
