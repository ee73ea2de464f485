//! Command line: what `pgforever archive-command` prints, nothing more.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const USAGE: &str = "usage: pgforever-archive push [options] <wal-path>
       pgforever-archive get [options] <wal-name> <destination>
       pgforever-archive prefetch [options] <wal-name>   (in the data directory)
options: --spool DIR --node NODE --cli PGFOREVER_JS (required)
         --repo LOCATION --config FILE --log-level LEVEL (passed on to pgforever)
         --timeout SECONDS (default 60)";

/// Options passed on verbatim to the Node daemon, which resolves settings as every command does.
const FORWARDED: [&str; 3] = ["--repo", "--config", "--log-level"];
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Options {
    pub spool: PathBuf,
    pub node: PathBuf,
    pub cli: PathBuf,
    pub forwarded: Vec<OsString>,
    /// How long to wait for the daemon's answer before failing (PostgreSQL then retries).
    pub timeout: Duration,
}

pub enum Command {
    Push {
        options: Options,
        path: PathBuf,
    },
    Get {
        options: Options,
        name: String,
        destination: PathBuf,
    },
    /// Starts the daemon (if none runs) and has it fetch `name` into the spool ahead of recovery.
    Prefetch {
        options: Options,
        name: String,
    },
}

pub fn parse(argv: &[OsString]) -> Result<Command, String> {
    let (verb, rest) = argv.split_first().ok_or("no command")?;
    let mut spool = None;
    let mut node = None;
    let mut cli = None;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut forwarded = Vec::new();
    let mut positional = Vec::new();
    let mut words = rest.iter();
    while let Some(word) = words.next() {
        let Some(flag) = word.to_str().filter(|w| w.starts_with("--")) else {
            positional.push(word.clone());
            continue;
        };
        let value = words
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag {
            "--spool" => spool = Some(PathBuf::from(value)),
            "--node" => node = Some(PathBuf::from(value)),
            "--cli" => cli = Some(PathBuf::from(value)),
            "--timeout" => timeout = parse_timeout(value)?,
            _ if FORWARDED.contains(&flag) => {
                forwarded.push(word.clone());
                forwarded.push(value.clone());
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let options = Options {
        spool: spool.ok_or("--spool is required")?,
        node: node.ok_or("--node is required")?,
        cli: cli.ok_or("--cli is required")?,
        forwarded,
        timeout,
    };
    match (verb.to_str(), positional.as_slice()) {
        (Some("push"), [path]) => Ok(Command::Push {
            options,
            path: PathBuf::from(path),
        }),
        (Some("get"), [name, destination]) => Ok(Command::Get {
            options,
            name: wal_name(name)?,
            destination: PathBuf::from(destination),
        }),
        (Some("prefetch"), [name]) => Ok(Command::Prefetch {
            options,
            name: wal_name(name)?,
        }),
        (Some("push" | "get" | "prefetch"), _) => Err("wrong number of arguments".into()),
        _ => Err(format!("unknown command {}", verb.to_string_lossy())),
    }
}

fn wal_name(word: &OsStr) -> Result<String, String> {
    word.to_str()
        .filter(|n| is_wal_file_name(n))
        .map(str::to_owned)
        .ok_or_else(|| format!("{} is not a WAL file name", word.to_string_lossy()))
}

fn parse_timeout(value: &OsStr) -> Result<Duration, String> {
    value
        .to_str()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&seconds| (1..=86_400).contains(&seconds))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            format!(
                "--timeout must be 1 to 86400 seconds, got {}",
                value.to_string_lossy()
            )
        })
}

/// File names PostgreSQL archives and restores: segments, `.partial` segments, timeline and backup
/// history files. Anything else (a slash, a dot file) never names a spool entry.
pub fn is_wal_file_name(name: &str) -> bool {
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    match name.split_once('.') {
        None => hex(name, 24),
        Some((stem, "partial")) => hex(stem, 24),
        Some((stem, "history")) => hex(stem, 8),
        Some((stem, rest)) => match rest.split_once('.') {
            Some((offset, "backup")) => hex(stem, 24) && hex(offset, 8),
            _ => false,
        },
    }
}

pub fn wal_file_name(path: &Path) -> Option<&str> {
    path.file_name()
        .and_then(OsStr::to_str)
        .filter(|name| is_wal_file_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_what_archive_command_prints() {
        let command = parse(&argv(&[
            "push",
            "--spool",
            "pg_wal/pgforever/ab",
            "--node",
            "/usr/bin/node",
            "--cli",
            "/opt/pgforever/bin/pgforever.js",
            "--repo",
            "/var/lib/pgforever",
            "pg_wal/000000010000000000000003",
        ]))
        .expect("valid");
        let Command::Push { options, path } = command else {
            panic!("push expected")
        };
        assert_eq!(path, PathBuf::from("pg_wal/000000010000000000000003"));
        assert_eq!(options.spool, PathBuf::from("pg_wal/pgforever/ab"));
        assert_eq!(options.forwarded, argv(&["--repo", "/var/lib/pgforever"]));
        assert_eq!(options.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn refuses_bad_input() {
        let base = [
            "--spool",
            "s",
            "--node",
            "n",
            "--cli",
            "c",
            "--timeout",
            "5",
        ];
        let with = |extra: &[&str]| {
            let mut words = vec!["get"];
            words.extend_from_slice(&base);
            words.extend_from_slice(extra);
            parse(&argv(&words))
        };
        assert!(with(&["000000010000000000000003", "pg_wal/RECOVERYXLOG"]).is_ok());
        assert!(with(&["../../etc/passwd", "pg_wal/RECOVERYXLOG"]).is_err());
        assert!(with(&["000000010000000000000003"]).is_err());
        let prefetch = |name: &str| {
            let mut words = vec!["prefetch"];
            words.extend_from_slice(&base);
            words.push(name);
            parse(&argv(&words))
        };
        assert!(
            matches!(prefetch("000000010000000000000003"), Ok(Command::Prefetch { name, .. }) if name == "000000010000000000000003")
        );
        assert!(prefetch("RECOVERYXLOG").is_err());
        assert!(parse(&argv(&["push", "--spool"])).is_err());
        assert!(parse(&argv(&["push", "--bogus", "x", "p"])).is_err());
        assert!(parse(&argv(&["push", "--spool", "s", "p"])).is_err());
        assert!(parse(&argv(&[])).is_err());
    }

    #[test]
    fn knows_wal_file_names() {
        for name in [
            "000000010000000000000003",
            "000000010000000000000003.partial",
            "00000002.history",
            "000000010000000000000003.00000028.backup",
        ] {
            assert!(is_wal_file_name(name), "{name}");
        }
        for name in [
            "",
            "RECOVERYXLOG",
            "00000001000000000000000",
            "000000010000000000000003.ready",
            "0000000G.history",
            "000000010000000000000003.0000028.backup",
            ".000000010000000000000003",
        ] {
            assert!(!is_wal_file_name(name), "{name}");
        }
    }
}
