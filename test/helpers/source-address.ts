import http from 'node:http';

export interface AddressedResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * Sends a form POST from another loopback source address, such as
 * 127.0.0.2, so a test can act as a second client without trusting proxy
 * headers. Linux routes all of 127.0.0.0/8 to the loopback interface.
 */
export function postFormFrom(
  localAddress: string,
  url: string,
  fields: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<AddressedResponse> {
  const body = new URLSearchParams(fields).toString();
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      {
        method: 'POST',
        localAddress,
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), ...headers },
        timeout: 30_000,
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: text }));
        response.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no response from ${url} within 30 s`)));
    request.on('error', reject);
    request.end(body);
  });
}
