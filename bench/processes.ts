import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository root, where `--import tsx` resolves and `src/` lives. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

/** A server running in a child process of the benchmark, on a loopback port. */
export interface ChildServer {
  name: string;
  pid: number;
  url: string;
  stop(): Promise<void>;
}

/** Finds a free loopback port by binding port 0 and releasing it. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === 'object' && address !== null
          ? resolve(address.port)
          : reject(new Error('binding port 0 returned no port')),
      );
    });
  });
}

// Prefixes each line of the child's output with its name, so server warnings stay readable.
function forwardOutput(name: string, child: ChildProcess): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (stream === null) continue;
    createInterface({ input: stream }).on('line', (line) =>
      process.stderr.write(`[${name}] ${line}\n`),
    );
  }
}

async function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;

  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function waitForReady(child: ChildProcess, name: string, readyUrl: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${name} exited during start-up (code ${child.exitCode}, signal ${child.signalCode})`,
      );
    }
    try {
      const response = await fetch(readyUrl);
      await response.arrayBuffer();
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${name} did not respond to ${readyUrl} within ${READY_TIMEOUT_MS / 1000} s`);
}

/**
 * Starts `node --import tsx <nodeFlags> <script>` with `env` added to this
 * process's environment, and waits until GET `readyPath` returns a 2xx.
 * `nodeFlags` come after tsx, so an `--import` among them may load TypeScript.
 */
export async function startChild(
  name: string,
  script: string,
  port: number,
  readyPath: string,
  env: Record<string, string>,
  nodeFlags: string[] = [],
): Promise<ChildServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...nodeFlags, script], {
    cwd: ROOT,
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  forwardOutput(name, child);
  if (child.pid === undefined) throw new Error(`${name} could not be started`);

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    if (await waitForExit(child, STOP_TIMEOUT_MS)) return;
    process.stderr.write(
      `${name} did not stop within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM; sending SIGKILL\n`,
    );
    child.kill('SIGKILL');
    await waitForExit(child, STOP_TIMEOUT_MS);
  };

  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForReady(child, name, `${url}${readyPath}`);
  } catch (error) {
    await stop();
    throw error;
  }
  return { name, pid: child.pid, url, stop };
}

/**
 * Returns a process's resident set size (VmRSS in /proc/<pid>/status) in
 * bytes, or undefined once the process has exited.
 */
export function readRss(pid: number): number | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return match === null ? undefined : Number(match[1]) * 1024;
}

/** Samples a process's RSS at a fixed interval and keeps the peak. */
export class RssSampler {
  readonly #pid: number;
  readonly #timer: NodeJS.Timeout;
  #peak = 0;

  constructor(pid: number, intervalMs = 200) {
    this.#pid = pid;
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
  }

  #sample(): void {
    this.#peak = Math.max(this.#peak, readRss(this.#pid) ?? 0);
  }

  /** Takes a last sample, stops, and returns the peak in bytes. */
  stop(): number {
    clearInterval(this.#timer);
    this.#sample();
    return this.#peak;
  }
}
