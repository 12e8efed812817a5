/**
 * The clean-room spec: what `membrane up -f cleanroom.yaml` runs. A zod schema (pure, no
 * I/O), cross-field rules, and `parseSpec()` / `validateSpec()` for YAML or JSON text.
 * The operator-facing reference is docs/spec-reference.md; keep the two in step.
 *
 * Field names follow the Azure confidential clean room specification (Azure/azure-cleanroom,
 * `CleanRoomSpecification`) where it has the concept: `identities`, `datasources`,
 * `datasinks`, `governance`, `telemetry`; an access point's `name`, `store`, `identity`,
 * `protection`; an identity's `clientId` / `tenantId`; protection modes `secure` / `open`
 * (Azure's proxyMode values, lower-cased). Deliberate differences: Azure's access point
 * `path` is our `mount`; Azure's `applications[]` (containers) is our single `application`
 * (a process started with the mounts in place); `trusted` (seal to a recipient's RSA key)
 * and `keys` (KEKs and DEKs declared once and referenced by name, instead of Azure's
 * per-access-point `encryptionSecrets {dek, kek}`) are ours; `attestation` and `runtime`
 * have no Azure counterpart (the Azure sidecars take them from their environment).
 *
 * Validation is fail-closed: unknown fields are errors everywhere, every reference must
 * resolve, and modes that could let plaintext out need explicit opt-in. Every problem is
 * reported, each as `path.to.field: expected ..., got ...` (secret values are never echoed).
 *
 * Relative file paths are allowed and mean "relative to the spec file"; `resolveSpecPaths`
 * makes them absolute. Mount points must be absolute.
 */
import { isAbsolute, posix, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { MembraneError } from './errors.js';
import { compileGlob } from './glob.js';

export const SPEC_VERSION = '1';

// ------------------------------------------------------------------ field helpers

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const NAME_EXPECTED =
  'expected a name: 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit';

/** Names become file names (`<name>.<kind>.ready`) and audit subjects, hence the charset. */
const nameField = z.string().regex(NAME_RE, NAME_EXPECTED);

const pathField = z.string().superRefine((p, ctx) => {
  if (p.length === 0) ctx.addIssue({ code: 'custom', message: 'expected a non-empty path' });
  else if (p.includes('\0'))
    ctx.addIssue({ code: 'custom', message: 'expected a path without NUL characters' });
});

/**
 * Mount points and directories the runtime creates: absolute, normalised, not "/", and
 * spelled from a conservative character set (issue 12, defects 1 and 5). These paths
 * reach fusermount, /proc/self/mountinfo (which escapes whitespace) and operators'
 * shells; a control character, quote, "$", backtick or other shell syntax in them is
 * never needed and has been used for command injection at unmount.
 */
const hasControlChar = (p: string) =>
  Array.from(p).some((c) => {
    const n = c.codePointAt(0)!;
    return n < 0x20 || (n >= 0x7f && n <= 0x9f);
  });
const MOUNT_SEGMENT = /^[A-Za-z0-9._@+=,~%:-]+$/;
const absPath = z.string().superRefine((p, ctx) => {
  if (!p.startsWith('/'))
    ctx.addIssue({ code: 'custom', message: 'expected an absolute path (starting with "/")' });
  else if (hasControlChar(p))
    ctx.addIssue({ code: 'custom', message: 'expected a path without control characters' });
  else if (p === '/' || p.endsWith('/') || posix.normalize(p) !== p)
    ctx.addIssue({
      code: 'custom',
      message: 'expected a normalised absolute path other than "/" (no "//", ".", ".." or trailing "/")',
    });
  else if (
    !p
      .slice(1)
      .split('/')
      .every((seg) => MOUNT_SEGMENT.test(seg))
  )
    ctx.addIssue({
      code: 'custom',
      message:
        'expected path segments of letters, digits and . _ - @ + = , ~ % : only (no spaces, quotes or shell syntax)',
    });
  else if (p.length > 1024 || p.split('/').some((seg) => seg.length > 255))
    ctx.addIssue({ code: 'custom', message: 'expected at most 1024 bytes, 255 per segment' });
});

function urlField(opts: { noQuery?: string } = {}) {
  return z.string().superRefine((s, ctx) => {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'expected an http:// or https:// URL' });
      return;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      ctx.addIssue({ code: 'custom', message: 'expected an http:// or https:// URL' });
    else if (u.username || u.password)
      ctx.addIssue({
        code: 'custom',
        message: 'expected a URL without user:password (credentials go elsewhere)',
      });
    else if (opts.noQuery && u.search)
      ctx.addIssue({ code: 'custom', message: `expected a URL without a query string (${opts.noQuery})` });
  });
}
const httpUrl = urlField();

/** https://{vault}/keys/{name}[/{version}] — Key Vault's key identifier ("kid"). */
const akvKid = z.string().superRefine((s, ctx) => {
  let u: URL | undefined;
  try {
    u = new URL(s);
  } catch {
    /* reported below */
  }
  if (
    !u ||
    (u.protocol !== 'https:' && u.protocol !== 'http:') ||
    u.search ||
    !/^\/keys\/[0-9A-Za-z-]{1,127}(\/[0-9A-Za-z]+)?\/?$/.test(u.pathname)
  )
    ctx.addIssue({
      code: 'custom',
      message: 'expected a Key Vault key identifier https://<vault>/keys/<name>[/<version>]',
    });
});

