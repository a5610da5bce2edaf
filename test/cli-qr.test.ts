import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import type { Options as JsQROptions, QRCode } from 'jsqr';
import { BrowserSession } from './helpers/browser-session.ts';
import {
  CLI,
  EMAIL,
  PASSWORD,
  cleanEnv,
  configHome,
  readUserCode,
  runCli,
  startCliServer,
  waitFor,
  type ProcessResult,
} from './helpers/cli.ts';

// jsqr is a CommonJS bundle that exports the function itself, but its types declare an ES
// default export, which TypeScript then reads as a property. require returns the function.
type JsQR = (data: Uint8ClampedArray, width: number, height: number, options?: JsQROptions) => QRCode | null;
const require = createRequire(import.meta.url);
const jsQR = require('jsqr') as JsQR;

const ROOT = fileURLToPath(new URL('..', import.meta.url));

// util-linux's script runs a command on a pseudo-terminal, which is how the CLI meets a real terminal.
const SCRIPT_PATH = '/usr/bin/script';

const QR_HEADING = 'Or scan this QR code with your phone to open that link:';

/** One line of the rendering: block characters, spaces and ANSI colour codes only. */
const QR_LINE = /^(?:\x1b\[\d+m|[ █▀▄\r])*$/;

/** Quiet zone added around the parsed modules, in modules: the qrcode package's default margin. */
const QUIET_ZONE = 4;

/** Pixels per module in the image handed to jsQR. */
const SCALE = 6;

// The file starts about a dozen Node processes and opens PGlite three times. It took 64 to 80
// seconds in trials on a loaded machine, close to the configured 120-second limit.
t.setTimeout(300_000);

type Colour = 'default' | 'black' | 'white';

/**
 * Reads the lines after the QR heading in `output` as a module matrix (true
 * for dark). Each character cell contains two modules, top and bottom: '█' draws
 * both in the foreground colour, ' ' both in the background colour, '▀' the
 * top one and '▄' the bottom one. The ANSI codes 0, 30, 37, 40 and 47 set
 * those colours. The terminal's own foreground counts as dark and its own
 * background as light, as in the plain rendering.
 */
function parseQrBlock(output: string): boolean[][] | undefined {
  const lines = output.split('\n');
  const start = lines.findIndex((line) => line.replace('\r', '') === QR_HEADING);
  if (start === -1) return undefined;

  const rows: boolean[][] = [];
  let foreground: Colour = 'default';
  let background: Colour = 'default';
  for (const line of lines.slice(start + 1)) {
    if (!QR_LINE.test(line)) break;

    const top: boolean[] = [];
    const bottom: boolean[] = [];
    for (const [, code, glyph] of line.matchAll(/\x1b\[(\d+)m|([ █▀▄])/gu)) {
      if (code === '0') [foreground, background] = ['default', 'default'];
      if (code === '30') foreground = 'black';
      if (code === '37') foreground = 'white';
      if (code === '40') background = 'black';
      if (code === '47') background = 'white';
      if (glyph === undefined) continue;

      const ink = foreground === 'black' || foreground === 'default';
      const paper = background === 'black';
      top.push(glyph === '█' || glyph === '▀' ? ink : paper);
      bottom.push(glyph === '█' || glyph === '▄' ? ink : paper);
    }
    rows.push(top, bottom);
  }
  return rows;
}

/** Draws the module matrix as black on white RGBA pixels with a quiet zone and hands it to jsQR. */
function decodeQrBlock(output: string): string | undefined {
  const rows = parseQrBlock(output);
  if (rows === undefined || rows.length === 0) return undefined;

  const columns = Math.max(...rows.map((row) => row.length));
  const width = (columns + 2 * QUIET_ZONE) * SCALE;
  const height = (rows.length + 2 * QUIET_ZONE) * SCALE;
  const pixels = new Uint8ClampedArray(width * height * 4).fill(255);
  rows.forEach((row, y) => {
    row.forEach((dark, x) => {
      if (!dark) return;
      for (let dy = 0; dy < SCALE; dy++) {
        const offset = ((y + QUIET_ZONE) * SCALE + dy) * width + (x + QUIET_ZONE) * SCALE;
        for (let dx = 0; dx < SCALE; dx++) pixels.fill(0, (offset + dx) * 4, (offset + dx) * 4 + 3);
      }
    });
  });
  return jsQR(pixels, width, height, { inversionAttempts: 'dontInvert' })?.data;
}

/** Waits until the QR code in the output read by `read` is complete and decodes it. */
async function waitForQrCode(read: () => string): Promise<string> {
  return waitFor(async () => decodeQrBlock(read()), 'a QR code that decodes');
}

const { server, clientId, startLogin, decide } = await startCliServer(t, { DEVICE_CODE_INTERVAL: '1' });

/** Signs in at `link` in a fresh browser session and approves as the link path requires. */
async function approveFromLink(t: Test, link: string, userCode: string): Promise<void> {
  const browser = new BrowserSession(server.url);
  t.equal((await browser.logIn(EMAIL, PASSWORD)).status, 303, 'browser login redirects');

  const entry = await browser.page(link);
  t.equal(entry.status, 200, 'the link opens the entry page');
  t.match(entry.html, `value="${userCode}"`, 'the entry page is filled in with the code');
  t.match(entry.html, 'name="via" value="link"', 'the entry page marks the link path');

  const review = await browser.submit(link, { user_code: userCode, via: 'link' });
  t.equal(review.status, 200, 'review page loads');
  const fields = { user_code: userCode, via: 'link', code_matches: 'on', action: 'approve' };
  const done = await browser.submit(link, fields);
  t.equal(done.status, 200, 'approve page loads');
  t.match(await done.text(), /Device connected/);
}

interface TerminalRun {
  output: () => string;
  exited: Promise<ProcessResult>;
}

/**
 * Runs `login` on a pseudo-terminal through util-linux's script. The
 * terminal merges standard output and standard error and ends lines with CRLF.
 */
function startLoginOnTerminal(t: Test, args: string[], env: Record<string, string> = {}): TerminalRun {
  const home = configHome(t);
  const command = [path.join(ROOT, CLI), 'login', ...args].map((part) => `'${part}'`).join(' ');
  const inherited = cleanEnv({});
  delete inherited.NO_COLOR;
  const childEnv = {
    ...inherited,
    XDG_CONFIG_HOME: home,
    SPEEDGATE_SERVER: server.url,
    SPEEDGATE_CLIENT_ID: clientId,
    ...env,
  };

  const child = spawn(SCRIPT_PATH, ['--quiet', '--return', '--command', command, '/dev/null'], {
    cwd: ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  t.teardown(() => child.kill());

  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<ProcessResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout: output, stderr: '' }));
  });
  return { output: () => output, exited };
}

