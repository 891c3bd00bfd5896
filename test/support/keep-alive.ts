import { Agent, request } from 'node:http';

export interface KeepAliveClient {
  /** One request on a pooled connection; resolves with the status and the body text. */
  send(
    url: string,
    options: { method?: string; path: string; headers?: Record<string, string> },
  ): Promise<{ status: number; text: string }>;
  /** Closes the pooled sockets. */
  close(): void;
}

/**
 * HTTP over pooled keep-alive connections. Polling and load loops measure the server, not
 * a TCP handshake per request as sendRequest (agent: false) would add.
 */
export function keepAliveClient(maxSockets: number): KeepAliveClient {
  const agent = new Agent({ keepAlive: true, maxSockets });
  return {
    send(url, { method = 'GET', path, headers = {} }) {
      const target = new URL(url);
      return new Promise((resolve, reject) => {
        const req = request(
          { agent, host: target.hostname, port: target.port, method, path, headers },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('error', reject);
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }),
            );
          },
        );
        req.on('error', reject);
        req.end();
      });
    },
    close: () => agent.destroy(),
  };
}
