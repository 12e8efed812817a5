/**
 * Readiness for orchestrators and the application's launcher: `GET /ready` is 503
 * until every volume is mounted, then 200 with the volume names; `GET /live` is
 * 200 while the process runs. Loopback only: it is for the pod/container itself.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Health {
  readonly port: number;
  setReady(volumes: string[]): void;
  setStopping(): void;
  close(): Promise<void>;
}

export async function startHealth(port: number): Promise<Health> {
  let state: { ready: boolean; stopping: boolean; volumes: string[] } = {
    ready: false,
    stopping: false,
    volumes: [],
  };
  const server: Server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET') return send(405, { error: 'method not allowed' });
    if (req.url === '/live') return send(200, { live: true });
    if (req.url === '/ready') {
      const ready = state.ready && !state.stopping;
      return send(ready ? 200 : 503, { ready, stopping: state.stopping, volumes: state.volumes });
    }
    send(404, { error: 'not found' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    setReady: (volumes) => {
      state = { ...state, ready: true, volumes };
    },
    setStopping: () => {
      state = { ...state, stopping: true };
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
