/**
 * SEV-SNP evidence through the kernel's configfs-tsm report interface
 * (Linux 6.7+, Documentation/ABI/testing/configfs-tsm): pure file I/O, no addon.
 *
 *   mkdir  <base>/<entry>            creates a report instance (we use one per request,
 *                                    which is how the ABI says to avoid collisions)
 *   read   provider                  must name the SEV guest driver ("sev_guest")
 *   read   generation                g0
 *   write  privlevel (optional)      the VMPL to report at
 *   write  inblob                    the 64 bytes of report_data
 *   read   outblob                   the raw 1184-byte report
 *   read   generation                must be g0 + number of our writes, else someone
 *                                    else wrote to the entry and outblob is not ours
 *   rmdir  <entry>
 */
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { MembraneError } from '../../policy/errors.js';
import type { LoadedCollateral } from './collateral.js';
import { checkReportData, finishSnpEvidence, type SnpEvidence } from './snp-evidence.js';
import type { EvidenceProvider } from './types.js';

export const TSM_REPORT_DIR = '/sys/kernel/config/tsm/report';

/** The file operations used; tests substitute a fake that mimics configfs. */
export interface TsmFs {
  mkdir(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  readFile(path: string): Promise<Buffer>;
  writeFile(path: string, data: Uint8Array | string): Promise<void>;
}

export const nodeTsmFs: TsmFs = {
  mkdir: async (p) => {
    await fsp.mkdir(p);
  },
  rmdir: (p) => fsp.rmdir(p),
  readFile: (p) => fsp.readFile(p),
  writeFile: (p, d) => fsp.writeFile(p, d),
};

export interface ConfigfsTsmOptions {
  baseDir?: string;
  /** VMPL to request (0..3); omitted = the kernel's default (privlevel_floor). */
  privlevel?: number;
  collateral: () => Promise<LoadedCollateral>;
  fs?: TsmFs;
}

function ioError(e: unknown, action: string, where: string): MembraneError {
  const code = (e as NodeJS.ErrnoException).code ?? '';
  const hint =
    code === 'EACCES' || code === 'EPERM'
      ? ' — configfs-tsm needs root (or write access to the report directory)'
      : code === 'ENOENT'
        ? ' — is configfs mounted (mount -t configfs none /sys/kernel/config) and the sev-guest driver loaded?'
        : code === 'ENXIO' || code === 'EIO'
          ? ' — the TSM provider failed to produce a report'
          : '';
  return new MembraneError(
    'EVIDENCE_FAILED',
    `configfs-tsm: ${action} failed (${code || (e as Error).message})${hint}`,
    {
      where,
      cause: e,
    },
  );
}

export class ConfigfsTsmProvider implements EvidenceProvider {
  readonly name = 'sev-snp' as const;
  readonly source = 'configfs-tsm';
  readonly baseDir: string;
  private readonly fs: TsmFs;

  constructor(private readonly opts: ConfigfsTsmOptions) {
    this.baseDir = opts.baseDir ?? TSM_REPORT_DIR;
    this.fs = opts.fs ?? nodeTsmFs;
    if (
      opts.privlevel !== undefined &&
      !(Number.isInteger(opts.privlevel) && opts.privlevel >= 0 && opts.privlevel <= 3)
    )
      throw new MembraneError(
        'EVIDENCE_INVALID_INPUT',
        `configfs-tsm: privlevel must be 0..3, got ${opts.privlevel}`,
      );
  }

  async getEvidence(reportData: Uint8Array): Promise<SnpEvidence> {
    const asked = checkReportData(reportData, 'configfs-tsm');
    const report = await this.generate(asked);
    return finishSnpEvidence('sev-snp', this.source, report, asked, this.opts.collateral);
  }

  /** One report via a private entry; the entry is always removed. */
  async generate(asked: Buffer): Promise<Buffer> {
    const entry = join(this.baseDir, `membrane-${process.pid}-${randomBytes(6).toString('hex')}`);
    const f = this.fs;
    try {
      await f.mkdir(entry);
    } catch (e) {
      throw ioError(e, 'creating a report entry', entry);
    }
    try {
      const readText = async (name: string) => {
        try {
          return (await f.readFile(join(entry, name))).toString('utf8').trim();
        } catch (e) {
          throw ioError(e, `reading ${name}`, join(entry, name));
        }
      };
      const provider = await readText('provider');
      // The SEV guest driver registers as "sev_guest"; the ABI doc's example says "sev-snp".
      if (!/^sev[-_]/.test(provider))
        throw new MembraneError(
          'EVIDENCE_UNSUPPORTED',
          `configfs-tsm provider is "${provider}", not the SEV-SNP guest driver (this is not an SEV-SNP guest)`,
          { where: join(entry, 'provider') },
        );
      const generation = async () => {
        const g = await readText('generation');
        if (!/^\d+$/.test(g))
          throw new MembraneError('EVIDENCE_FAILED', `configfs-tsm generation "${g}" is not a number`, {
            where: join(entry, 'generation'),
          });
        return Number(g);
      };
      const g0 = await generation();
      let writes = 0;
      const write = async (name: string, data: Uint8Array | string) => {
        try {
          await f.writeFile(join(entry, name), data);
          writes++;
        } catch (e) {
          throw ioError(e, `writing ${name}`, join(entry, name));
        }
      };
      if (this.opts.privlevel !== undefined) await write('privlevel', `${this.opts.privlevel}\n`);
      await write('inblob', asked);
      let out: Buffer;
      try {
        out = await f.readFile(join(entry, 'outblob'));
      } catch (e) {
        throw ioError(e, 'reading outblob', join(entry, 'outblob'));
      }
      const g1 = await generation();
      if (g1 !== g0 + writes)
        throw new MembraneError(
          'EVIDENCE_CONFLICT',
          `configfs-tsm entry was modified concurrently (generation ${g0} -> ${g1}, expected ${g0 + writes}); the report may not be ours`,
          { where: entry },
        );
      return out;
    } finally {
      try {
        await f.rmdir(entry);
      } catch {
        // Leaving an entry behind leaks a little kernel memory but is not a security issue.
      }
    }
  }
}
