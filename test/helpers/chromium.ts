import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { Test } from 'tap';

/** Chromium from Debian's chromium package, which CI installs. Tests never download a browser. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

// The first three flags run Chromium headless without a GPU. The rest turn off background
// traffic such as component updates, sync, first-run pages and QUIC.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

const SCREENSHOT_DIR = fileURLToPath(new URL('../screenshots/', import.meta.url));

/**
 * Launches Chromium and closes it when `t` ends. When Chromium is not
 * installed, it marks `t` as skipped and returns undefined. The caller must
 * then add no tests or assertions to `t`, because tap counts them against
 * the skip's empty plan.
 */
export async function launchChromium(t: Test): Promise<Browser | undefined> {
  if (!existsSync(CHROMIUM_PATH)) {
    t.plan(0, `Chromium not found at ${CHROMIUM_PATH}; install the Debian chromium package to run browser tests`);
    return undefined;
  }

  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
  t.teardown(() => browser.close());
  return browser;
}

export interface PageOptions {
  /** Viewport in CSS pixels; 1024x768 when absent. */
  viewport?: { width: number; height: number };
  /** Phone emulation, which applies the page's viewport meta tag and enables touch events. */
  mobile?: boolean;
}

/**
 * Opens a page in a new browser context, with its own cookies, that closes
 * when `t` ends. Requests to any origin other than `origin` are aborted, so
 * a page under test cannot reach another host.
 */
export async function openPage(t: Test, browser: Browser, origin: string, options: PageOptions = {}): Promise<Page> {
  const context = await browser.newContext({
    viewport: options.viewport ?? { width: 1024, height: 768 },
    isMobile: options.mobile ?? false,
    hasTouch: options.mobile ?? false,
  });
  t.teardown(() => context.close());

  const allowed = new URL(origin).origin;
  await context.route('**/*', (route) => {
    const target = new URL(route.request().url());
    return target.origin === allowed ? route.continue() : route.abort('blockedbyclient');
  });
  return context.newPage();
}

/** Saves a full-page screenshot to test/screenshots/<name>.png, creating the folder when needed. */
export async function saveScreenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
