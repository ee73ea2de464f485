//! The spool directory shared with the Node side (src/wal/spool.ts holds the same layout):
//!
//! - `done/<name>`: written by the pusher, after the file is durable in the repository, as one line
//!   `pgforever-done 1 <size> <dev> <ino> <mtime-ns> <ctime-ns>` identifying the file it read. A
//!   file with that identity is the same, unmodified file: any write or rename changes its ctime.
//! - `prefetch/<name>`: a validated WAL file fetched ahead by the daemon, complete once it has this
//!   name (written under a temporary name, fsynced, renamed).
//! - `pusher.lock`, `pusher.sock`, `pusher.log`: the daemon's lock, socket and output.
//!
//! The markers are trusted as statements about the repository, so the spool must belong to the
//! server's OS user and be writable by nobody else.

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const MARKER_PREFIX: &str = "pgforever-done 1 ";
/// The daemon's output is kept to about this size: one file and one older generation.
const LOG_LIMIT: u64 = 1 << 20;

pub struct Spool {
    root: PathBuf,
}

impl Spool {
    /// Opens (creating it 0700 if needed) the spool, which must be owned by `owner` and closed to
    /// group and others.
    pub fn open(root: &Path, owner: u32) -> Result<Spool, String> {
        if let Err(err) = DirBuilder::new().recursive(true).mode(0o700).create(root) {
            return Err(format!("cannot create the spool {}: {err}", root.display()));
        }
        let meta = fs::metadata(root)
            .map_err(|err| format!("cannot reach the spool {}: {err}", root.display()))?;
        if meta.uid() != owner || meta.mode() & 0o022 != 0 {
            return Err(format!(
                "the spool {} must belong to uid {owner} (the server's user) and be writable by nobody else (it is uid {}, mode {:o})",
                root.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ));
        }
        Ok(Spool {
            root: root.to_path_buf(),
        })
    }

    pub fn display(&self) -> std::path::Display<'_> {
        self.root.display()
    }

    pub fn socket(&self) -> PathBuf {
        self.root.join("pusher.sock")
    }

    pub fn lock(&self) -> Result<File, String> {
        let path = self.root.join("pusher.lock");
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|err| format!("cannot open {}: {err}", path.display()))
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("pusher.log")
    }

    /// The daemon's log for appending, after moving a log past LOG_LIMIT to `pusher.log.1`.
    pub fn open_log(&self) -> Result<File, String> {
        let path = self.log_path();
        if fs::metadata(&path).is_ok_and(|m| m.len() > LOG_LIMIT) {
            // Only the lock holder gets here, so nobody else is writing to it.
            let _ = fs::rename(&path, self.root.join("pusher.log.1"));
        }
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|err| format!("cannot open {}: {err}", path.display()))
    }

    /// The last non-empty line of the daemon's log (why it stopped), if any.
    pub fn last_log_line(&self) -> Option<String> {
        let text = fs::read(self.log_path()).ok()?;
        let text = String::from_utf8_lossy(&text[text.len().saturating_sub(8192)..]).into_owned();
        text.lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .map(str::to_owned)
    }

    /// Whether `done/<name>` names exactly this file (see the module comment).
    pub fn pushed(&self, name: &str, file: &Metadata) -> bool {
        let Ok(marker) = fs::read_to_string(self.root.join("done").join(name)) else {
            return false;
        };
        marker.trim_end() == format!("{MARKER_PREFIX}{}", identity(file))
    }

    /// Moves `prefetch/<name>` onto `destination`; false when it was not prefetched.
    pub fn take_prefetched(&self, name: &str, destination: &Path) -> Result<bool, String> {
        let source = self.root.join("prefetch").join(name);
        match fs::rename(&source, destination) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(false),
            Err(err) if err.kind() == ErrorKind::CrossesDevices => {
                copy_into_place(&source, destination).map(|()| true)
            }
            Err(err) => Err(format!(
                "cannot move {} to {}: {err}",
                source.display(),
                destination.display()
            )),
        }
    }
}

