import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';

export interface TestResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The body parsed as JSON; `undefined` when it is not JSON. */
  json: unknown;
}

export interface TestRequest {
  method?: string;
  path: string;
  headers?: Record<string, string | string[]>;
  /** A string is sent as is; anything else as JSON with `Content-Type: application/json`. */
  body?: unknown;
}

/** One request over loopback with node:http, which sends exactly what it is given: any
 * method, repeated headers, bodies on any method. */
export function sendRequest(baseUrl: string, req: TestRequest): Promise<TestResponse> {
  const headers: Record<string, string | string[]> = { ...req.headers };
  let payload: Buffer | undefined;
  if (req.body !== undefined) {
    if (typeof req.body === 'string' || Buffer.isBuffer(req.body)) {
      payload = Buffer.from(req.body as string | Buffer);
    } else {
      payload = Buffer.from(JSON.stringify(req.body));
      if (!hasHeader(headers, 'content-type')) headers['Content-Type'] = 'application/json';
    }
    headers['Content-Length'] = String(payload.byteLength);
  }
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        method: req.method ?? 'GET',
        path: req.path,
        headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    r.on('error', reject);
    r.end(payload);
  });
}

function hasHeader(headers: Record<string, unknown>, name: string): boolean {
  return Object.keys(headers).some((h) => h.toLowerCase() === name);
}

/**
 * Sends a request's head over a raw socket, announcing a body that never comes, and
 * resolves with the status line of the answer. A server that waited for the body before
 * checking the key would never answer: the test's timeout catches it.
 */
export function sendHeadWithoutBody(
  baseUrl: string,
  head: { method: string; path: string; headers: Record<string, string> },
): Promise<{ status: number; raw: string }> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    let raw = '';
    socket.setEncoding('utf8');
    socket.on('error', reject);
    socket.on('connect', () => {
      const lines = [`${head.method} ${head.path} HTTP/1.1`, `Host: ${url.host}`];
      for (const [name, value] of Object.entries(head.headers)) lines.push(`${name}: ${value}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
    socket.on('data', (chunk: string) => {
      raw += chunk;
      const match = /^HTTP\/1\.1 (\d{3})/.exec(raw);
      if (match && raw.includes('\r\n\r\n')) {
        socket.destroy();
        resolve({ status: Number(match[1]), raw });
      }
    });
  });
}