const KBS_SEGMENT = '[A-Za-z0-9_-][A-Za-z0-9._-]*';
const kbsResource = z
  .string()
  .regex(
    new RegExp(`^${KBS_SEGMENT}/${KBS_SEGMENT}/${KBS_SEGMENT}$`),
    'expected a KBS resource path <repository>/<type>/<tag>',
  );

const hex64 = z
  .string()
  .regex(/^[0-9a-f]{64}$/, 'expected a SHA-256 digest: 64 lower-case hexadecimal characters');

/** Object-name patterns of open-mode output rules: relative, no "." or ".." segments; "*", "**", "?" wildcards. */
const globPattern = z.string().superRefine((g, ctx) => {
  if (
    g.length === 0 ||
    g.startsWith('/') ||
    g.split('/').some((s) => s === '..' || s === '.') ||
    g.includes('\0')
  )
    ctx.addIssue({
      code: 'custom',
      message: 'expected a relative object-name pattern (no leading "/", no "." or ".." segments)',
    });
  else {
    try {
      compileGlob(g);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: `expected a valid glob: ${(e as Error).message}` });
    }
  }
});

// ------------------------------------------------------------------ sections

const Attestation = z
  .object({
    provider: z.enum(['sev-snp', 'virtual']),
    maa: z.object({ endpoint: httpUrl }).strict().optional(),
    kbs: z.object({ url: httpUrl }).strict().optional(),
    allowInsecureVirtual: z.boolean().optional(),
    virtualPolicyFile: pathField.optional(),
    securityContextDir: pathField.optional(),
    ca: pathField.optional(),
  })
  .strict()
  .superRefine((a, ctx) => {
    if (a.provider === 'virtual') {
      if (a.allowInsecureVirtual !== true)
        ctx.addIssue({
          code: 'custom',
          path: ['allowInsecureVirtual'],
          message:
            'expected true: provider "virtual" produces unsigned evidence that proves nothing, so it must be acknowledged explicitly',
        });
      if (a.virtualPolicyFile === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['virtualPolicyFile'],
          message: 'expected a file with provider "virtual" (its SHA-256 becomes the report\'s host_data)',
        });
      if (a.securityContextDir !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['securityContextDir'],
          message:
            'expected absent with provider "virtual" (a security context belongs to real SEV-SNP hardware)',
        });
    } else {
      if (a.allowInsecureVirtual === true)
        ctx.addIssue({
          code: 'custom',
          path: ['allowInsecureVirtual'],
          message: 'expected false or absent with provider "sev-snp" (it only applies to provider "virtual")',
        });
      if (a.virtualPolicyFile !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['virtualPolicyFile'],
          message: 'expected absent with provider "sev-snp" (only the virtual provider uses a policy file)',
        });
    }
  });

const Identity = z
  .discriminatedUnion('kind', [
    z
      .object({
        name: nameField,
        kind: z.literal('managed-identity'),
        /** User-assigned identity; omit for the system-assigned one. */
        clientId: z.string().min(1).optional(),
        /** IMDS token endpoint override (tests, emulators). */
        endpoint: httpUrl.optional(),
      })
      .strict(),
    z
      .object({
        name: nameField,
        kind: z.literal('workload-identity'),
        // Each defaults to AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_FEDERATED_TOKEN_FILE / AZURE_AUTHORITY_HOST.
        clientId: z.string().min(1).optional(),
        tenantId: z.string().min(1).optional(),
        tokenFile: pathField.optional(),
        authorityHost: httpUrl.optional(),
      })
      .strict(),
    z
      .object({
        name: nameField,
        kind: z.literal('static-token'),
        token: z.string().min(1).optional(),
        tokenFile: pathField.optional(),
      })
      .strict(),
  ])
  .superRefine((i, ctx) => {
    if (i.kind === 'static-token' && (i.token === undefined) === (i.tokenFile === undefined))
      ctx.addIssue({
        code: 'custom',
        path: [i.token === undefined ? 'tokenFile' : 'token'],
        message: 'expected exactly one of token or tokenFile for kind "static-token"',
      });
  });

const Kek = z.discriminatedUnion('broker', [
  z
    .object({
      name: nameField,
      broker: z.literal('azure-akv'),
      kid: akvKid,
      /** Identity whose bearer token authorises the release call; absent = no Authorization (emulator). */
      identity: nameField.optional(),
    })
    .strict(),
  z.object({ name: nameField, broker: z.literal('kbs'), resource: kbsResource }).strict(),
  z.object({ name: nameField, broker: z.literal('local'), file: pathField }).strict(),
]);

