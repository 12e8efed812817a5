/**
 * The upstreams of `membrane bench egress`, in a process of their own so that their CPU
 * is neither the load generator's nor the proxy's:
 *   - an HTTP/1.1 keep-alive server: GET answers a fixed body, POST reads the body and
 *     answers a short one (what an API does);
 *   - a TCP sink for CONNECT bulk: each connection sends an 8-byte big-endian length N,
 *     then N bytes; the sink answers one byte 'k' once it has them all. The client's clock
 *     stops on that byte, so the figure is end to end, through whatever is in between.
 * Both listen on 127.0.0.1, ephemeral ports, printed as one JSON line on stdout. The
 * process exits when its stdin closes (the bench ends or dies), so it never outlives it.
 */
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer as createTcpServer, type Socket } from 'node:net';

export interface UpstreamPorts {
  readonly http: number;
  readonly sink: number;
}

const responseBytes = Number(process.argv[2] ?? 1024);
const body = Buffer.alloc(responseBytes, 'x');
const posted = Buffer.from('{"ok":true}\n');

const http = createHttpServer({ keepAliveTimeout: 120_000, noDelay: true }, (req, res) => {
  if (req.method === 'POST' || req.method === 'PUT') {
    req.on('data', () => {});
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': posted.length });
      res.end(posted);
    });
    return;
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.end(body);
});
http.headersTimeout = 60_000;
http.requestTimeout = 0;

const sink = createTcpServer({ noDelay: true }, (s: Socket) => {
  let want = -1;
  let got = 0;
  let head = Buffer.alloc(0);
  s.on('data', (d: Buffer) => {
    if (want < 0) {
      head = Buffer.concat([head, d]);
      if (head.length < 8) return;
      want = Number(head.readBigUInt64BE(0));
      got = head.length - 8;
    } else got += d.length;
    if (got >= want) {
      want = Number.POSITIVE_INFINITY; // answer once
      s.end('k');
    }
  });
  s.on('error', () => {});
});

await Promise.all([
  new Promise<void>((ok) => http.listen(0, '127.0.0.1', ok)),
  new Promise<void>((ok) => sink.listen(0, '127.0.0.1', ok)),
]);
const ports: UpstreamPorts = {
  http: (http.address() as AddressInfo).port,
  sink: (sink.address() as AddressInfo).port,
};
process.stdout.write(`${JSON.stringify(ports)}\n`);
process.stdin.resume();
process.stdin.on('close', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
