import { setTimeout as sleep } from 'node:timers/promises';
import { CliError, NetworkError, OAuthResponseError, printable } from './errors.ts';
import { postOAuthForm } from './http.ts';
import { DEVICE_CODE_GRANT_TYPE, requestTokens, type TokenSet } from './tokens.ts';

/** The RFC 8628 section 3.2 device authorization response. */
export interface DeviceAuthorization {
  deviceCode: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete: string | undefined;
  expiresIn: number;
  interval: number;
}

/** RFC 8628 section 3.2: the poll interval when the server names none, in seconds. */
const DEFAULT_INTERVAL_SECONDS = 5;

/** RFC 8628 section 3.5: each slow_down adds 5 seconds to the interval. */
const SLOW_DOWN_STEP_SECONDS = 5;

/** Maximum wait between polls after network failures, in seconds. */
const MAX_BACKOFF_SECONDS = 60;

function readString(body: Record<string, unknown>, name: string): string {
  const value = body[name];
  if (typeof value !== 'string' || value === '') {
    throw new CliError(`The device authorization response has no ${name}`);
  }
  return value;
}

function readHttpUrl(body: Record<string, unknown>, name: string): string {
  const value = readString(body, name);
  if (!URL.canParse(value) || !/^https?:$/.test(new URL(value).protocol)) {
    const received = printable(value);
    throw new CliError(`The device authorization response has an invalid ${name}: ${received}`);
  }
  return value;
}

/** Starts a device authorization (RFC 8628 section 3.1) for a public client. */
export async function requestDeviceAuthorization(
  server: string,
  clientId: string,
  scope: string | undefined,
): Promise<DeviceAuthorization> {
  const fields: Record<string, string> = { client_id: clientId };
  if (scope !== undefined) fields.scope = scope;
  const body = await postOAuthForm(`${server}/o/device-authorization/`, fields);

  const validInterval = typeof body.interval === 'number' && body.interval > 0;
  const interval = validInterval ? (body.interval as number) : DEFAULT_INTERVAL_SECONDS;
  const expiresIn = body.expires_in;
  if (typeof expiresIn !== 'number' || expiresIn <= 0) {
    throw new CliError('The device authorization response has no valid expires_in');
  }

  return {
    deviceCode: readString(body, 'device_code'),
    userCode: readString(body, 'user_code'),
    verificationUri: readHttpUrl(body, 'verification_uri'),
    verificationUriComplete:
      body.verification_uri_complete === undefined
        ? undefined
        : readHttpUrl(body, 'verification_uri_complete'),
    expiresIn,
    interval,
  };
}

function describeDuration(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} seconds`;
  return `${Math.round(seconds / 60)} minutes`;
}

/**
 * Prints the page to open, the code to enter and, when given, the QR code of
 * the link that fills in the code on standard output. Prints the progress
 * message on standard error.
 */
export function printInstructions(authorization: DeviceAuthorization, qrCode?: string): void {
  const page = printable(authorization.verificationUri);
  console.log(`Open ${page} and enter the code ${printable(authorization.userCode)}`);
  if (authorization.verificationUriComplete !== undefined) {
    const link = printable(authorization.verificationUriComplete);
    console.log(`Or open this link, which fills in the code: ${link}`);
  }
  if (qrCode !== undefined) {
    console.log('Or scan this QR code with your phone to open that link:');
    console.log(qrCode);
  }

  const expiry = describeDuration(authorization.expiresIn);
  console.error(
    `Waiting for approval in the browser. The code expires in ${expiry}. Press Ctrl+C to cancel.`,
  );
}

function expiredCodeError(): CliError {
  return new CliError(
    'The code expired before it was approved. Run speedgate-cli login again for a new code.',
  );
}

/**
 * Returns the interval for the next poll after a failed one, or throws when
 * the failure ends the flow (RFC 8628 section 3.5).
 */
function nextInterval(error: unknown, interval: number): number {
  if (error instanceof NetworkError) {
    // RFC 8628 section 3.5: back off exponentially after a connection failure.
    const backoff = Math.min(interval * 2, MAX_BACKOFF_SECONDS);
    console.error(`warning: ${error.message}. Trying again in ${backoff} seconds.`);
    return backoff;
  }
  if (!(error instanceof OAuthResponseError)) throw error;

  switch (error.code) {
    case 'authorization_pending':
      return interval;
    case 'slow_down':
      interval += SLOW_DOWN_STEP_SECONDS;
      console.error(
        `The server requested slower polling (slow_down). Waiting ${interval} seconds between requests.`,
      );
      return interval;
    case 'access_denied':
      throw new CliError(
        'Access denied. The sign-in request was denied in the browser. Run speedgate-cli login to try again.',
      );
    case 'expired_token':
      throw expiredCodeError();
    default:
      throw error;
  }
}

/**
 * Polls the token endpoint until the user approves or denies the request or
 * the code expires (RFC 8628 section 3.4), waiting `interval` seconds before
 * each request.
 */
export async function pollForTokens(
  server: string,
  clientId: string,
  authorization: DeviceAuthorization,
): Promise<TokenSet> {
  const deadline = Date.now() + authorization.expiresIn * 1000;
  const fields = {
    grant_type: DEVICE_CODE_GRANT_TYPE,
    device_code: authorization.deviceCode,
    client_id: clientId,
  };
  let interval = authorization.interval;

  for (;;) {
    await sleep(interval * 1000);
    if (Date.now() >= deadline) throw expiredCodeError();

    try {
      return await requestTokens(server, fields);
    } catch (error) {
      interval = nextInterval(error, interval);
    }
  }
}