async function readTerminalUserCode(run: TerminalRun): Promise<string> {
  const pattern = /enter the code ([A-Z]{4}-[A-Z]{4})\r?\n/;
  return waitFor(async () => pattern.exec(run.output())?.[1], 'the user code on the terminal');
}

t.test('login --qr encodes the link', async (t) => {
  const home = configHome(t);
  const login = startLogin(home, ['--qr']);

  const userCode = await readUserCode(login);
  const link = (await login.waitForOutput(/which fills in the code: (\S+)\n/))[1];
  t.equal(link, `${server.url}/o/device/?user_code=${userCode}`, 'the link carries the user code');

  const decoded = await waitForQrCode(() => login.stdout);
  t.equal(decoded, link, 'the QR code decodes to the link');
  t.notMatch(login.stdout, '\x1b', 'output to a pipe has no escape codes');

  await approveFromLink(t, decoded, userCode);
  const result = await login.exited;
  t.equal(result.code, 0, `login exits 0: ${result.stderr}`);
  t.match(result.stdout, /Signed in to /);
});

t.test('no QR code without --qr on a pipe', async (t) => {
  for (const args of [[], ['--no-qr'], ['--qr', '--no-qr']]) {
    const home = configHome(t);
    const login = startLogin(home, args);
    await decide(t, await readUserCode(login), 'deny');
    const result = await login.exited;

    const options = args.join(' ') || 'no option';
    t.equal(result.code, 1, `${options}: login exits 1 after the denial`);
    t.match(result.stdout, /which fills in the code: /, `${options}: the link is printed`);
    t.notMatch(result.stdout, 'QR code', `${options}: no QR heading`);
    t.notMatch(result.stdout, /[█▀▄]/, `${options}: no block characters`);
  }
});

t.test('login on a terminal', async (t) => {
  if (!existsSync(SCRIPT_PATH)) {
    t.plan(0, `${SCRIPT_PATH} not found; install util-linux to run the terminal cases`);
    return;
  }

  t.test('prints a coloured QR code by default', async (t) => {
    const login = startLoginOnTerminal(t, []);
    const userCode = await readTerminalUserCode(login);

    const decoded = await waitForQrCode(login.output);
    t.equal(decoded, `${server.url}/o/device/?user_code=${userCode}`, 'the QR code decodes to the link');
    t.match(login.output(), '\x1b[47m\x1b[30m', 'the code is drawn black on white');

    await decide(t, userCode, 'deny');
    t.equal((await login.exited).code, 1, 'login exits 1 after the denial');
  });

  t.test('NO_COLOR prints plain characters', async (t) => {
    const login = startLoginOnTerminal(t, [], { NO_COLOR: '1' });
    const userCode = await readTerminalUserCode(login);

    const decoded = await waitForQrCode(login.output);
    t.equal(decoded, `${server.url}/o/device/?user_code=${userCode}`, 'the QR code decodes to the link');
    t.notMatch(login.output(), '\x1b', 'no escape codes');

    await decide(t, userCode, 'deny');
    t.equal((await login.exited).code, 1, 'login exits 1 after the denial');
  });

  t.test('--no-qr prints none', async (t) => {
    const login = startLoginOnTerminal(t, ['--no-qr']);
    await decide(t, await readTerminalUserCode(login), 'deny');
    const result = await login.exited;

    t.equal(result.code, 1, 'login exits 1 after the denial');
    t.match(result.stdout, /which fills in the code: /, 'the link is printed');
    t.notMatch(result.stdout, 'QR code', 'no QR heading');
  });
});

t.test('login --help names --qr', async (t) => {
  const help = await runCli(configHome(t), ['login', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /--qr, --no-qr +Print, or do not print, the QR code/);
});
