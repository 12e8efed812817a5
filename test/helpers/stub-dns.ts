/**
 * A stub DNS server on 127.0.0.1 (UDP): answers A queries from a function of the name
 * and how many A queries for it came before; AAAA and other types get an empty answer.
 * Enough of RFC 1035 for node:dns's Resolver, nothing more.
 */
import { createSocket } from 'node:dgram';

export interface StubDns {
  readonly server: string;
  readonly queries: Map<string, number>;
  close(): Promise<void>;
}

export async function startStubDns(answer: (name: string, n: number) => string[]): Promise<StubDns> {
  const sock = createSocket('udp4');
  const queries = new Map<string, number>();
  sock.on('message', (msg, rinfo) => {
    if (msg.length < 12) return;
    let i = 12;
    const labels: string[] = [];
    while (i < msg.length && msg[i] !== 0) {
      const len = msg[i] as number;
      labels.push(msg.subarray(i + 1, i + 1 + len).toString('ascii'));
      i += len + 1;
    }
    const qEnd = i + 5; // zero byte + QTYPE + QCLASS
    const qtype = msg.readUInt16BE(i + 1);
    const name = labels.join('.').toLowerCase();
    let ips: string[] = [];
    if (qtype === 1) {
      const n = queries.get(name) ?? 0;
      queries.set(name, n + 1);
      ips = answer(name, n);
    }
    const head = Buffer.alloc(12);
    head.writeUInt16BE(msg.readUInt16BE(0), 0); // id
    head.writeUInt16BE(0x8180, 2); // response, recursion desired + available, NOERROR
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(ips.length, 6);
    const answers = ips.map((ip) => {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0); // name: pointer to the question
      rr.writeUInt16BE(1, 2); // A
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(0, 6); // TTL 0: nothing may be cached
      rr.writeUInt16BE(4, 10);
      ip.split('.').forEach((o, k) => {
        rr[12 + k] = Number(o);
      });
      return rr;
    });
    sock.send(Buffer.concat([head, msg.subarray(12, qEnd), ...answers]), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  return {
    server: `127.0.0.1:${sock.address().port}`,
    queries,
    close: () => new Promise((resolve) => sock.close(() => resolve())),
  };
}
