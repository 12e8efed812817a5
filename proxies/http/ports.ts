/**
 * What the HTTP egress server needs from its neighbours, as small injected interfaces.
 *
 * The decisions (policy/egress), the PII scanner (policy/inspect) and the TLS/sealing
 * pieces (tls-ca.ts, upstream-tls.ts, seal.ts) are separate modules; the server only
 * sees these shapes, so tests drive it with fakes and `membrane up` / `membrane proxy
 * http` wire the real ones (see toolkit.ts). Name resolution and dialing are injected
 * too: tests answer with stub DNS and map documentation addresses onto loopback
 * listeners, so no test ever dials a non-loopback address.
 */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { SecureContext, TLSSocket } from 'node:tls';
import type {
  AddressDecision,
  EgressRequest,
  InspectSettings,
  PiiKind,
  RequestDecision,
  TlsSettings,
} from '../../policy/egress/types.js';
import type { Keyring } from '../core/index.js';
import type { OwnListener } from '../proxy.js';
import type { EgressLimits } from './limits.js';

/** A compiled egress policy, as the proxy asks it questions. */
export interface EgressEngine {
  /** SHA-256 of the canonical policy: every decision line names the policy it came from. */
  readonly digest: string;
  readonly limits: Partial<EgressLimits>;
  /** True when some rule needs the app's HTTPS terminated (trusted, secure, or inspected): the run CA is handed out. */
  readonly interceptsTls: boolean;
  decideRequest(req: EgressRequest): RequestDecision;
  decideAddress(ip: string, port: number, self: readonly OwnListener[]): AddressDecision;
}

export interface ResolvedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}
/** Every answer for a name (node:dns lookup with all: true, or a stub). */
export type Resolver = (host: string) => Promise<ResolvedAddress[]>;
/** Opens a TCP connection to exactly this address (tests map documentation addresses to loopback). */
export type Dialer = (ip: string, port: number) => Socket;

export interface Finding {
  readonly kind: PiiKind | string;
  readonly offset: number;
  readonly rule?: string;
}
export interface Inspector {
  push(chunk: Uint8Array): Finding | undefined;
  end(): Finding | undefined;
  /** Raw bytes [0, releasable) may leave: no open candidate starts before. Absent: hold back a fixed window. */
  readonly releasable?: number;
}
export type InspectorFactory = (settings: InspectSettings, contentType?: string) => Inspector;

export interface RunCa {
  readonly certPem: string;
  secureContextFor(host: string): SecureContext;
  destroy(): void;
}

export interface UpstreamTlsOptions {
  socket: Socket;
  servername: string;
  tls?: TlsSettings;
  timeoutMs: number;
}

export interface Sealer {
  sealBody(body: Readable, keyring: Keyring, context: Record<string, string>): Readable;
  openBody(body: Readable, keyring: Keyring, context: Record<string, string>): Readable;
  /** Both ends compute it from the request line; the direction keeps a request body from passing as a response. */
  bindingContext(
    req: { method: string; host: string; path: string },
    direction?: 'request' | 'response',
  ): Record<string, string>;
}

/** The TLS and sealing pieces (proxies/http/tls-ca.ts, upstream-tls.ts, seal.ts). */
export interface TlsToolkit extends Sealer {
  createRunCa(opts?: { name?: string }): Promise<RunCa>;
  connectUpstreamTls(opts: UpstreamTlsOptions): Promise<TLSSocket>;
}
