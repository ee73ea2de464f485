export { Repository, formatVersion, type InitOptions, type RepositoryConfig } from './repository.js';
export { ExtentIndex, writeIndexDelta, type ExtentLocation, type IndexEntry } from './extent-index.js';
export { PackWriter, packIdOf, readPackFooter, type NewExtentFrame } from './packs.js';
export { ExtentReader, type FetchedExtents } from './extent-reader.js';
export { acquireLease, liveLeases, waitForNoLease, type Lease, type LeaseKind, type LeaseRecord } from './leases.js';
export { condemnedPacks, deleteGcMark, readGcMarks, writeGcMark, type GcMark } from './gc-marks.js';
export { keys } from './objects.js';
export { backupIdAt, backupStartOf, type BackupManifest, type ManifestDatabase, type ManifestFile, type ManifestTablespace } from './manifest.js';
