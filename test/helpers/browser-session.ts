/**
 * A browser without JavaScript: keeps cookies, follows no redirects on its
 * own, and submits forms with the CSRF token the page carried.
 */
export class BrowserSession {
  readonly baseUrl: string;
  readonly cookies = new Map<string, string>();

  constructor(baseUrl: string) {
    this.baseUrl = baseUrl;
  }

  #storeCookies(response: Response): void {
    for (const header of response.headers.getSetCookie()) {
      const [pair] = header.split(';');
      const index = pair.indexOf('=');
      const name = pair.slice(0, index);
      const value = pair.slice(index + 1);
      if (value === '' || /max-age=0|expires=thu, 01 jan 1970/i.test(header)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  #cookieHeader(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  async get(path: string): Promise<Response> {
    const response = await fetch(new URL(path, this.baseUrl), {
      headers: { cookie: this.#cookieHeader() },
      redirect: 'manual',
    });
    this.#storeCookies(response);
    return response;
  }

  async post(path: string, fields: Record<string, string>): Promise<Response> {
    const response = await fetch(new URL(path, this.baseUrl), {
      method: 'POST',
      headers: { cookie: this.#cookieHeader(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
      redirect: 'manual',
    });
    this.#storeCookies(response);
    return response;
  }

  /** Loads a page and returns its HTML and the CSRF token of its first form. */
  async page(path: string): Promise<{ status: number; html: string; csrfToken: string }> {
    const response = await this.get(path);
    const html = await response.text();
    return { status: response.status, html, csrfToken: readCsrfToken(html) };
  }

  /** Loads the form page at `path` and submits `fields` to it with its CSRF token. */
  async submit(path: string, fields: Record<string, string>): Promise<Response> {
    const { csrfToken } = await this.page(path);
    return this.post(path.split('?')[0], { csrf_token: csrfToken, ...fields });
  }

  async signUp(email: string, password: string, name = 'Test User'): Promise<Response> {
    return this.submit('/accounts/signup/', { email, password, name });
  }

  async logIn(email: string, password: string): Promise<Response> {
    return this.submit('/accounts/login/', { email, password });
  }
}

export function readCsrfToken(html: string): string {
  return /name="csrf_token" value="([^"]+)"/.exec(html)?.[1] ?? '';
}
