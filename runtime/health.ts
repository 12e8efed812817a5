/**
 * Readiness for orchestrators and the application's launcher: `GET /ready` is 503
 * until every proxy is started, then 200 listing them (`proxies`: name, kind, mode,
 * endpoint; `volumes`: the blob volumes' names, as earlier releases reported); `GET /live`
 * is 200 while the process runs. Loopback only: it is for the pod/container itself.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RunningProxy } from '../proxies/proxy.js';

export type ReadyProxy = Pick<RunningProxy, 'name' | 'kind' | 'mode' | 'endpoint'>;

export interface Health {
  readonly port: number;
  setReady(proxies: readonly ReadyProxy[]): void;
  setStopping(): void;
  close(): Promise<void>;
}

export async function startHealth(port: number): Promise<Health> {
  let state: { ready: boolean; stopping: boolean; proxies: ReadyProxy[] } = {
    ready: false,
    stopping: false,
    proxies: [],
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
      const { proxies } = state;
      const volumes = proxies.filter((p) => p.kind === 'blob-volume').map((p) => p.name);
      return send(ready ? 200 : 503, { ready, stopping: state.stopping, proxies, volumes });
    }
    send(404, { error: 'not found' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    setReady: (proxies) => {
      state = {
        ...state,
        ready: true,
        proxies: proxies.map(({ name, kind, mode, endpoint }) => ({ name, kind, mode, endpoint })),
      };
    },
    setStopping: () => {
      state = { ...state, stopping: true };
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
