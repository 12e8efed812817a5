/**
 * Mounts an open datasink at the given (possibly hostile) mountpoint, unmounts it and
 * lets the process end on its own: exiting at all shows no FUSE handle keeps the loop
 * alive. Usage: node dist/test/helpers/mount-cycle-child.js <storeDir> <mountpoint> <stagingDir>
 * Prints "mounted <mp>" then "unmounted" (or "unmount failed <code>").
 */
import { mountVolume } from '../../proxies/blob-volume/index.js';
import { FsStore } from '../../proxies/blob-volume/store/fs-store.js';

const [storeDir, mountpoint, stagingDir] = process.argv.slice(2);
if (!storeDir || !mountpoint || !stagingDir) {
  console.error('usage: mount-cycle-child <storeDir> <mountpoint> <stagingDir>');
  process.exit(2);
}
const volume = await mountVolume({
  name: 'cycle',
  mountpoint,
  stagingDir,
  store: new FsStore(storeDir),
  kind: 'datasink',
  protection: { mode: 'open', outputRules: { allow: ['**'] } },
});
process.stdout.write(`mounted ${volume.mountpoint}\n`);
try {
  await volume.unmount();
  process.stdout.write('unmounted\n');
} catch (e) {
  process.stdout.write(`unmount failed ${(e as { code?: string }).code}\n`);
  process.exitCode = 1;
}
