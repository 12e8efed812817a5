/**
 * The bench suites `membrane bench <suite>` knows. Each entry loads its module
 * lazily, so `membrane bench aead` never pays for what `volume` needs. To add a
 * suite: write bench/<name>.ts exporting `suite: BenchSuite`, and add a row here.
 */
import type { BenchSuite } from './types.js';

export interface SuiteEntry {
  summary: string;
  load(): Promise<BenchSuite>;
}

export const SUITES: Readonly<Record<string, SuiteEntry>> = {
  aead: {
    summary: 'AES-256-GCM object format: hot core vs @aws-crypto/client-node, node:crypto, openssl',
    load: async () => (await import('./aead.js')).suite,
  },
  volume: {
    summary: 'FUSE blob volume: sequential/random reads and writes vs the no-crypto ceiling and gocryptfs',
    load: async () => (await import('./volume.js')).suite,
  },
  egress: {
    summary:
      'HTTP egress proxy: keep-alive req/s, p50/p99, CONNECT MB/s vs direct and tinyproxy; decision cost, inspection',
    load: async () => (await import('./egress.js')).suite,
  },
};
