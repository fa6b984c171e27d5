// Drive tuf-js, an independent TUF client, for tufnotary's interoperability tests.
// usage: node client.mjs METADATA_DIR METADATA_BASE_URL TARGET_DIR TARGET_BASE_URL TARGET_PATH...
// METADATA_DIR must hold the trusted root.json. Prints one JSON line: {"targets": {path: info|null}}
// with info {length, hashes, downloaded}; any failure exits 1 with the error on stderr.
import { Updater } from 'tuf-js';

const [metadataDir, metadataBaseUrl, targetDir, targetBaseUrl, ...paths] = process.argv.slice(2);
const updater = new Updater({
  metadataDir,
  metadataBaseUrl,
  targetDir,
  targetBaseUrl,
  config: { prefixTargetsWithHash: false, fetchRetry: 0 },
});
try {
  await updater.refresh();
  const targets = {};
  for (const path of paths) {
    const info = await updater.getTargetInfo(path);
    if (!info) {
      targets[path] = null;
      continue;
    }
    const downloaded = targetBaseUrl !== '-' ? await updater.downloadTarget(info) : null;
    targets[path] = { length: info.length, hashes: info.hashes, downloaded };
  }
  console.log(JSON.stringify({ targets }));
} catch (error) {
  console.error(`tuf-js: ${error.name}: ${error.message}`);
  process.exit(1);
}
