/**
 * A process that mounts one secure datasink and holds it until it is killed
 * (the SIGKILL crash test). Usage:
 *   node dist/test/helpers/volume-child.js <storeDir> <mountpoint> <stagingDir> <dekHex>
 * Prints "ready <mountpoint>" once mounted; SIGTERM unmounts cleanly.
 */
import { mountVolume } from '../../proxies/blob-volume/index.js';
import { FsStore } from '../../proxies/blob-volume/store/fs-store.js';
import { dekKeyring } from '../../proxies/core/index.js';

const [storeDir, mountpoint, stagingDir, dekHex] = process.argv.slice(2);
if (!storeDir || !mountpoint || !stagingDir || !dekHex) {
  console.error('usage: volume-child <storeDir> <mountpoint> <stagingDir> <dekHex>');
  process.exit(2);
}
const volume = await mountVolume({
  name: 'crash-sink',
  mountpoint,
  stagingDir,
  store: new FsStore(storeDir),
  kind: 'datasink',
  protection: { mode: 'secure', keyring: dekKeyring(Buffer.from(dekHex, 'hex')) },
});
process.on('SIGTERM', () => {
  volume.unmount().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
process.stdout.write(`ready ${volume.mountpoint}\n`);
