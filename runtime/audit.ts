/**
 * The local audit log: append-only JSON lines, each record chained to the one before it
 * by SHA-256, so that editing, deleting, inserting or reordering records is detectable
 * (`membrane audit verify`). Optionally every record is also forwarded to the clean-room
 * governance service (best effort: failures are counted and reported, never fatal).
 *
 * Format (docs/audit.md is the reference):
 *   line(n)   = JCS(record(n))  (RFC 8785 canonical JSON, UTF-8)  followed by "\n"
 *   record(n) = { seq: n, time, type, subject?, details?, prev, hash }
 *   prev(1)   = 64 "0";  prev(n) = hex(SHA-256(line(n-1) without its "\n"))
 *   hash(n)   = hex(SHA-256(JCS(record(n) without "hash")))
 *
 * Writing: `emit()` is synchronous and never throws — it builds the record (so sequence
 * and chain follow emit order) and queues its line; one writer drains the queue in order
 * with a single appending write per batch (file opened O_APPEND, mode 0600) followed by
 * fdatasync. `flush()` waits for that; `close()` also drains forwarding.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import canonicalizeImport from 'canonicalize';
import { MembraneError } from '../policy/errors.js';

// The event and sink shapes are the proxy contract's (proxies may not import runtime; runtime may import proxies).
import type { AuditEvent, AuditSink } from '../proxies/proxy.js';

export type { AuditEvent, AuditSink };

export interface AuditRecord {
  seq: number;
  time: string;
  type: string;
  subject?: string;
  details?: Record<string, unknown>;
  prev: string;
  hash: string;
}

/** Where records are forwarded; structurally satisfied by GovernanceClient. */
export interface AuditForwarder {
  putEvent(event: Record<string, unknown>): Promise<void>;
}

export interface AuditLogOptions {
  governance?: AuditForwarder;
  /** Diagnostics (forwarding failures, dropped events). Default: stderr. Never receives event details. */
  log?: (line: string) => void;
  /** Clock, for tests. */
  now?: () => Date;
}

export interface AuditStats {
  written: number;
  dropped: number;
  forwarded: number;
  forwardFailures: number;
  writeError?: string;
}

export const GENESIS_PREV = '0'.repeat(64);
const FILE_MODE = 0o600;
/** Forwarding is best effort: beyond this many unsent records the oldest are given up (counted). */
const MAX_FORWARD_QUEUE = 10_000;
/** After this many consecutive forwarding failures, stop trying for a while instead of stalling close(). */
const BREAKER_FAILURES = 3;
const BREAKER_COOLDOWN_MS = 30_000;

type Canonicalize = (input: unknown) => string | undefined;
// canonicalize is CommonJS typed as an ES default export; accept either shape at runtime.
const jcs = ((canonicalizeImport as unknown as { default?: Canonicalize }).default ??
  canonicalizeImport) as unknown as Canonicalize;

const sha256hex = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

/** The record's own hash: over its canonical form without `hash`. */
export function recordHash(r: Omit<AuditRecord, 'hash'> | AuditRecord): string {
  const { hash: _omit, ...rest } = r as AuditRecord;
  return sha256hex(jcs(rest)!);
}

/** Plain JSON data only: drops undefined, turns Dates into strings; anything else unserialisable is replaced. */
function plainDetails(d: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (d === undefined) return undefined;
  try {
    const v = JSON.parse(JSON.stringify(d)) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return { unserializable: true };
  }
}

export class AuditLog implements AuditSink {
  private seq: number;
  private prevLineHash: string;
  private readonly pending: Array<{ seq: number; line: string }> = [];
  /** Highest seq known to be on disk. */
  private durableSeq: number;
  private writing: Promise<void> | undefined;
  private writeError: Error | undefined;
  private closed = false;
  private readonly forwardQueue: AuditRecord[] = [];
  private forwarding: Promise<void> | undefined;
  private consecutiveForwardFailures = 0;
  private breakerUntil = 0;
  private readonly counters = { written: 0, dropped: 0, forwarded: 0, forwardFailures: 0 };
  private readonly log: (line: string) => void;
  private readonly now: () => Date;

