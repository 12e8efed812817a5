/**
 * Client of the Azure clean-room governance sidecar (ccr-governance), the local HTTP
 * front of the consortium's governance service (CGS, on CCF). Two calls:
 *
 * - consent: `POST {url}/consentcheck/execution` (no body; the sidecar attaches the
 *   clean room's attestation itself). 200 `{"status":"enabled"}` means the contract is
 *   accepted and enabled; 200 `{"status":"disabled","reason":{"code","message"}}` means
 *   a member disabled it (or it was never accepted). Errors are OData-style
 *   `{"error":{"code","message"}}` with a 4xx/5xx status. Anything but "enabled" is a
 *   refusal: the clean room must not start (fail closed).
 * - audit: `PUT {url}/events?id={id}&scope={scope}` with a JSON object body. The sidecar
 *   signs the body with the clean room's attested key and appends it to the CCF ledger
 *   under the contract's event map (`id` names the event stream, `scope` a sub-map).
 *   Any 2xx is success.
 *
 * Shapes from the public Azure/azure-cleanroom sources (sidecar ConsentCheckController and
 * EventsController; CGS events endpoint). Transport is skr-client's `http`: undici,
 * per-attempt timeouts, bounded retries with backoff on 429/5xx/network errors.
 */
import { readFile } from 'node:fs/promises';
import { MembraneError } from '../policy/errors.js';
import type { GovernanceSpec } from '../policy/spec.js';
import { http } from '../skr-client/http.js';

export interface GovernanceClientOptions {
  /** Base URL of the sidecar for the consent check; absent = no consent check. */
  consentUrl?: string;
  /** Base URL of the sidecar for audit events; absent = events are not forwarded. */
  auditUrl?: string;
  /** `id` query parameter of PUT /events: the event stream. */
  auditId: string;
  /** `scope` query parameter of PUT /events. */
  auditScope?: string;
  /** Extra PEM trust anchors when the sidecar is reached over TLS. */
  ca?: string;
  /** Per attempt. Defaults: consent 10 s, events 5 s. */
  consentTimeoutMs?: number;
  eventTimeoutMs?: number;
  /** Retries after the first attempt (429/5xx/network). Defaults: consent 3, events 2. */
  consentRetries?: number;
  eventRetries?: number;
}

export interface ConsentResult {
  status: 'enabled';
}

/** `base` + relative `path`, keeping any path prefix of `base` (a sidecar behind a route). */
function endpoint(base: string, path: string, query?: Record<string, string | undefined>): string {
  const u = new URL(path, base.endsWith('/') ? base : `${base}/`);
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, v);
  return u.toString();
}

export class GovernanceClient {
  constructor(private readonly opts: GovernanceClientOptions) {}

  /** From the spec's `governance` section; `defaultId` names the event stream when `audit.id` is absent. */
  static async fromSpec(g: GovernanceSpec, defaultId: string): Promise<GovernanceClient> {
    let ca: string | undefined;
    if (g.ca) {
      try {
        ca = await readFile(g.ca, 'utf8');
      } catch (e) {
        throw new MembraneError('GOVERNANCE_CONFIG', 'cannot read the governance CA file', {
          where: g.ca,
          cause: e,
        });
      }
    }
    return new GovernanceClient({
      consentUrl: g.consent?.url,
      auditUrl: g.audit?.url,
      auditId: g.audit?.id ?? defaultId,
      auditScope: g.audit?.scope,
      ca,
    });
  }

  get consentConfigured(): boolean {
    return this.opts.consentUrl !== undefined;
  }

  get auditConfigured(): boolean {
    return this.opts.auditUrl !== undefined;
  }

  /**
   * Resolves when governance reports execution consent "enabled"; otherwise throws
   * CONSENT_DENIED (a definite "no", naming the status and the reason given) or
   * CONSENT_CHECK_FAILED (no usable answer). Without a consent URL it resolves at once.
   */
  async checkConsent(): Promise<ConsentResult | undefined> {
    if (!this.opts.consentUrl) return undefined;
    const url = endpoint(this.opts.consentUrl, 'consentcheck/execution');
    let body: unknown;
    try {
      const res = await http('clean-room governance consent check', url, {
        method: 'POST',
        headers: { accept: 'application/json' },
        timeoutMs: this.opts.consentTimeoutMs ?? 10_000,
        retries: this.opts.consentRetries ?? 3,
        ca: this.opts.ca,
        hint: 'check that the governance sidecar is running and the contract and clean-room policy are accepted',
      });
      body = res.json();
    } catch (e) {
      throw new MembraneError(
        'CONSENT_CHECK_FAILED',
        `execution consent could not be confirmed, so the clean room will not start: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const status =
      typeof body === 'object' && body !== null ? (body as { status?: unknown }).status : undefined;
    if (status === 'enabled') return { status: 'enabled' };
    if (typeof status !== 'string')
      throw new MembraneError(
        'CONSENT_CHECK_FAILED',
        'the governance consent check answered without a "status" — expected {"status":"enabled"}',
        { where: new URL(url).origin },
      );
    const reason = (body as { reason?: { code?: unknown; message?: unknown } }).reason;
    const why = [reason?.code, reason?.message].filter((x) => typeof x === 'string' && x).join(': ');
    throw Object.assign(
      new MembraneError(
        'CONSENT_DENIED',
        `governance refused execution consent: status "${status.slice(0, 40)}"${why ? ` (${why.slice(0, 300)})` : ''} — the clean room will not start`,
        { where: new URL(url).origin },
      ),
      { status, reasonCode: typeof reason?.code === 'string' ? reason.code : undefined },
    );
  }

  /**
   * PUT one event. Throws GOVERNANCE_EVENT_FAILED when the sidecar cannot be reached or
   * refuses it (after the bounded retries); the caller decides whether that matters.
   */
  async putEvent(event: Record<string, unknown>): Promise<void> {
    if (!this.opts.auditUrl) return;
    const url = endpoint(this.opts.auditUrl, 'events', {
      id: this.opts.auditId,
      scope: this.opts.auditScope,
    });
    try {
      await http('clean-room governance audit events', url, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(event),
        timeoutMs: this.opts.eventTimeoutMs ?? 5_000,
        retries: this.opts.eventRetries ?? 2,
        ca: this.opts.ca,
      });
    } catch (e) {
      throw new MembraneError(
        'GOVERNANCE_EVENT_FAILED',
        `audit event not accepted: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
  }
}
