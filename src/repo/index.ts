export { Repository, formatVersion, type InitOptions, type RepositoryConfig } from './repository.js';
export { ExtentIndex, type ExtentLocation, type IndexEntry } from './extent-index.js';
export { PackWriter, type NewExtentFrame } from './packs.js';
export { ExtentReader } from './extent-reader.js';
export { acquireLease, type Lease, type LeaseKind } from './leases.js';
export { keys } from './objects.js';
export type { BackupManifest, ManifestDatabase, ManifestFile, ManifestTablespace } from './manifest.js';