/// `<size> <dev> <ino> <mtime-ns> <ctime-ns>`, as Node's `fstat({ bigint: true })` gives them.
fn identity(file: &Metadata) -> String {
    let ns = |seconds: i64, nanos: i64| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    format!(
        "{} {} {} {} {}",
        file.size(),
        file.dev(),
        file.ino(),
        ns(file.mtime(), file.mtime_nsec()),
        ns(file.ctime(), file.ctime_nsec())
    )
}

/// For a spool on another filesystem than the destination: copy under a temporary name beside
/// the destination, fsync, rename, then drop the spool copy.
fn copy_into_place(source: &Path, destination: &Path) -> Result<(), String> {
    let mut temporary = destination.as_os_str().to_owned();
    temporary.push(format!(".pgforever-{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let result = (|| {
        let data = fs::read(source)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&data)?;
        file.sync_all()?;
        fs::rename(&temporary, destination)
    })();
    match result {
        Ok(()) => {
            let _ = fs::remove_file(source);
            Ok(())
        }
        Err(err) => {
            let _ = fs::remove_file(&temporary);
            Err(format!(
                "cannot copy {} to {}: {err}",
                source.display(),
                destination.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pgforever-archive-test-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn trusts_only_a_marker_naming_this_very_file() {
        let dir = scratch("marker");
        let owner = {
            DirBuilder::new()
                .recursive(true)
                .create(&dir)
                .expect("mkdir");
            fs::metadata(&dir).expect("stat").uid()
        };
        let spool = Spool::open(&dir.join("spool"), owner).expect("spool");
        let wal = dir.join("000000010000000000000001");
        fs::write(&wal, b"segment").expect("write");
        let meta = fs::metadata(&wal).expect("stat");
        assert!(!spool.pushed("000000010000000000000001", &meta));

        fs::create_dir(dir.join("spool/done")).expect("mkdir");
        let marker = dir.join("spool/done/000000010000000000000001");
        fs::write(&marker, format!("{MARKER_PREFIX}{}\n", identity(&meta))).expect("write");
        assert!(spool.pushed("000000010000000000000001", &meta));

        // Rewritten in place: same inode, new ctime.
        fs::write(&wal, b"segment").expect("write");
        let rewritten = fs::metadata(&wal).expect("stat");
        if rewritten.ctime_nsec() != meta.ctime_nsec() || rewritten.ctime() != meta.ctime() {
            assert!(!spool.pushed("000000010000000000000001", &rewritten));
        }
        fs::write(&marker, "pgforever-done 1 7").expect("write");
        assert!(!spool.pushed("000000010000000000000001", &meta));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_a_spool_others_can_write() {
        let dir = scratch("open");
        DirBuilder::new()
            .recursive(true)
            .mode(0o777)
            .create(&dir)
            .expect("mkdir");
        let owner = fs::metadata(&dir).expect("stat").uid();
        let open = dir.join("open");
        DirBuilder::new().mode(0o700).create(&open).expect("mkdir");
        fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .expect("chmod");
        assert!(Spool::open(&open, owner).is_err());
        assert!(Spool::open(&dir.join("private"), owner.wrapping_add(1)).is_err());
        assert!(Spool::open(&dir.join("private"), owner).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn moves_a_prefetched_file_into_place_once() {
        let dir = scratch("prefetch");
        DirBuilder::new()
            .recursive(true)
            .create(dir.join("spool/prefetch"))
            .expect("mkdir");
        let owner = fs::metadata(&dir).expect("stat").uid();
        let spool = Spool::open(&dir.join("spool"), owner).expect("spool");
        fs::write(
            dir.join("spool/prefetch/00000002.history"),
            b"1\t0/3000000\tno recovery target specified\n",
        )
        .expect("write");
        let destination = dir.join("RECOVERYHISTORY");
        assert_eq!(
            spool.take_prefetched("00000002.history", &destination),
            Ok(true)
        );
        assert!(fs::read(&destination)
            .expect("read")
            .starts_with(b"1\t0/3000000"));
        assert_eq!(
            spool.take_prefetched("00000002.history", &destination),
            Ok(false)
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
