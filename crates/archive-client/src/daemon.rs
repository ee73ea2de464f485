//! Talking to the background `pgforever archive-daemon` over `pusher.sock`, starting it when none
//! runs. One request per connection, one line each way:
//!
//! - `push <absolute path>` -> `ok` once the file is durable in the repository and `done/<name>`
//!   is written, or `error <CODE: message>`;
//! - `get <name>` -> `ok` once `prefetch/<name>` is in place, `missing`, or `error <...>`;
//! - `consumed <name>` (no answer): a prefetched file was taken, so prefetching moves on;
//! - `prefetch <name>` -> `ok` at once: the daemon fetches `<name>` into `prefetch/` in the
//!   background, ahead of recovery asking for it.
//!
//! The daemon is exclusive through an flock on `pusher.lock`: whoever takes it starts the daemon
//! with the locked file as its stdin, so the lock lives exactly as long as the daemon. An answer is
//! only a wake-up: success is still decided from the spool (the `done` marker or the prefetched
//! file), never from the socket alone.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::spool::Spool;

pub enum Reply {
    Done,
    Missing,
    Error(String),
}

/// A daemon that dies under a request is replaced this many times within one call.
const MAX_LOST: u32 = 3;
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const LONGEST_PAUSE: Duration = Duration::from_millis(10);

/// Sends `line` and waits for the answer until the options' timeout, starting the daemon if needed.
pub fn request(options: &Options, spool: &Spool, line: &str) -> Result<Reply, String> {
    let deadline = Instant::now() + options.timeout;
    let mut started: Option<Child> = None;
    let mut lost = 0;
    let mut pause = FIRST_PAUSE;
    loop {
        match UnixStream::connect(spool.socket()) {
            Ok(stream) => match exchange(stream, line, deadline)? {
                Some(reply) => return Ok(reply),
                None => {
                    lost += 1;
                    if lost > MAX_LOST {
                        return Err(format!(
                            "the archive pusher exited {lost} times before answering; see {}",
                            spool.log_path().display()
                        ));
                    }
                }
            },
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::NotFound | ErrorKind::ConnectionRefused
                ) =>
            {
                if let Some(child) = started.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        let why = spool.last_log_line().unwrap_or_else(|| status.to_string());
                        return Err(format!("the archive pusher stopped: {why}"));
                    }
                } else {
                    started = start(options, spool)?;
                }
            }
            Err(err) => {
                return Err(format!(
                    "cannot reach the archive pusher at {}: {err}",
                    spool.socket().display()
                ))
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "no answer from the archive pusher within {} s (a slow or unreachable repository?); see {}",
                options.timeout.as_secs(),
                spool.log_path().display()
            ));
        }
        sleep(pause.min(deadline - now));
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// Best effort, no answer awaited: the daemon only uses it to keep prefetching ahead.
pub fn notify(spool: &Spool, line: &str) {
    if let Ok(mut stream) = UnixStream::connect(spool.socket()) {
        let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
        let _ = stream.write_all(line.as_bytes());
    }
}

/// The reply, or None when the daemon went away without one (killed, or exiting when idle).
fn exchange(
    mut stream: UnixStream,
    line: &str,
    deadline: Instant,
) -> Result<Option<Reply>, String> {
    let timed_out = || "no answer from the archive pusher before the deadline".to_string();
    let remaining = deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(timed_out)?;
    if stream.set_write_timeout(Some(remaining)).is_err()
        || stream.write_all(line.as_bytes()).is_err()
    {
        return Ok(None);
    }
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(timed_out)?;
        if stream.set_read_timeout(Some(remaining)).is_err() {
            return Ok(None);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                if let Some(end) = answer.iter().position(|&b| b == b'\n') {
                    return Ok(Some(parse_reply(&answer[..end])));
                }
            }
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return Ok(None),
        }
    }
}

fn parse_reply(line: &[u8]) -> Reply {
    let line = String::from_utf8_lossy(line);
    match line.as_ref() {
        "ok" => Reply::Done,
        "missing" => Reply::Missing,
        other => Reply::Error(other.strip_prefix("error ").unwrap_or(other).to_owned()),
    }
}

/// Starts the daemon if nobody holds the lock; None when another process does (a daemon running
/// or starting), in which case its socket appears shortly.
fn start(options: &Options, spool: &Spool) -> Result<Option<Child>, String> {
    let lock = spool.lock()?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(err)) => {
            return Err(format!("cannot lock {}: {err}", spool.display()))
        }
    }
    let log = spool.open_log()?;
    let log_copy = log
        .try_clone()
        .map_err(|err| format!("cannot open the pusher log: {err}"))?;
    let mut command = Command::new(&options.node);
    command
        .arg(&options.cli)
        .arg("archive-daemon")
        .arg("--spool")
        .arg(&options.spool)
        .arg("--timeout")
        .arg(options.timeout.as_secs().to_string())
        .args(&options.forwarded)
        .stdin(Stdio::from(lock))
        .stdout(Stdio::from(log_copy))
        .stderr(Stdio::from(log))
        // Out of the archiver's process group: PostgreSQL signals the whole group at shutdown, and
        // the daemon must finish what it started.
        .process_group(0);
    command.spawn().map(Some).map_err(|err| {
        format!(
            "cannot start the archive pusher ({} {}): {err}",
            options.node.display(),
            options.cli.display()
        )
    })
}

/// Closes descriptors inherited from the server (its pipes, e.g. the log collector's), so that a
/// daemon started from here, which outlives this process, does not hold them open. Called first
/// thing, before this program opens anything: every descriptor above 2 then came from the parent.
pub fn close_inherited_descriptors() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let inherited: Vec<i32> = entries
        .flatten()
        .filter(|entry| {
            // The listing's own descriptor is a directory under /proc; read_dir closes it itself.
            std::fs::read_link(entry.path()).is_ok_and(|target| !target.starts_with("/proc"))
        })
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in inherited {
        // SAFETY: this descriptor came from the parent process and nothing in this program owns
        // it; taking ownership closes it exactly once.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}