const DekSource = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('file'), path: pathField }).strict(),
  z
    .object({
      kind: z.literal('akv-secret'),
      vault: httpUrl,
      secret: z
        .string()
        .regex(/^[0-9A-Za-z-]{1,127}$/, 'expected a Key Vault secret name (1-127 letters, digits, "-")'),
      version: z
        .string()
        .regex(/^[0-9A-Za-z]+$/, 'expected an alphanumeric Key Vault secret version')
        .optional(),
      /** Whose token reads the secret (Key Vault always needs one). */
      identity: nameField,
    })
    .strict(),
  z.object({ kind: z.literal('wrapped-file'), path: pathField }).strict(),
]);

const Dek = z
  .object({ name: nameField, source: DekSource, wrappedBy: nameField.optional() })
  .strict()
  .superRefine((d, ctx) => {
    if (d.source.kind === 'file' && d.wrappedBy !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['wrappedBy'],
        message:
          'expected absent for source kind "file" (a raw key file is not wrapped; use kind "wrapped-file")',
      });
    if (d.source.kind === 'wrapped-file' && d.wrappedBy === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['wrappedBy'],
        message: 'expected the name of the KEK that wraps this DEK (source kind "wrapped-file")',
      });
    // A raw DEK in a Key Vault secret would reach any identity allowed to read secrets,
    // with no attestation: only wrapped DEKs are accepted from a vault (as Azure stores them).
    if (d.source.kind === 'akv-secret' && d.wrappedBy === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['wrappedBy'],
        message:
          'expected the name of the KEK that wraps this DEK (a Key Vault secret must hold a wrapped DEK, which only an attested clean room can unwrap)',
      });
  });

const Keys = z
  .object({ keks: z.array(Kek).default([]), deks: z.array(Dek).default([]) })
  .strict()
  .default({});

const Store = z
  .discriminatedUnion('type', [
    z.object({ type: z.literal('fs'), path: pathField }).strict(),
    z
      .object({
        type: z.literal('azure-blob'),
        url: urlField({ noQuery: 'put a SAS token in store.sas or store.sasFile' }),
        container: z
          .string()
          .regex(
            /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/,
            'expected an Azure container name: 3-63 lower-case letters, digits and single "-"',
          ),
        prefix: z
          .string()
          .superRefine((p, ctx) => {
            if (p.startsWith('/') || p.split('/').some((s) => s === '..' || s === '.'))
              ctx.addIssue({
                code: 'custom',
                message: 'expected a relative blob-name prefix (no leading "/", no "." or ".." segments)',
              });
          })
          .optional(),
        identity: nameField.optional(),
        sas: z.string().min(1).optional(),
        sasFile: pathField.optional(),
        sharedKey: z
          .object({
            account: z.string().regex(/^[a-z0-9]{3,24}$/, 'expected a storage account name (3-24 a-z, 0-9)'),
            key: z.string().min(1).optional(),
            keyFile: pathField.optional(),
          })
          .strict()
          .optional(),
      })
      .strict(),
  ])
  .superRefine((s, ctx) => {
    if (s.type !== 'azure-blob') return;
    const auths = (['identity', 'sas', 'sasFile', 'sharedKey'] as const).filter((k) => s[k] !== undefined);
    if (auths.length > 1)
      ctx.addIssue({
        code: 'custom',
        path: [auths[1]!],
        message: `expected at most one of identity, sas, sasFile, sharedKey (also set: ${auths[0]})`,
      });
    if (s.sharedKey && (s.sharedKey.key === undefined) === (s.sharedKey.keyFile === undefined))
      ctx.addIssue({
        code: 'custom',
        path: ['sharedKey', s.sharedKey.key === undefined ? 'keyFile' : 'key'],
        message: 'expected exactly one of key or keyFile',
      });
  });

const OutputRules = z
  .object({
    allow: z.array(globPattern).min(1).optional(),
    maxObjectBytes: z.number().int().positive().optional(),
  })
  .strict();

const protectionFields = {
  mode: z.enum(['secure', 'trusted', 'open']),
  key: nameField.optional(),
  recipientPublicKey: pathField.optional(),
  outputRules: OutputRules.optional(),
  pinnedManifestDigest: hex64.optional(),
};

type ProtectionShape = {
  mode: 'secure' | 'trusted' | 'open';
  key?: string;
  recipientPublicKey?: string;
  outputRules?: unknown;
  pinnedManifestDigest?: string;
};

function absent(ctx: z.RefinementCtx, p: ProtectionShape, field: keyof ProtectionShape, why: string): void {
  if (p[field] !== undefined)
    ctx.addIssue({ code: 'custom', path: [field], message: `expected absent ${why}` });
}

/**
 * A datasource is publisher data the clean room reads: it must be authenticated and is
 * decrypted with a DEK, so the only mode is `secure`. (`trusted` seals to someone else's
 * public key — the clean room could not read it; `open` would be unauthenticated input.)
 */
const SourceProtection = z
  .object(protectionFields)
  .strict()
  .superRefine((p, ctx) => {
    if (p.mode !== 'secure') {
      ctx.addIssue({
        code: 'custom',
        path: ['mode'],
        message:
          'expected "secure" for a datasource (it is read with its DEK; "trusted" and "open" apply to datasinks only)',
      });
      return;
    }
    if (p.key === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['key'],
        message: 'expected the name of a DEK declared in keys.deks',
      });
    absent(ctx, p, 'recipientPublicKey', 'for a datasource (recipients apply to trusted-mode datasinks)');
    absent(ctx, p, 'outputRules', 'for a datasource (output rules apply to open-mode datasinks)');
  });

