//! `pitr verify`: every file of the repository checked, each problem named. pgBackRest's
//! `verify` reads every backup file and WAL segment against its checksum, but reports a WAL
//! segment missing from the middle of the archive only as two ranges (and still exits 0), so
//! the archive's listing is checked for gaps here, timeline by timeline.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::pgbackrest::PgBackRest;

/// Something wrong in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A file a backup's manifest lists is not in the repository.
    MissingBackupFile(String),
    /// A WAL segment between two archived ones of its timeline is not in the archive.
    MissingWal { segment: String, after: String },
    /// A file whose content does not match its checksum or cannot be read.
    Invalid { file: String, reason: String },
    /// pgBackRest reported an error that names no file.
    Other(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MissingBackupFile(file) => {
                write!(f, "backup file {file} is missing from the repository")
            }
            Problem::MissingWal { segment, after } => write!(
                f,
                "WAL segment {segment} is missing from the archive (after {after}): recovery \
                 cannot pass it"
            ),
            Problem::Invalid { file, reason } => write!(f, "{file} is corrupted: {reason}"),
            Problem::Other(text) => write!(f, "pgbackrest verify: {text}"),
        }
    }
}

/// What `verify` found.
#[derive(Debug)]
pub struct Report {
    pub problems: Vec<Problem>,
    /// WAL segments in the archive.
    pub wal_segments: usize,
    /// The newest WAL segment and when it was archived.
    pub newest_wal: Option<(String, DateTime<Utc>)>,
}

/// Checks every backup file and WAL segment of the repository.
pub async fn verify(pgbackrest: &PgBackRest) -> Result<Report> {
    let args = ["--job-retry=0".into(), "--log-level-console=info".into()];
    let log = pgbackrest.run("verify", &args).await?;
    let mut problems = verify_problems(&log);
    let listing = pgbackrest
        .run(
            "repo-ls",
            &[
                "--recurse".into(),
                "--output=json".into(),
                format!("archive/{}", pgbackrest.stanza),
            ],
        )
        .await?;
    let files: BTreeMap<String, Entry> =
        serde_json::from_str(&listing).context("pgbackrest repo-ls: unexpected JSON")?;
    let segments: Vec<(Segment, i64)> = files
        .iter()
        .filter(|(_, e)| e.kind == "file")
        .filter_map(|(path, e)| Some((Segment::parse(path)?, e.time.unwrap_or(0))))
        .collect();
    problems.extend(wal_gaps(segments.iter().map(|(s, _)| *s)));
    let newest_wal = segments
        .iter()
        .max_by_key(|(s, _)| *s)
        .and_then(|(s, t)| Some((s.name(), DateTime::from_timestamp(*t, 0)?)));
    Ok(Report {
        problems,
        wal_segments: segments.len(),
        newest_wal,
    })
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    kind: String,
    time: Option<i64>,
}

/// The problems `pgbackrest verify --log-level-console=info` names in its log.
fn verify_problems(log: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    for line in log.lines() {
        let quoted = |rest: &str| rest.trim_end().trim_end_matches('\'').to_string();
        if let Some((_, rest)) = line.split_once("file missing '") {
            problems.push(Problem::MissingBackupFile(quoted(rest)));
        } else if let Some((what, rest)) = ["checksum", "size"]
            .into_iter()
            .find_map(|w| Some((w, line.split_once(&format!("invalid {w} '"))?.1)))
        {
            problems.push(Problem::Invalid {
                file: quoted(rest),
                reason: format!("its {what} differs from the backup's manifest"),
            });
        } else if let Some((_, rest)) = line.split_once("invalid result ") {
            let (file, reason) = rest.split_once(": ").unwrap_or((rest, "invalid"));
            problems.push(Problem::Invalid {
                file: file.to_string(),
                reason: reason.trim().to_string(),
            });
        }
    }
    let failed = log.lines().any(|l| l.trim() == "status: error");
    if failed && problems.is_empty() {
        problems.push(Problem::Other(log.trim().to_string()));
    }
    problems
}

