/**
 * The egress decision API shared by the policy evaluator (policy/egress/) and the HTTP
 * proxy (proxies/http/). Pure types: the proxy asks two questions, in this order —
 *   1. `decideRequest`: does a rule allow method × host × port × path (before any DNS)?
 *   2. `decideAddress`: may the proxy dial this resolved address (every answer is checked,
 *      the proxy dials exactly the address that was checked)?
 * Both are total: they never throw on hostile input, they deny with a reason.
 */

export type Verdict = 'allow' | 'deny' | 'report';
export type RuleMode = 'secure' | 'trusted' | 'open';
export type PiiKind = 'card' | 'iban' | 'us-ssn' | 'email' | 'ip';

/** Address classes (IANA special-purpose registries, embeddings, platform endpoints, self). */
export type AddressClass =
  | 'public'
  | 'this-network'
  | 'loopback'
  | 'private'
  | 'shared-address-space'
  | 'link-local'
  | 'ietf-protocol-assignments'
  | 'documentation'
  | 'benchmarking'
  | 'reserved'
  | 'multicast'
  | 'broadcast'
  | 'unique-local'
  | 'site-local'
  | 'unspecified'
  | 'discard-only'
  | 'orchid'
  | 'cloud-metadata'
  | 'self';

export interface EgressRequest {
  readonly method: string;
  /** 'http' | 'https' as the app asked (CONNECT targets are 'https' unless the port says otherwise). */
  readonly scheme: 'http' | 'https';
  /** As the app wrote it; normalised by the evaluator (case, trailing dot, IDNA, brackets, IPv4 literal forms). */
  readonly host: string;
  readonly port: number;
  /** Path without query; undefined for CONNECT before the tunnel is opened. */
  readonly path?: string;
}

export interface InspectSettings {
  readonly pii: readonly PiiKind[];
  /** A JSON schema (already loaded, as an object) that JSON bodies must satisfy. */
  readonly schema?: Readonly<Record<string, unknown>>;
  readonly action: 'block' | 'report';
}

export interface TlsSettings {
  /** PEM text of the CA bundle to verify the upstream with (system roots when absent). */
  readonly ca?: string;
  /** Base64 SHA-256 digests of the upstream's SubjectPublicKeyInfo; any one must match. */
  readonly pins?: readonly string[];
}

export interface RequestDecision {
  readonly verdict: Verdict;
  /** 'allow[3]', 'deny[0]', 'default-deny', 'malformed-host', … */
  readonly rule: string;
  /** One sentence for the Membrane-Reason header and the decision log. */
  readonly reason: string;
  /** The normalised host (lower-case, no trailing dot, IDNA A-label, canonical IP text). */
  readonly host: string;
  /** Present when the host is an IP literal (in any accepted form). */
  readonly ip?: string;
  readonly mode: RuleMode;
  readonly tls?: TlsSettings;
  readonly inspect?: InspectSettings;
  /** Name of the DEK that seals bodies in secure mode. */
  readonly dek?: string;
}

export interface AddressDecision {
  readonly allowed: boolean;
  readonly ip: string;
  readonly class: AddressClass;
  readonly reason: string;
  /** What decided: 'address:public', 'address:loopback', 'allowAddresses[0]', 'deny[2]', 'address:self', … */
  readonly rule?: string;
}

export interface Endpoint4Self {
  readonly host: string;
  readonly port: number;
}