/**
 * A datasink is what the application writes. secure: sealed with the sink's DEK; trusted:
 * sealed to the recipient's RSA public key (only its holder can read it, not even the clean
 * room); open: plaintext, allowed only for object names listed in outputRules.allow.
 */
const SinkProtection = z
  .object(protectionFields)
  .strict()
  .superRefine((p, ctx) => {
    absent(
      ctx,
      p,
      'pinnedManifestDigest',
      'for a datasink (a pinned manifest authenticates datasource objects)',
    );
    if (p.mode === 'secure') {
      if (p.key === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['key'],
          message: 'expected the name of a DEK declared in keys.deks',
        });
      absent(ctx, p, 'recipientPublicKey', 'with mode "secure" (the sink is sealed with its DEK)');
      absent(ctx, p, 'outputRules', 'with mode "secure" (output rules apply to mode "open")');
    } else if (p.mode === 'trusted') {
      if (p.recipientPublicKey === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['recipientPublicKey'],
          message: 'expected the recipient\'s RSA public key file (PEM) for mode "trusted"',
        });
      absent(ctx, p, 'key', 'with mode "trusted" (the sink is sealed to recipientPublicKey, not a DEK)');
      absent(ctx, p, 'outputRules', 'with mode "trusted" (output rules apply to mode "open")');
    } else {
      absent(ctx, p, 'key', 'with mode "open" (open sinks are not encrypted)');
      absent(ctx, p, 'recipientPublicKey', 'with mode "open" (open sinks are not encrypted)');
      if (p.outputRules?.allow === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['outputRules', 'allow'],
          message:
            'expected a list of object-name patterns for mode "open" (plaintext leaves the clean room only under names listed here)',
        });
    }
  });

const DataSource = z
  .object({ name: nameField, store: Store, protection: SourceProtection, mount: absPath })
  .strict();
const DataSink = z
  .object({ name: nameField, store: Store, protection: SinkProtection, mount: absPath })
  .strict();

const Governance = z
  .object({
    consent: z.object({ url: httpUrl }).strict().optional(),
    audit: z
      .object({
        url: httpUrl,
        /** `id` query parameter of PUT /events (the event stream); default chosen by the runtime (the spec's name). */
        id: z
          .string()
          .regex(/^[A-Za-z0-9._-]{1,128}$/, 'expected 1-128 letters, digits, ".", "_" or "-"')
          .optional(),
        scope: z
          .string()
          .regex(/^[A-Za-z0-9._-]{1,128}$/, 'expected 1-128 letters, digits, ".", "_" or "-"')
          .optional(),
      })
      .strict()
      .optional(),
    ca: pathField.optional(),
  })
  .strict();

const Telemetry = z
  .object({
    enabled: z.boolean().default(false),
    exporter: z.enum(['otlp', 'file']).optional(),
    /** OTLP/HTTP base URL; /v1/traces and /v1/metrics are appended. */
    endpoint: httpUrl.optional(),
    file: pathField.optional(),
    serviceName: z.string().min(1).default('membrane'),
    exportIntervalMs: z.number().int().min(100).max(600_000).default(5000),
  })
  .strict()
  .superRefine((t, ctx) => {
    if (t.enabled && t.exporter === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['exporter'],
        message: 'expected "otlp" or "file" when telemetry is enabled',
      });
    if (t.exporter === 'otlp') {
      if (t.endpoint === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['endpoint'],
          message: 'expected the OTLP/HTTP endpoint URL for exporter "otlp"',
        });
      if (t.file !== undefined)
        ctx.addIssue({ code: 'custom', path: ['file'], message: 'expected absent with exporter "otlp"' });
    } else if (t.exporter === 'file') {
      if (t.file === undefined)
        ctx.addIssue({ code: 'custom', path: ['file'], message: 'expected a file path for exporter "file"' });
      if (t.endpoint !== undefined)
        ctx.addIssue({ code: 'custom', path: ['endpoint'], message: 'expected absent with exporter "file"' });
    }
  });

const Application = z
  .object({
    command: z.array(z.string().min(1)).min(1).optional(),
    env: z
      .record(
        z
          .string()
          .regex(
            /^[A-Za-z_][A-Za-z0-9_]*$/,
            'expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)',
          ),
        z.string(),
      )
      .optional(),
  })
  .strict();

export const RUNTIME_DEFAULTS = {
  statusDir: '/run/membrane',
  healthPort: 8290,
  auditLog: '/var/lib/membrane/audit.log',
} as const;

const Runtime = z
  .object({
    statusDir: absPath.default(RUNTIME_DEFAULTS.statusDir),
    /** 0 lets the OS choose a free port. */
    healthPort: z.number().int().min(0).max(65535).default(RUNTIME_DEFAULTS.healthPort),
    auditLog: pathField.default(RUNTIME_DEFAULTS.auditLog),
  })
  .strict()
  .default({});