/// A WAL segment's timeline and position (16 MiB segments: 256 a log file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment {
    pub timeline: u32,
    pub number: u64,
}

impl Segment {
    /// The segment a repository path like `15-1/0000000100000000/0000000100000000000000A3-<sha1>.gz`
    /// holds; `None` for history, backup-label and partial files.
    pub fn parse(path: &str) -> Option<Segment> {
        let name = path.rsplit('/').next()?;
        let (hex, rest) = name.split_at_checked(24)?;
        if !rest.starts_with('-') {
            return None;
        }
        Segment::from_name(hex)
    }

    /// The segment a file name of 24 hex digits names.
    pub fn from_name(name: &str) -> Option<Segment> {
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let part = |r: std::ops::Range<usize>| u64::from_str_radix(&name[r], 16).ok();
        Some(Segment {
            timeline: part(0..8)? as u32,
            number: part(8..16)? * 256 + part(16..24)?,
        })
    }

    /// The segment's file name.
    pub fn name(&self) -> String {
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.number / 256,
            self.number % 256
        )
    }
}

/// Every segment missing between the first and last archived ones of each timeline.
fn wal_gaps(segments: impl Iterator<Item = Segment>) -> Vec<Problem> {
    let mut by_timeline: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for s in segments {
        by_timeline.entry(s.timeline).or_default().insert(s.number);
    }
    let mut problems = Vec::new();
    for (timeline, numbers) in by_timeline {
        let mut previous: Option<u64> = None;
        for n in numbers {
            if let Some(p) = previous {
                for missing in p + 1..n {
                    let name = |number| Segment { timeline, number }.name();
                    problems.push(Problem::MissingWal {
                        segment: name(missing),
                        after: name(p),
                    });
                }
            }
            previous = Some(n);
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_parse_and_gaps_are_named() {
        let s = Segment::parse("15-1/0000000100000000/0000000100000001000000FF-ab2a.gz").unwrap();
        assert_eq!((s.timeline, s.number), (1, 511));
        assert_eq!(s.name(), "0000000100000001000000FF");
        assert!(
            Segment::parse("15-1/0000000100000000/000000010000000000000002.00000028.backup")
                .is_none()
        );
        assert!(Segment::parse("15-1/00000002.history").is_none());
        let names = [
            "0000000100000000000000FE",
            "000000010000000100000001",
            "000000020000000100000005",
        ];
        let gaps = wal_gaps(
            names
                .iter()
                .map(|n| Segment::parse(&format!("{n}-x.gz")).unwrap()),
        );
        assert_eq!(
            gaps,
            vec![
                Problem::MissingWal {
                    segment: "0000000100000000000000FF".into(),
                    after: "0000000100000000000000FE".into()
                },
                Problem::MissingWal {
                    segment: "000000010000000100000000".into(),
                    after: "0000000100000000000000FE".into()
                },
            ]
        );
    }

    #[test]
    fn the_verify_log_names_missing_and_corrupted_files() {
        let log = "P01   INFO: invalid result 15-1/0000000100000000/000000010000000000000003-65f3.gz: [29] raised from local-1 protocol: zlib threw error\n\
                   P01   INFO: file missing '20261203-213720F/pg_data/global/2964.gz'\n\
                   P01   INFO: invalid checksum '20261207-181748F/pg_data/base/16384/2838.lz4'\n\
                   P00   INFO: stanza: ghostworks\n                                    status: error\n";
        assert_eq!(
            verify_problems(log),
            vec![
                Problem::Invalid {
                    file: "15-1/0000000100000000/000000010000000000000003-65f3.gz".into(),
                    reason: "[29] raised from local-1 protocol: zlib threw error".into()
                },
                Problem::MissingBackupFile("20261203-213720F/pg_data/global/2964.gz".into()),
                Problem::Invalid {
                    file: "20261207-181748F/pg_data/base/16384/2838.lz4".into(),
                    reason: "its checksum differs from the backup's manifest".into()
                },
            ]
        );
        assert!(verify_problems("status: ok\n").is_empty());
        assert_eq!(verify_problems("  status: error\n").len(), 1);
    }
}
