/**
 * What a datasink does to a file's plaintext on its way to the store:
 *   secure  — sealed with the sink's DEK keyring (readable by clean rooms holding the DEK);
 *   trusted — sealed to the recipient's RSA public key (only the recipient reads it;
 *             this volume cannot read the committed object back);
 *   open    — plaintext, after the output rules allowed its name and size;
 *   plaintext-passthrough — plaintext, no rules: the benchmark ceiling only.
 * Sealed objects are bound to {datasource: sink name, path}.
 */
import { DEFAULT_FRAME_LENGTH, encryptIterable, type Keyring, type SealInfo } from '../core/index.js';

export interface Sealer {
  readonly encrypts: boolean;
  /** Stored bytes for the plaintext `source` of object `path`; fills `info` as it runs (sealed modes). */
  seal(source: AsyncIterable<Buffer>, path: string, info: SealInfo): AsyncIterable<Uint8Array>;
}

export function keyringSealer(keyring: Keyring, sink: string, frameLength = DEFAULT_FRAME_LENGTH): Sealer {
  return {
    encrypts: true,
    seal: (source, path, info) =>
      encryptIterable(source, { keyring, binding: { datasource: sink, path }, frameLength }, info),
  };
}

export const plainSealer: Sealer = {
  encrypts: false,
  async *seal(source, _path, info) {
    let n = 0;
    for await (const chunk of source) {
      n += chunk.length;
      yield chunk;
    }
    info.plaintextBytes = n;
  },
};