const CleanRoomSpecBase = z
  .object({
    version: z.preprocess((v) => (v === 1 ? SPEC_VERSION : v), z.literal(SPEC_VERSION)),
    name: nameField.optional(),
    attestation: Attestation,
    identities: z.array(Identity).default([]),
    keys: Keys,
    datasources: z.array(DataSource).default([]),
    datasinks: z.array(DataSink).default([]),
    governance: Governance.optional(),
    telemetry: Telemetry.optional(),
    application: Application.optional(),
    runtime: Runtime,
  })
  .strict();

export const CleanRoomSpec = CleanRoomSpecBase.superRefine((spec, ctx) => {
  for (const i of crossCheck(spec)) ctx.addIssue({ code: 'custom', path: i.path, message: i.message });
});
export type CleanRoomSpec = z.output<typeof CleanRoomSpec>;
export type CleanRoomSpecInput = z.input<typeof CleanRoomSpec>;
export type AttestationSpec = CleanRoomSpec['attestation'];
export type IdentitySpec = CleanRoomSpec['identities'][number];
export type KekSpec = CleanRoomSpec['keys']['keks'][number];
export type DekSpec = CleanRoomSpec['keys']['deks'][number];
export type StoreSpec = CleanRoomSpec['datasources'][number]['store'];
export type DataSourceSpec = CleanRoomSpec['datasources'][number];
export type DataSinkSpec = CleanRoomSpec['datasinks'][number];
export type ProtectionSpec = DataSinkSpec['protection'];
export type GovernanceSpec = NonNullable<CleanRoomSpec['governance']>;
export type TelemetrySpec = NonNullable<CleanRoomSpec['telemetry']>;
export type ApplicationSpec = NonNullable<CleanRoomSpec['application']>;
export type RuntimeSpec = CleanRoomSpec['runtime'];

// ------------------------------------------------------------------ cross-field rules

