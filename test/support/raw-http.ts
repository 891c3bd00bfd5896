import { connect } from 'node:net';

/** A request written byte for byte: what node:http's client refuses to send is fine here. */
export interface RawRequest {
  method: string;
  /** The request target as sent: origin-form, absolute-form, anything. */
  target: string | Buffer;
  /** Header lines in order; a Buffer value goes on the wire as is (UTF-8, obs-text…). */
  headers: ReadonlyArray<readonly [name: string, value: string | Buffer]>;
  body?: Buffer;
  /** Send the body in chunked transfer coding, in pieces of this many bytes. Without it, the
   * body goes with a Content-Length, unless the headers already frame it. */
  chunkSize?: number;
}

export interface RawResponse {
  /** Everything the server sent before it closed the connection. */
  bytes: Buffer;
  statusLine: string;
  status: number;
  /** Header lines as sent: names in their own case, in their own order. */
  headerLines: Array<[name: string, value: string]>;
  /** Lowercased names; a repeated header keeps its last value. */
  headers: Record<string, string>;
  /** The bytes after the head (nothing for HEAD, whatever Content-Length says). */
  body: Buffer;
}

/** Serializes a request with `Connection: close`, so the answer ends where the stream ends. */
export function encodeRequest(host: string, req: RawRequest): Buffer {
  const parts: Buffer[] = [
    Buffer.from(`${req.method} `, 'latin1'),
    Buffer.isBuffer(req.target) ? req.target : Buffer.from(req.target, 'latin1'),
    Buffer.from(` HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n`, 'latin1'),
  ];
  for (const [name, value] of req.headers) {
    parts.push(Buffer.from(`${name}: `, 'latin1'), Buffer.from(value), Buffer.from('\r\n'));
  }
  const framed = req.headers.some(([name]) =>
    /^(content-length|transfer-encoding)$/i.test(name.trim()),
  );
  const body = req.body;
  if (body !== undefined && req.chunkSize !== undefined) {
    parts.push(Buffer.from('Transfer-Encoding: chunked\r\n\r\n'));
    for (let at = 0; at < body.byteLength; at += req.chunkSize) {
      const piece = body.subarray(at, at + req.chunkSize);
      parts.push(Buffer.from(`${piece.byteLength.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
    }
    parts.push(Buffer.from('0\r\n\r\n'));
  } else {
    if (body !== undefined && !framed) {
      parts.push(Buffer.from(`Content-Length: ${body.byteLength}\r\n`));
    }
    parts.push(Buffer.from('\r\n'));
    if (body !== undefined) parts.push(body);
  }
  return Buffer.concat(parts);
}

/**
 * Writes `bytes` on a fresh loopback connection and resolves with everything the server
 * sent until it closed. A server that stops reading early (a 413, a 431) may reset the
 * connection under our feet: what it answered before that still counts.
 */
export function exchange(baseUrl: string, bytes: Buffer, timeoutMs = 10_000): Promise<RawResponse> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(Number(url.port), url.hostname);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (error?: Error) => {
      clearTimeout(timer);
      const received = Buffer.concat(chunks);
      if (received.byteLength === 0) {
        reject(error ?? new Error('the server closed the connection without answering'));
        return;
      }
      try {
        resolve(parseResponse(received));
      } catch (parseError) {
        reject(parseError);
      }
    };
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error) => finish(error));
    socket.on('close', () => finish());
    // Not end(): Node's server drops a request whose client half-closed before the answer
    // was written (httpAllowHalfOpen is off). `Connection: close` ends the exchange instead.
    socket.write(bytes);
  });
}

export function rawRequest(baseUrl: string, req: RawRequest, timeoutMs?: number) {
  return exchange(baseUrl, encodeRequest(new URL(baseUrl).host, req), timeoutMs);
}

export function parseResponse(bytes: Buffer): RawResponse {
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`incomplete response head: ${JSON.stringify(excerpt(bytes))}`);
  const [statusLine = '', ...lines] = bytes.subarray(0, end).toString('latin1').split('\r\n');
  const status = /^HTTP\/1\.1 (\d{3})(?: |$)/.exec(statusLine)?.[1];
  if (status === undefined) throw new Error(`not an HTTP/1.1 status line: ${statusLine}`);
  const headerLines = lines.map((line): [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
  return {
    bytes,
    statusLine,
    status: Number(status),
    headerLines,
    headers: Object.fromEntries(headerLines.map(([name, value]) => [name.toLowerCase(), value])),
    body: bytes.subarray(end + 4),
  };
}

function excerpt(bytes: Buffer): string {
  return bytes.subarray(0, 200).toString('latin1');
}