  private constructor(
    readonly file: string,
    private readonly fh: fsp.FileHandle,
    private readonly unlock: () => Promise<void>,
    head: { seq: number; lineHash: string },
    private readonly opts: AuditLogOptions,
  ) {
    this.seq = head.seq;
    this.durableSeq = head.seq;
    this.prevLineHash = head.lineHash;
    this.log = opts.log ?? ((l) => process.stderr.write(`membrane audit: ${l}\n`));
    this.now = opts.now ?? (() => new Date());
  }

  /**
   * Opens (creating, mode 0600) the log and continues its chain. The existing content is
   * verified first: a broken chain refuses to open (AUDIT_CHAIN_BROKEN) rather than append
   * to a log that can no longer be trusted. One exception, the expected result of a crash
   * during a write: an unterminated final line is cut off, and that fact is recorded as
   * the next record (`audit.torn_tail_discarded`, with the discarded bytes' SHA-256).
   */
  static async open(file: string, opts: AuditLogOptions = {}): Promise<AuditLog> {
    await fsp.mkdir(dirname(file), { recursive: true, mode: 0o700 });
    const unlock = await lockFile(file);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, 'a+', FILE_MODE);
    } catch (e) {
      await unlock();
      throw e;
    }
    try {
      const st = await fh.stat();
      if ((st.mode & 0o077) !== 0) await fh.chmod(FILE_MODE);
      const content = await fh.readFile();
      let torn: Buffer | undefined;
      let body = content;
      if (content.length > 0 && content[content.length - 1] !== 0x0a) {
        const cut = content.lastIndexOf(0x0a) + 1;
        torn = content.subarray(cut);
        body = content.subarray(0, cut);
      }
      const v = verifyBuffer(body);
      if (!v.ok)
        throw new MembraneError(
          'AUDIT_CHAIN_BROKEN',
          `the audit log's hash chain is broken at record ${v.firstBadRecord} (${v.reason}); refusing to append — inspect it with 'membrane audit verify --file ${file}' and move it aside`,
          { where: file },
        );
      if (torn) await fh.truncate(body.length);
      const log = new AuditLog(
        file,
        fh,
        unlock,
        { seq: v.records, lineHash: v.lastLineHash ?? GENESIS_PREV },
        opts,
      );
      if (torn)
        log.emit({
          type: 'audit.torn_tail_discarded',
          details: { bytes: torn.length, sha256: sha256hex(torn), afterRecord: v.records },
        });
      return log;
    } catch (e) {
      await fh.close().catch(() => {});
      await unlock();
      throw e;
    }
  }

  /** Queues one record. Synchronous; never throws (problems are counted and reported). */
  emit(e: AuditEvent): void {
    try {
      if (this.closed || this.writeError) {
        this.counters.dropped++;
        this.log(`event '${String(e?.type)}' dropped: the audit log is ${this.closed ? 'closed' : 'failed'}`);
        return;
      }
      const rec: Omit<AuditRecord, 'hash'> = {
        seq: this.seq + 1,
        time: this.now().toISOString(),
        type: typeof e.type === 'string' && e.type ? e.type : 'unknown',
        ...(typeof e.subject === 'string' ? { subject: e.subject } : {}),
        ...(e.details !== undefined ? { details: plainDetails(e.details) } : {}),
        prev: this.prevLineHash,
      };
      const full: AuditRecord = { ...rec, hash: recordHash(rec) };
      const line = jcs(full)!;
      this.seq = full.seq;
      this.prevLineHash = sha256hex(line);
      this.pending.push({ seq: full.seq, line: `${line}\n` });
      this.kickWriter();
      if (this.opts.governance) {
        if (this.forwardQueue.length >= MAX_FORWARD_QUEUE) {
          this.forwardQueue.shift();
          this.counters.forwardFailures++;
        }
        this.forwardQueue.push(full);
      }
    } catch (err) {
      this.counters.dropped++;
      try {
        this.log(`event dropped: ${(err as Error).message}`);
      } catch {
        /* never throw from emit */
      }
    }
  }

  /** Resolves when every record emitted so far is on disk (fdatasync'd); rejects if writing failed. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
    if (this.writeError)
      throw new MembraneError(
        'AUDIT_WRITE_FAILED',
        `the audit log could not be written: ${this.writeError.message}`,
        {
          where: this.file,
          cause: this.writeError,
        },
      );
  }

  /** Flushes, drains forwarding (bounded by the governance client's timeouts), closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      while (this.forwarding) await this.forwarding;
      await this.fh.close();
      await this.unlock();
      const s = this.stats();
      if (s.dropped || s.forwardFailures)
        this.log(
          `closed with ${s.dropped} dropped event(s) and ${s.forwardFailures} not forwarded to governance`,
        );
    }
  }

  stats(): AuditStats {
    return { ...this.counters, ...(this.writeError ? { writeError: this.writeError.message } : {}) };
  }

  private kickWriter(): void {
    if (this.writing) return;
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
    });
  }

  private async drain(): Promise<void> {
    while (this.pending.length > 0 && !this.writeError) {
      const batch = this.pending.splice(0, this.pending.length);
      const buf = Buffer.from(batch.map((b) => b.line).join(''), 'utf8');
      try {
        let off = 0;
        while (off < buf.length) {
          const { bytesWritten } = await this.fh.write(buf, off, buf.length - off);
          off += bytesWritten;
        }
        await this.fh.datasync();
        this.counters.written += batch.length;
        this.durableSeq = batch[batch.length - 1]!.seq;
      } catch (e) {
        // A failed append may leave a partial line: stop writing so nothing is chained after it.
        this.writeError = e as Error;
        this.counters.dropped += batch.length + this.pending.length;
        this.pending.length = 0;
        this.log(`writing the audit log failed (${(e as Error).message}); further events are dropped`);
        return;
      }
      // Forward only what is durable locally, in order.
      this.kickForwarder();
    }
  }

  private kickForwarder(): void {
    if (this.forwarding || !this.opts.governance) return;
    this.forwarding = this.forward().finally(() => {
      this.forwarding = undefined;
      if ((this.forwardQueue[0]?.seq ?? Number.POSITIVE_INFINITY) <= this.durableSeq) this.kickForwarder();
    });
  }

  private async forward(): Promise<void> {
    const gov = this.opts.governance!;
    while (this.forwardQueue.length > 0 && this.forwardQueue[0]!.seq <= this.durableSeq) {
      const rec = this.forwardQueue.shift()!;
      if (Date.now() < this.breakerUntil) {
        this.counters.forwardFailures++;
        continue;
      }
      try {
        await gov.putEvent({ source: 'membrane', ...rec });
        this.counters.forwarded++;
        this.consecutiveForwardFailures = 0;
      } catch (e) {
        this.counters.forwardFailures++;
        this.log(`record ${rec.seq} (${rec.type}) not forwarded to governance: ${(e as Error).message}`);
        if (++this.consecutiveForwardFailures >= BREAKER_FAILURES) {
          this.breakerUntil = Date.now() + BREAKER_COOLDOWN_MS;
          this.log(
            `governance unreachable ${this.consecutiveForwardFailures} times in a row; not forwarding for ${BREAKER_COOLDOWN_MS / 1000} s (the local log is complete)`,
          );
          this.consecutiveForwardFailures = 0;
        }
      }
    }
  }
}

/**
 * One writer per log: two runtimes appending to the same file would interleave two
 * chains. `<file>.lock` holds the owner's pid; a lock whose process is gone is stale
 * and taken over.
 */