type Path = Array<string | number>;
interface RawIssue {
  path: Path;
  message: string;
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/**
 * Rules that span sections: unique names and mounts, references that must resolve, and
 * services a key broker needs. Written defensively over `unknown` so that parseSpec can
 * run it on raw input too and report these problems alongside structural ones.
 */
function crossCheck(input: unknown): RawIssue[] {
  const issues: RawIssue[] = [];
  if (!isObj(input)) return issues;

  const unique = (list: unknown[], base: Path, what: string, seen = new Map<string, string>()) => {
    list.forEach((item, i) => {
      const name = isObj(item) ? str(item.name) : undefined;
      if (name === undefined) return;
      const here = fmtPath([...base, i]);
      const first = seen.get(name);
      if (first !== undefined)
        issues.push({
          path: [...base, i, 'name'],
          message: `expected a unique ${what} name ("${name}" is also used by ${first})`,
        });
      else seen.set(name, here);
    });
    return seen;
  };

  const identities = arr(input.identities);
  const keys = isObj(input.keys) ? input.keys : {};
  const keks = arr(keys.keks);
  const deks = arr(keys.deks);
  const sources = arr(input.datasources);
  const sinks = arr(input.datasinks);

  const identityNames = unique(identities, ['identities'], 'identity');
  const kekNames = unique(keks, ['keys', 'keks'], 'KEK');
  const dekNames = unique(deks, ['keys', 'deks'], 'DEK');
  // One namespace for volumes: each gets a `<name>.blob-volume.ready` marker.
  const volumeNames = unique(sources, ['datasources'], 'volume');
  unique(sinks, ['datasinks'], 'volume (datasources and datasinks share one namespace)', volumeNames);

  const mustRef = (value: unknown, names: Map<string, string>, path: Path, what: string, where: string) => {
    const v = str(value);
    if (v !== undefined && NAME_RE.test(v) && !names.has(v)) {
      const known = [...names.keys()];
      issues.push({
        path,
        message: `expected the name of ${what} declared in ${where} (${known.length ? `declared: ${known.join(', ')}` : 'none declared'})`,
      });
    }
  };

  const attestation = isObj(input.attestation) ? input.attestation : {};
  let needMaa: Path | undefined;
  let needKbs: Path | undefined;
  keks.forEach((k, i) => {
    if (!isObj(k)) return;
    mustRef(k.identity, identityNames, ['keys', 'keks', i, 'identity'], 'an identity', 'identities');
    if (k.broker === 'azure-akv') needMaa ??= ['keys', 'keks', i];
    if (k.broker === 'kbs') needKbs ??= ['keys', 'keks', i];
  });
  if (needMaa && attestation.maa === undefined)
    issues.push({
      path: ['attestation', 'maa'],
      message: `expected an MAA endpoint ({endpoint: URL}) because ${fmtPath(needMaa)} uses broker "azure-akv" (Key Vault releases keys against an MAA token)`,
    });
  if (needKbs && attestation.kbs === undefined)
    issues.push({
      path: ['attestation', 'kbs'],
      message: `expected a KBS ({url: URL}) because ${fmtPath(needKbs)} uses broker "kbs"`,
    });

  deks.forEach((d, i) => {
    if (!isObj(d)) return;
    mustRef(d.wrappedBy, kekNames, ['keys', 'deks', i, 'wrappedBy'], 'a KEK', 'keys.keks');
    if (isObj(d.source))
      mustRef(
        d.source.identity,
        identityNames,
        ['keys', 'deks', i, 'source', 'identity'],
        'an identity',
        'identities',
      );
  });

  const mounts: Array<{ mount: string; path: Path }> = [];
  for (const [list, base] of [
    [sources, 'datasources'],
    [sinks, 'datasinks'],
  ] as const) {
    list.forEach((v, i) => {
      if (!isObj(v)) return;
      if (isObj(v.store))
        mustRef(v.store.identity, identityNames, [base, i, 'store', 'identity'], 'an identity', 'identities');
      if (isObj(v.protection))
        mustRef(v.protection.key, dekNames, [base, i, 'protection', 'key'], 'a DEK', 'keys.deks');
      const m = str(v.mount);
      if (m?.startsWith('/')) mounts.push({ mount: m, path: [base, i, 'mount'] });
    });
  }
  mounts.forEach((a, i) => {
    for (const b of mounts.slice(0, i)) {
      if (a.mount === b.mount)
        issues.push({
          path: a.path,
          message: `expected a unique mount point (also used by ${fmtPath(b.path)})`,
        });
      else if (inside(a.mount, b.mount) || inside(b.mount, a.mount))
        issues.push({
          path: a.path,
          message: `expected a mount point not nested with ${fmtPath(b.path)} ("${b.mount}")`,
        });
    }
  });

  // The runtime's own files must not be hidden under a FUSE mount.
  const runtime = isObj(input.runtime) ? input.runtime : {};
  for (const field of ['statusDir', 'auditLog'] as const) {
    const p = str(runtime[field]);
    if (p === undefined || !p.startsWith('/')) continue;
    const m = mounts.find((x) => p === x.mount || inside(p, x.mount));
    if (m)
      issues.push({
        path: ['runtime', field],
        message: `expected a path outside every volume mount (it is under ${fmtPath(m.path)} "${m.mount}")`,
      });
  }
  return issues;
}

const inside = (child: string, parent: string) =>
  child.startsWith(parent.endsWith('/') ? parent : `${parent}/`);

// ------------------------------------------------------------------ deprecated spellings

/**
 * Protection fields renamed compatibly: the old name is still accepted for one release,
 * with a warning. `egress` became `outputRules` because "egress" now names the network
 * proxy's rules (network.http.outbound); a volume's open-mode rules are about objects.
 */
const RENAMED_PROTECTION_FIELDS = [{ old: 'egress', now: 'outputRules' }] as const;

/**
 * A copy of the raw input with deprecated field names replaced by their new ones, one
 * warning per replacement, and an issue where both spellings are given (ambiguous).
 */
function migrateDeprecated(raw: unknown): { value: unknown; warnings: RawIssue[]; issues: RawIssue[] } {
  const warnings: RawIssue[] = [];
  const issues: RawIssue[] = [];
  if (!isObj(raw)) return { value: raw, warnings, issues };
  const value = structuredClone(raw);
  for (const list of ['datasources', 'datasinks'] as const) {
    arr(value[list]).forEach((v, i) => {
      if (!isObj(v) || !isObj(v.protection)) return;
      const p = v.protection;
      for (const { old, now } of RENAMED_PROTECTION_FIELDS) {
        if (!Object.hasOwn(p, old)) continue;
        const path = [list, i, 'protection', old];
        if (Object.hasOwn(p, now))
          issues.push({ path, message: `expected only ${now} (${old} is its deprecated name), got both` });
        else {
          p[now] = p[old];
          warnings.push({ path, message: `deprecated: renamed to ${now} (accepted for one release)` });
        }
        delete p[old];
      }
    });
  }
  return { value, warnings, issues };
}

// ------------------------------------------------------------------ parsing and messages

export interface SpecIssue {
  /** e.g. `datasinks[0].protection.key`; `(root)` for the document itself. */
  path: string;
  /** `expected ..., got ...` */
  message: string;
  /** 1-based line in the source text, when known. */
  line?: number;
}

/** `warnings`: deprecated spellings that were accepted (printed by `spec validate` and `up`). */
export type SpecValidation =
  | { ok: true; spec: CleanRoomSpec; issues: []; warnings: SpecIssue[] }
  | { ok: false; issues: SpecIssue[]; warnings: SpecIssue[] };

export function fmtPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'string' && /^[A-Za-z_$][\w$]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out || '(root)';
}

function at(root: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let cur = root;
  for (const seg of path) {
    if (Array.isArray(cur) && typeof seg === 'number') cur = cur[seg];
    else if (isObj(cur) && typeof seg === 'string') cur = Object.hasOwn(cur, seg) ? cur[seg] : undefined;
    else return undefined;
  }
  return cur;
}

/** Fields whose values are secrets: never echoed back in a message. */
function isSecretPath(path: ReadonlyArray<PropertyKey>): boolean {
  const last = path[path.length - 1];
  return last === 'token' || last === 'sas' || (last === 'key' && path[path.length - 2] === 'sharedKey');
}

