/**
 * `membrane audit verify [--file F | --spec S] [--head H] [--json]`: checks the hash chain
 * of a local audit log (runtime/audit.ts, docs/audit.md) and names the first bad record.
 */
import { dirname } from 'node:path';
import { MembraneError } from '../../policy/errors.js';
import { parseSpec, RUNTIME_DEFAULTS, resolveSpecPaths } from '../../policy/spec.js';
import { verifyAuditLog } from '../audit.js';
import { READ_CAPS, readCappedText } from '../read-capped.js';
import { parse } from './_args.js';

export const summary = "verify the local audit log's hash chain";

const help = `Usage: membrane audit verify [--file F | --spec cleanroom.yaml] [--head HASH] [--json]

Reads the whole audit log and checks every record: canonical JSON, consecutive sequence
numbers, each record's "prev" = SHA-256 of the previous line and its "hash" = SHA-256 of
its own content. Reports the first record that fails (edited, deleted, inserted, moved,
or a truncated last line) and, when intact, the number of records and the head hash.

A hash chain cannot show that whole records were cut from the END of the log; compare
the head hash with one recorded elsewhere (e.g. the last event forwarded to governance)
using --head.

Options:
  --file F       the audit log (default ${RUNTIME_DEFAULTS.auditLog})
  --spec S       take the audit log path from a clean-room spec (runtime.auditLog)
  --head HASH    also require the last record's hash to be HASH
  --json         print {"ok","file","records","firstBadRecord"?,"reason"?,"head"?}
  -h, --help     this help

Exit status: 0 when the chain is intact, 1 when it is not (or cannot be read), 2 on a
usage error.`;

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(help);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'verify') throw new MembraneError('USAGE', `unknown subcommand '${sub}'\n\n${help}`);
  const { values, help: shown } = parse(
    rest,
    {
      file: { type: 'string' },
      spec: { type: 'string' },
      head: { type: 'string' },
      json: { type: 'boolean' },
    },
    help,
  );
  if (shown) return 0;
  if (values.file && values.spec)
    throw new MembraneError('USAGE', `give --file or --spec, not both\n\n${help}`);
  if (values.head !== undefined && !/^[0-9a-f]{64}$/.test(values.head))
    throw new MembraneError('USAGE', `--head must be 64 lower-case hex characters\n\n${help}`);
  let file = values.file ?? RUNTIME_DEFAULTS.auditLog;
  if (values.spec) {
    let text: string;
    try {
      text = await readCappedText(values.spec, { maxBytes: READ_CAPS.document, what: 'clean-room spec' });
    } catch (e) {
      throw new MembraneError('SPEC_UNREADABLE', `cannot read the spec: ${(e as Error).message}`, {
        where: values.spec,
        cause: e,
      });
    }
    file = resolveSpecPaths(parseSpec(text, values.spec), dirname(values.spec)).runtime.auditLog;
  }

  const v = await verifyAuditLog(file);
  if (v.ok && values.head !== undefined && v.head !== values.head) {
    v.ok = false;
    v.reason =
      v.records === 0
        ? 'the log is empty but a head hash was expected'
        : `the last record (${v.records}) has hash ${v.head}, not the expected head: records were removed from the end, or added`;
  }
  if (values.json) {
    console.log(JSON.stringify({ file, ...v }));
  } else if (v.ok) {
    console.log(
      `${file}: audit chain intact, ${v.records} record${v.records === 1 ? '' : 's'}${v.head ? `; head ${v.head}` : ''}`,
    );
  } else if (v.firstBadRecord !== undefined) {
    console.error(
      `${file}: audit chain BROKEN at record ${v.firstBadRecord}: ${v.reason} (records 1-${v.firstBadRecord - 1} are intact)`,
    );
  } else {
    console.error(`${file}: audit chain does not match: ${v.reason}`);
  }
  return v.ok ? 0 : 1;
}
