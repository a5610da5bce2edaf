import { connect } from 'node:net';

/** A request written byte for byte, so tests can send what `fetch` would refuse or repair. */
export interface RawRequest {
  method: string;
  /** The request target exactly as sent, which may hold bytes that are not valid UTF-8. */
  target: Buffer | string;
  headers: [string, Buffer | string][];
  body?: Buffer;
}

export interface RawResponse {
  status: number;
  /** Headers by lower-case name. A repeated header keeps its values joined by ", ". */
  headers: Record<string, string>;
  body: string;
}

/** How long one raw exchange may take before the test fails instead of hanging. */
const EXCHANGE_TIMEOUT_MS = 15_000;

/** Serializes `request` as HTTP/1.1 with `Connection: close` and a correct `Content-Length`. */
export function serializeRequest(request: RawRequest, host: string): Buffer {
  const lines: Buffer[] = [Buffer.concat([Buffer.from(`${request.method} `), Buffer.from(request.target), Buffer.from(' HTTP/1.1\r\n')])];
  lines.push(Buffer.from(`host: ${host}\r\nconnection: close\r\n`));
  for (const [name, value] of request.headers) {
    lines.push(Buffer.concat([Buffer.from(`${name}: `), Buffer.from(value), Buffer.from('\r\n')]));
  }
  if (request.body !== undefined) lines.push(Buffer.from(`content-length: ${request.body.length}\r\n`));
  lines.push(Buffer.from('\r\n'));
  if (request.body !== undefined) lines.push(request.body);
  return Buffer.concat(lines);
}

function decodeChunked(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = raw.indexOf('\r\n', offset);
    if (lineEnd === -1) throw new Error('truncated chunked body');
    const size = Number.parseInt(raw.subarray(offset, lineEnd).toString('latin1'), 16);
    if (Number.isNaN(size)) throw new Error('invalid chunk size');
    if (size === 0) return Buffer.concat(parts);
    parts.push(raw.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
}

/** Parses one HTTP/1.1 response, and throws when the bytes are not one. */
export function parseResponse(raw: Buffer): RawResponse {
  const headerEnd = raw.indexOf('\r\n\r\n');
  if (headerEnd === -1) throw new Error(`no complete response head in ${raw.length} bytes: ${JSON.stringify(raw.toString('latin1').slice(0, 200))}`);

  const [statusLine, ...headerLines] = raw.subarray(0, headerEnd).toString('latin1').split('\r\n');
  const match = /^HTTP\/1\.1 (\d{3})/.exec(statusLine);
  if (match === null) throw new Error(`invalid status line ${JSON.stringify(statusLine)}`);

  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }

  let body = raw.subarray(headerEnd + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = decodeChunked(body);
  return { status: Number(match[1]), headers, body: body.toString('utf8') };
}

/**
 * Sends one raw request to a loopback port and reads the whole response,
 * which ends when the server closes the connection. A server that closes
 * early (after rejecting an oversized body, for example) may reset the connection
 * while the body is still being written: the response read so far counts.
 */
export function sendRaw(port: number, request: RawRequest): Promise<RawResponse> {
  const bytes = serializeRequest(request, `127.0.0.1:${port}`);

  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: '127.0.0.1', port });
    let settled = false;

    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      socket.destroy();
      const received = Buffer.concat(chunks);
      if (received.length > 0) {
        try {
          resolve(parseResponse(received));
          return;
        } catch (parseError) {
          reject(error ?? parseError);
          return;
        }
      }
      reject(error ?? new Error('the server closed the connection without a response'));
    };

    const deadline = setTimeout(() => finish(new Error(`no response within ${EXCHANGE_TIMEOUT_MS} ms`)), EXCHANGE_TIMEOUT_MS);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => finish());
    socket.on('close', () => finish());
    socket.on('error', (error) => finish(error));
    socket.write(bytes);
  });
}