function describe(v: unknown, path: ReadonlyArray<PropertyKey>): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') {
    if (isSecretPath(path)) return 'a string (value not shown)';
    // A URL's query may carry a SAS signature: show only what precedes it.
    const q = /^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? v.indexOf('?') : -1;
    const s = q >= 0 ? `${JSON.stringify(v.slice(0, q))} with a query (not shown)` : JSON.stringify(v);
    return s.length > 70 ? `${s.slice(0, 66)}..."` : s;
  }
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return v.length === 0 ? 'an empty list' : `a list of ${v.length}`;
  if (isObj(v)) return 'a mapping';
  return typeof v;
}

const TYPE_WORDS: Record<string, string> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
  integer: 'an integer',
};

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
  return d[a.length]![b.length]!;
}

function suggestion(got: unknown, options: readonly string[]): string {
  if (typeof got !== 'string') return '';
  const best = options
    .map((o) => ({ o, d: editDistance(got.toLowerCase(), o.toLowerCase()) }))
    .sort((x, y) => x.d - y.d)[0];
  return best && best.d <= Math.max(1, Math.floor(best.o.length / 4)) ? ` (did you mean "${best.o}"?)` : '';
}

/** The keys a strict object accepts at `path` (following unions by the raw discriminator). */
function allowedKeysAt(path: ReadonlyArray<PropertyKey>, raw: unknown): string[] {
  const unwrap = (t: z.ZodTypeAny, value: unknown): z.ZodTypeAny => {
    for (;;) {
      if (t instanceof z.ZodEffects) t = t.innerType();
      else if (t instanceof z.ZodDefault) t = t._def.innerType;
      else if (t instanceof z.ZodOptional || t instanceof z.ZodNullable) t = t.unwrap();
      else if (t instanceof z.ZodDiscriminatedUnion) {
        const d = isObj(value) ? value[t.discriminator] : undefined;
        const opt = t.optionsMap.get(d as string);
        if (!opt) return t;
        t = opt;
      } else return t;
    }
  };
  let t: z.ZodTypeAny = CleanRoomSpecBase;
  let value: unknown = raw;
  for (const seg of path) {
    t = unwrap(t, value);
    if (t instanceof z.ZodObject && typeof seg === 'string') t = t.shape[seg];
    else if (t instanceof z.ZodArray) t = t.element;
    else if (t instanceof z.ZodRecord) t = t.valueSchema;
    else return [];
    if (!t) return [];
    value = Array.isArray(value) || isObj(value) ? at(value, [seg]) : undefined;
  }
  t = unwrap(t, value);
  return t instanceof z.ZodObject ? Object.keys(t.shape) : [];
}

function issueText(issue: z.ZodIssue, raw: unknown): RawIssue[] {
  const got = at(raw, issue.path);
  const gotText = describe(got, issue.path);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = allowedKeysAt(issue.path, raw);
      return issue.keys.map((k) => ({
        path: [...issue.path, k],
        message: `unknown field${suggestion(k, allowed)}; expected one of: ${allowed.join(', ')}`,
      }));
    }
    case 'invalid_type': {
      if (issue.received === 'undefined')
        return [
          {
            path: issue.path,
            message: `expected ${TYPE_WORDS[issue.expected] ?? issue.expected} (required), got nothing`,
          },
        ];
      return [
        {
          path: issue.path,
          message: `expected ${TYPE_WORDS[issue.expected] ?? issue.expected}, got ${gotText}`,
        },
      ];
    }
    case 'invalid_literal':
      return [{ path: issue.path, message: `expected ${JSON.stringify(issue.expected)}, got ${gotText}` }];
    case 'invalid_enum_value':
    case 'invalid_union_discriminator': {
      const options = issue.options.map(String);
      const missing = got === undefined ? ' (required)' : '';
      return [
        {
          path: issue.path,
          message: `expected one of ${options.map((o) => JSON.stringify(o)).join(' | ')}${missing}, got ${gotText}${suggestion(got, options)}`,
        },
      ];
    }
    case 'too_small': {
      const what =
        issue.type === 'array'
          ? `at least ${issue.minimum} item${Number(issue.minimum) === 1 ? '' : 's'}`
          : issue.type === 'string'
            ? Number(issue.minimum) === 1
              ? 'a non-empty string'
              : `a string of at least ${issue.minimum} characters`
            : `a number ${issue.inclusive ? '>=' : '>'} ${issue.minimum}`;
      return [{ path: issue.path, message: `expected ${what}, got ${gotText}` }];
    }
    case 'too_big': {
      const what =
        issue.type === 'array'
          ? `at most ${issue.maximum} items`
          : issue.type === 'string'
            ? `a string of at most ${issue.maximum} characters`
            : `a number ${issue.inclusive ? '<=' : '<'} ${issue.maximum}`;
      return [{ path: issue.path, message: `expected ${what}, got ${gotText}` }];
    }
    default: {
      const msg = issue.message.startsWith('expected')
        ? issue.message
        : `expected a valid value (${issue.message})`;
      return [{ path: issue.path, message: msg.includes(', got ') ? msg : `${msg}, got ${gotText}` }];
    }
  }
}