async function lockFile(file: string): Promise<() => Promise<void>> {
  const lock = `${file}.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await fsp.writeFile(lock, `${process.pid}\n`, { flag: 'wx', mode: FILE_MODE });
      return async () => {
        await fsp.rm(lock, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number((await fsp.readFile(lock, 'utf8').catch(() => '')).trim());
      let alive = false;
      if (Number.isSafeInteger(pid) && pid > 0) {
        try {
          process.kill(pid, 0);
          alive = true;
        } catch (k) {
          alive = (k as NodeJS.ErrnoException).code === 'EPERM';
        }
      }
      if (alive)
        throw new MembraneError(
          'AUDIT_LOCKED',
          `the audit log is in use by process ${pid} (another membrane runtime?) — one runtime per audit log`,
          { where: file },
        );
      await fsp.rm(lock, { force: true });
    }
  }
  throw new MembraneError('AUDIT_LOCKED', 'could not take the audit log lock', { where: `${file}.lock` });
}

// ------------------------------------------------------------------ verification

export interface AuditVerification {
  ok: boolean;
  /** Records read (all of them when ok; those before the bad one otherwise). */
  records: number;
  /** 1-based record (= line) number of the first record that fails a check. */
  firstBadRecord?: number;
  reason?: string;
  /** `hash` of the last record when ok: anchor it elsewhere to detect truncation of whole records. */
  head?: string;
}

const RECORD_KEYS = new Set(['seq', 'time', 'type', 'subject', 'details', 'prev', 'hash']);

function checkShape(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not a JSON object';
  const r = v as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!RECORD_KEYS.has(k)) return `unexpected field "${k.slice(0, 40)}"`;
  if (!Number.isSafeInteger(r.seq)) return 'seq is not an integer';
  if (typeof r.time !== 'string' || Number.isNaN(Date.parse(r.time))) return 'time is not a timestamp';
  if (typeof r.type !== 'string') return 'type is not a string';
  if (r.subject !== undefined && typeof r.subject !== 'string') return 'subject is not a string';
  if (
    r.details !== undefined &&
    (typeof r.details !== 'object' || r.details === null || Array.isArray(r.details))
  )
    return 'details is not an object';
  if (typeof r.prev !== 'string' || !/^[0-9a-f]{64}$/.test(r.prev)) return 'prev is not a SHA-256 hex digest';
  if (typeof r.hash !== 'string' || !/^[0-9a-f]{64}$/.test(r.hash)) return 'hash is not a SHA-256 hex digest';
  return undefined;
}

function verifyBuffer(content: Buffer): AuditVerification & { lastLineHash?: string } {
  if (content.length === 0) return { ok: true, records: 0 };
  const text = content.toString('utf8');
  const lines = text.split('\n');
  const terminated = lines[lines.length - 1] === '';
  if (terminated) lines.pop();
  let prevLineHash = GENESIS_PREV;
  let head: string | undefined;
  const bad = (n: number, reason: string): AuditVerification => ({
    ok: false,
    records: n - 1,
    firstBadRecord: n,
    reason,
  });
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    const line = lines[i]!;
    if (!terminated && i === lines.length - 1)
      return bad(n, 'incomplete final line (no newline): truncated or torn write');
    if (line === '') return bad(n, 'empty line');
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      return bad(n, 'not valid JSON (edited or truncated)');
    }
    const shape = checkShape(rec);
    if (shape) return bad(n, shape);
    const r = rec as AuditRecord;
    if (jcs(r) !== line) return bad(n, 'not in canonical form (the line was edited)');
    if (r.seq !== n)
      return bad(
        n,
        `sequence number ${r.seq} where ${n} was expected (a record was deleted, inserted or moved)`,
      );
    if (r.prev !== prevLineHash)
      return bad(
        n,
        'prev does not match the hash of the previous line (a record before it was changed, removed or moved)',
      );
    if (recordHash(r) !== r.hash)
      return bad(n, "hash does not match the record's content (the record was edited)");
    prevLineHash = sha256hex(line);
    head = r.hash;
  }
  return { ok: true, records: lines.length, head, lastLineHash: prevLineHash };
}

/** Checks the whole chain of an audit log file; reports the first record that fails. */
export async function verifyAuditLog(file: string): Promise<AuditVerification> {
  let content: Buffer;
  try {
    content = await fsp.readFile(file);
  } catch (e) {
    throw new MembraneError('AUDIT_UNREADABLE', `cannot read the audit log: ${(e as Error).message}`, {
      where: file,
      cause: e,
    });
  }
  const { lastLineHash: _internal, ...result } = verifyBuffer(content);
  return result;
}
