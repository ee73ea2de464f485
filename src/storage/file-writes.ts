/**
 * Positioned writes of many buffers to a local file, in calls of at most `writeCallBytes`.
 *
 * Why the cap: since Linux 6.x, ext4 and XFS back a write with page-cache folios sized after the
 * write's length, and on VMs whose free memory is handed back to the host (free page reporting,
 * ballooning) the large free blocks such folios come from are the ones the host took back: each
 * first touch is a host fault. Measured on a Firecracker VM with kernel 6.18, after drop_caches:
 * 800 MB written with dd took 0.2 s in 1 MiB writes and 8 to 10 s in 2 MiB writes, all of it
 * system time; a 770 MiB restore, in rounds of one run each, took 5.3-6.4 s in 1 MiB writes,
 * 3.0-3.4 s in 256 KiB writes and 4.0-4.5 s in 64 KiB ones (more calls) while the host was
 * reclaiming, and about 2.0 s in writes of 128 to 512 KiB otherwise. PostgreSQL itself writes
 * 8 KiB pages.
 */
import { constants, open, writev } from 'node:fs';
import { promisify } from 'node:util';

const writevAt = promisify(writev);
const openFile = promisify(open);

export const writeCallBytes = 256 * 1024;

/**
 * Writes `buffers` back to back from `position` of the open file `fd`, all of them, in calls of at
 * most `callBytes` (writes that bypass the page cache need no cap).
 */
export async function writeAt(fd: number, buffers: readonly Buffer[], position: number, callBytes = writeCallBytes): Promise<void> {
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let at = position;
  const flush = async () => {
    for (let i = 0; i < batch.length; ) {
      const { bytesWritten } = await writevAt(fd, batch.slice(i), at);
      at += bytesWritten;
      // A short write (full disk, signal) resumes inside the buffer it stopped in.
      for (let left = bytesWritten; left > 0 && i < batch.length; ) {
        const head = batch[i]!;
        if (left >= head.length) {
          left -= head.length;
          i += 1;
        } else {
          batch[i] = head.subarray(left);
          left = 0;
        }
      }
      if (bytesWritten === 0) throw Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' });
    }
    batch = [];
    batchBytes = 0;
  };
  for (const buffer of buffers) {
    for (let offset = 0; offset < buffer.length; ) {
      const piece = buffer.subarray(offset, offset + callBytes - batchBytes);
      batch.push(piece);
      batchBytes += piece.length;
      offset += piece.length;
      if (batchBytes === callBytes) await flush();
    }
  }
  if (batch.length > 0) await flush();
}

/** Block size direct I/O asks of buffers, offsets and lengths (4096 also covers 512-byte devices). */
export const DIRECT_IO_ALIGNMENT = 4096;

/** Calls that bypass the page cache need no cap; this one keeps a call's worth of work bounded. */
export const directCallBytes = 8 * 1024 * 1024;

/**
 * A second descriptor on the file at `path` that writes around the page cache (O_DIRECT), or
 * undefined where that is refused: the filesystem (tmpfs, some FUSE and network filesystems), or
 * a read-only mode (the file was opened for writing before it was given that mode).
 */
export async function openDirect(path: string): Promise<number | undefined> {
  const direct = (constants as { O_DIRECT?: number }).O_DIRECT;
  if (direct === undefined) return undefined;
  try {
    return await openFile(path, constants.O_WRONLY | direct);
  } catch (err) {
    if (['EINVAL', 'EOPNOTSUPP', 'EACCES', 'EPERM'].includes((err as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw err;
  }
}

/**
 * Writes `buffers` back to back from the start of a new file. They are copied into `staging`
 * (aligned for direct I/O, a multiple of DIRECT_IO_ALIGNMENT long) and its whole blocks go out
 * through `directFd`, so the bytes never pass through fresh page-cache pages (see writeCallBytes:
 * on a VM whose host reclaims free memory, that copy was a fifth of the archive daemon's CPU); the
 * last partial block goes through `fd`. A direct write the filesystem refuses (EINVAL) sends the
 * rest through `fd`.
 */
export async function writeThroughStaging(fd: number, directFd: number, buffers: readonly Buffer[], staging: Buffer): Promise<void> {
  let position = 0;
  let filled = 0;
  let direct = true;
  const flushWhole = async () => {
    const whole = filled - (filled % DIRECT_IO_ALIGNMENT);
    if (whole === 0) return;
    if (direct) {
      try {
        await writeAt(directFd, [staging.subarray(0, whole)], position, directCallBytes);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
        direct = false;
      }
    }
    if (!direct) await writeAt(fd, [staging.subarray(0, whole)], position);
    position += whole;
    staging.copyWithin(0, whole, filled);
    filled -= whole;
  };
  for (const buffer of buffers) {
    for (let offset = 0; offset < buffer.length; ) {
      const copied = buffer.copy(staging, filled, offset);
      filled += copied;
      offset += copied;
      if (filled === staging.length) await flushWhole();
    }
  }
  await flushWhole();
  if (filled > 0) await writeAt(fd, [staging.subarray(0, filled)], position);
}