/**
 * Validates spec text (YAML 1.2 or JSON — JSON is parsed by the YAML parser too, so
 * duplicate keys are errors in both). Never throws; lists every problem found.
 */
export function validateSpec(text: string, _fileName?: string): SpecValidation {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, merge: false, prettyErrors: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      issues: doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return {
          path: '(document)',
          message: `expected valid YAML or JSON: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
          ...(pos ? { line: pos.line } : {}),
        };
      }),
      warnings: [],
    };
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    return {
      ok: false,
      issues: [{ path: '(document)', message: `expected a plain YAML document: ${(e as Error).message}` }],
      warnings: [],
    };
  }
  const lineOf = (path: Path): number | undefined => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
      if (node?.range) return lineCounter.linePos(node.range[0]).line;
    }
    return undefined;
  };
  const located = (i: RawIssue): SpecIssue => {
    const line = lineOf(i.path);
    return { path: fmtPath(i.path), message: i.message, ...(line !== undefined ? { line } : {}) };
  };
  const migrated = migrateDeprecated(raw);
  const warnings = migrated.warnings.map(located);
  const input = migrated.value;
  const result = CleanRoomSpec.safeParse(input);
  if (result.success && migrated.issues.length === 0)
    return { ok: true, spec: result.data, issues: [], warnings };

  const rawIssues = [...migrated.issues];
  if (!result.success) {
    rawIssues.push(...result.error.issues.flatMap((i) => issueText(i, input)));
    // The cross-section rules run inside the schema only when everything else parsed; run
    // them on the raw input as well so one pass reports every problem.
    // (When the other problems are only refinements, zod ran them already: skip duplicates.)
    for (const i of crossCheck(input)) {
      const dup = rawIssues.some(
        (r) => fmtPath(r.path) === fmtPath(i.path) && r.message.startsWith(i.message),
      );
      if (!dup)
        rawIssues.push({ path: i.path, message: `${i.message}, got ${describe(at(input, i.path), i.path)}` });
    }
  }
  const issues = rawIssues.map(located);
  // Source order reads best; Array.prototype.sort is stable for equal lines.
  issues.sort((a, b) => (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER));
  return { ok: false, issues, warnings };
}

export function formatSpecIssues(issues: SpecIssue[]): string {
  return issues
    .map((i) => `  - ${i.path}: ${i.message}${i.line !== undefined ? ` [line ${i.line}]` : ''}`)
    .join('\n');
}

/**
 * Parses and validates a spec; throws MembraneError 'SPEC_INVALID' listing every issue
 * (one per line, `path: expected ..., got ...`). The error also carries `issues`.
 */
export function parseSpec(
  text: string,
  fileName?: string,
  opts: { onWarning?: (w: SpecIssue) => void } = {},
): CleanRoomSpec {
  const v = validateSpec(text, fileName);
  for (const w of v.warnings) opts.onWarning?.(w);
  if (v.ok) return v.spec;
  const n = v.issues.length;
  throw Object.assign(
    new MembraneError(
      'SPEC_INVALID',
      `clean-room spec${fileName ? ` ${fileName}` : ''} is invalid (${n} issue${n === 1 ? '' : 's'}):\n${formatSpecIssues(v.issues)}`,
    ),
    { issues: v.issues },
  );
}

/** The issues carried by a SPEC_INVALID error. */
export function specIssuesOf(e: unknown): SpecIssue[] | undefined {
  return e instanceof MembraneError && e.code === 'SPEC_INVALID'
    ? (e as MembraneError & { issues?: SpecIssue[] }).issues
    : undefined;
}

/**
 * Copy of `spec` with every relative file path made absolute against `baseDir` (the
 * directory of the spec file). Mount points are absolute already.
 */
export function resolveSpecPaths(spec: CleanRoomSpec, baseDir: string): CleanRoomSpec {
  const r = <T extends string | undefined>(p: T): T =>
    (p === undefined || isAbsolute(p) ? p : resolve(baseDir, p)) as T;
  const s: CleanRoomSpec = structuredClone(spec);
  const a = s.attestation;
  a.virtualPolicyFile = r(a.virtualPolicyFile);
  a.securityContextDir = r(a.securityContextDir);
  a.ca = r(a.ca);
  for (const i of s.identities) if (i.kind !== 'managed-identity') i.tokenFile = r(i.tokenFile);
  for (const k of s.keys.keks) if (k.broker === 'local') k.file = r(k.file);
  for (const d of s.keys.deks) if (d.source.kind !== 'akv-secret') d.source.path = r(d.source.path);
  for (const v of [...s.datasources, ...s.datasinks]) {
    if (v.store.type === 'fs') v.store.path = r(v.store.path);
    else {
      v.store.sasFile = r(v.store.sasFile);
      if (v.store.sharedKey) v.store.sharedKey.keyFile = r(v.store.sharedKey.keyFile);
    }
    v.protection.recipientPublicKey = r(v.protection.recipientPublicKey);
  }
  if (s.governance) s.governance.ca = r(s.governance.ca);
  if (s.telemetry) s.telemetry.file = r(s.telemetry.file);
  s.runtime.auditLog = r(s.runtime.auditLog);
  return s;
}
