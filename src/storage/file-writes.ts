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
import { writev } from 'node:fs';
import { promisify } from 'node:util';

const writevAt = promisify(writev);

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
