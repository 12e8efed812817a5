/**
 * proxies/blob-volume public surface: mount a datasource (read-only, verified
 * plaintext view of sealed objects) or a datasink (write path that seals and
 * commits atomically) as a FUSE file system. See docs/blob-volume.md.
 */
export { errnoOf, VolumeErrorCode } from './errno.js';
export { type AuditEvent, type AuditSink, noopMetrics, VolumeEvent, type VolumeMetrics } from './hooks.js';
export { MANIFEST_NAME, manifestDigest, type PinnedManifest, parsePinnedManifest } from './manifest.js';
export { detach as detachMount } from './mountpoint.js';
export {
  PASSTHROUGH_PROTECTION,
  type PassthroughProtection,
  type Protection,
  type VolumeOptions,
} from './options.js';
export { compileGlob, type OutputRules, OutputRulesPolicy } from './output-rules.js';
export type { SinkProvenance } from './sink-manifest.js';
export { type MountedVolume, mountVolume } from './volume.js';
