//! `pgforever-archive`: the `archive_command` and `restore_command` PostgreSQL runs once per WAL file,
//! serially. Starting Node costs about 77 ms, so this small std-only executable answers from the
//! spool directory when it can and hands the rest to a background `pgforever archive-daemon`:
//!
//! - `push <path>`: exit 0 at once when `done/<name>` in the spool says the very file at `<path>`
//!   (same device, inode, size, mtime and ctime) is durable in the repository; otherwise ask the
//!   daemon (starting it if none runs) and wait for its answer, up to a deadline.
//! - `get <name> <dest>`: rename a prefetched `prefetch/<name>` onto `<dest>` when there is one,
//!   otherwise ask the daemon to fetch it; exit 1 without output when the repository lacks it.
//! - `prefetch <name>`, run in the data directory: start the daemon and have it fetch `<name>`
//!   ahead (restore runs it, so that recovery's first requests find the daemon warm and the
//!   first segment there); exit once the daemon has the request, not when the file is fetched.
//!
//! Exit status: 0 done, 1 failed or not found (PostgreSQL retries or ends recovery), 2 usage; a
//! `get` that fails during archive recovery (see [`RECOVERY_FAILED`]) exits 200.
//!
//! It is linked statically (`npm run build:archive-client`): dynamic linking took a third of the CPU
//! of each of PostgreSQL's calls (`perf stat` of a usage error: 1.15 against 0.79 ms), and a static
//! executable runs whatever the host's glibc. Where no static C library is installed (glibc-static
//! on Fedora), the script builds it dynamically linked, which works the same, a little slower.

mod args;
mod daemon;
mod spool;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use args::{Command, Options};
use daemon::Reply;
use spool::Spool;

/// `get`'s exit status for a failure (not a missing file) while PostgreSQL runs archive recovery
/// towards a target or the end of the archive: `recovery.signal` without `standby.signal` in the
/// data directory, where PostgreSQL runs restore_command. PostgreSQL takes any status up to 125 for
/// "not in the archive" and would end recovery there, promoting early with the rest of the WAL
/// left out; above 125 it stops recovery with an error, which a restart resumes once the repository
/// is readable. A standby retries failed calls and keeps 1.
const RECOVERY_FAILED: u8 = 200;

fn in_archive_recovery() -> bool {
    Path::new("recovery.signal").exists() && !Path::new("standby.signal").exists()
}

enum Outcome {
    Done,
    /// archive-get only: the repository does not have the file (the normal end of recovery).
    Missing,
    Failed(String),
}

fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().skip(1).collect();
    let command = match args::parse(&argv) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("pgforever-archive: {message}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    daemon::close_inherited_descriptors();
    let outcome = match &command {
        Command::Push { options, path } => push(options, path),
        Command::Get {
            options,
            name,
            destination,
        } => get(options, name, destination),
        Command::Prefetch { options, name } => prefetch(options, name),
    };
    match outcome {
        Outcome::Done => ExitCode::SUCCESS,
        Outcome::Missing => ExitCode::from(1),
        Outcome::Failed(message) => {
            eprintln!("pgforever-archive: {message}");
            if matches!(command, Command::Get { .. }) && in_archive_recovery() {
                ExitCode::from(RECOVERY_FAILED)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn push(options: &Options, path: &Path) -> Outcome {
    let file = match fs::metadata(path) {
        Ok(file) => file,
        Err(err) => {
            return Outcome::Failed(format!(
                "cannot read {}: {err} (archive_command must pass %p)",
                path.display()
            ))
        }
    };
    let Some(name) = args::wal_file_name(path) else {
        return Outcome::Failed(format!(
            "{} is not a WAL file name (archive_command must pass %p)",
            path.display()
        ));
    };
    let spool = match Spool::open(&options.spool, file.uid()) {
        Ok(spool) => spool,
        Err(message) => return Outcome::Failed(message),
    };
    if spool.pushed(name, &file) {
        return Outcome::Done;
    }
    let absolute = match std::path::absolute(path) {
        Ok(absolute) => absolute,
        Err(err) => return Outcome::Failed(format!("cannot resolve {}: {err}", path.display())),
    };
    let Some(absolute) = absolute.to_str().filter(|p| !p.contains('\n')) else {
        return Outcome::Failed(format!(
            "{} is not a UTF-8 path without newlines",
            path.display()
        ));
    };
    match daemon::request(options, &spool, &format!("push {absolute}\n")) {
        Ok(Reply::Done) => match fs::metadata(path) {
            Ok(now) if spool.pushed(name, &now) => Outcome::Done,
            _ => Outcome::Failed(format!(
                "{name} changed while it was being archived; it will be archived again on the next try"
            )),
        },
        Ok(Reply::Missing) => Outcome::Failed(format!("the archive pusher could not find {absolute}")),
        Ok(Reply::Error(message)) | Err(message) => Outcome::Failed(message),
    }
}

fn get(options: &Options, name: &str, destination: &Path) -> Outcome {
    let directory = match destination.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let owner = match fs::metadata(directory) {
        Ok(meta) => meta.uid(),
        Err(err) => {
            return Outcome::Failed(format!(
                "cannot reach {}: {err} (restore_command must pass %p)",
                directory.display()
            ))
        }
    };
    let spool = match Spool::open(&options.spool, owner) {
        Ok(spool) => spool,
        Err(message) => return Outcome::Failed(message),
    };
    match spool.take_prefetched(name, destination) {
        Ok(true) => {
            daemon::notify(&spool, &format!("consumed {name}\n"));
            return Outcome::Done;
        }
        Ok(false) => {}
        Err(message) => return Outcome::Failed(message),
    }
    match daemon::request(options, &spool, &format!("get {name}\n")) {
        Ok(Reply::Done) => match spool.take_prefetched(name, destination) {
            Ok(true) => Outcome::Done,
            Ok(false) => Outcome::Failed(format!(
                "the archive pusher fetched {name} but it is no longer in {}",
                spool.display()
            )),
            Err(message) => Outcome::Failed(message),
        },
        Ok(Reply::Missing) => Outcome::Missing,
        Ok(Reply::Error(message)) | Err(message) => Outcome::Failed(message),
    }
}

fn prefetch(options: &Options, name: &str) -> Outcome {
    let owner = match fs::metadata(".") {
        Ok(meta) => meta.uid(),
        Err(err) => {
            return Outcome::Failed(format!(
                "cannot reach the current directory: {err} (run prefetch in the data directory)"
            ))
        }
    };
    // The daemon started here serves the server's restore_command later: it must run as the
    // server's user, and nothing may be created in the spool under another one.
    let caller = fs::metadata("/proc/self").map(|meta| meta.uid()).ok();
    if caller != Some(owner) || owner == 0 {
        return Outcome::Failed(
            "prefetch runs as the data directory's owner (the user PostgreSQL runs as), never as root"
                .into(),
        );
    }
    let spool = match Spool::open(&options.spool, owner) {
        Ok(spool) => spool,
        Err(message) => return Outcome::Failed(message),
    };
    match daemon::request(options, &spool, &format!("prefetch {name}\n")) {
        Ok(Reply::Done) => Outcome::Done,
        Ok(Reply::Missing) => Outcome::Missing,
        Ok(Reply::Error(message)) | Err(message) => Outcome::Failed(message),
    }
}
