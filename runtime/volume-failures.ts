/**
 * How `membrane up` names a volume that did not close cleanly (issue 12, defect 3):
 * files that could not be committed are lost outputs, distinct from a mount that
 * could not be detached. Either makes `membrane up` exit 1.
 */
import { isMembraneError } from '../policy/errors.js';

export function unmountFailureEvent(e: unknown): 'volume.commit_failed' | 'volume.unmount_failed' {
  return isMembraneError(e, 'VOLUME_COMMIT_FAILED') ? 'volume.commit_failed' : 'volume.unmount_failed';
}
