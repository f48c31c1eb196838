//! Versions on disk: `<output.dir>/<job>/v<N>/` plus a `latest` link.
//!
//! A version is written in full under a hidden staging directory, then claimed and published
//! under the job's lock file: the next number is taken, the staging directory is renamed to
//! `v<N>` (one atomic rename), and `latest` is replaced by renaming a fresh link over it. A
//! crash or kill at any moment leaves either no `v<N>` or a complete one; leftover staging
//! directories of dead processes are removed by the next run. The lock (`flock`, released by the
//! kernel when a process dies) is held only for the claim, so concurrent runs of one job each
//! publish their own complete version.
//!
//! A writer holds a lock on its own staging directory for as long as it lives, so another run
//! (even one in a different PID namespace, such as a second container on the same volume)
//! removes a staging directory only when nobody holds it. Every change of `latest` is appended
//! to `history.jsonl` (fsynced), which is what `models rollback` reads.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::{ArtifactError, io_error};

const STAGING_PREFIX: &str = ".staging-";
/// A staging directory before its writer holds its lock (renamed to `.staging-` once it does).
const CREATING_PREFIX: &str = ".creating-";
pub const HISTORY_FILE: &str = "history.jsonl";
const LOCK_FILE: &str = ".lock";
const COUNTER_FILE: &str = ".last-version";
pub const LATEST: &str = "latest";

/// Environment variable that makes publishing fail after every file is written (for tests of
/// the failure path; documented in the README).
pub const FAIL_BEFORE_PUBLISH: &str = "SUBMIT_FAIL_BEFORE_PUBLISH";

/// A version being written; removed on drop unless published.
pub struct Staging {
    job_dir: PathBuf,
    dir: PathBuf,
    published: bool,
    /// The lock on the staging directory that tells other runs its writer is alive.
    _owner: File,
}

pub struct Published {
    pub version: u64,
    pub dir: PathBuf,
    /// Whether `latest` now points at this version.
    pub promoted: bool,
    /// Why `latest` could not be moved to this version although it was to be promoted.
    pub latest_error: Option<String>,
}

/// What `latest` is in a job directory.
#[derive(Clone, Debug, PartialEq)]
pub enum LatestState {
    Absent,
    /// A link to `v<N>`, which has a manifest.
    Version(u64),
    /// A link to something that is not a published version (removed by hand, or not `v<N>`).
    Dangling(String),
    /// Not a link at all (a directory or a file put there by hand).
    NotALink(&'static str),
}

impl LatestState {
    pub fn read(job_dir: &Path) -> LatestState {
        let path = job_dir.join(LATEST);
        let Ok(metadata) = fs::symlink_metadata(&path) else {
            return LatestState::Absent;
        };
        if !metadata.file_type().is_symlink() {
            return LatestState::NotALink(if metadata.is_dir() {
                "a directory"
            } else {
                "a file"
            });
        }
        let target = fs::read_link(&path).unwrap_or_default();
        let shown = target.display().to_string();
        let version = target
            .to_str()
            .and_then(|name| name.strip_prefix('v'))
            .and_then(|number| number.parse::<u64>().ok());
        match version {
            Some(version)
                if job_dir
                    .join(format!("v{version}"))
                    .join(super::MANIFEST)
                    .is_file() =>
            {
                LatestState::Version(version)
            }
            _ => LatestState::Dangling(shown),
        }
    }

    /// The version `latest` points at, if it points at one.
    pub fn version(&self) -> Option<u64> {
        match self {
            LatestState::Version(version) => Some(*version),
            _ => None,
        }
    }

    /// Why `latest` cannot be replaced by a new link (something that is not a link is in its
    /// place); `None` when it can.
    pub fn blocks_move(&self) -> Option<String> {
        match self {
            LatestState::NotALink(_) => self.problem(),
            _ => None,
        }
    }

    /// A sentence for `models list` and error messages; `None` when all is well.
    pub fn problem(&self) -> Option<String> {
        match self {
            LatestState::Absent | LatestState::Version(_) => None,
            LatestState::Dangling(target) => Some(format!(
                "`latest` points at {target}, which is not a complete version; run `submit models promote` on one"
            )),
            LatestState::NotALink(kind) => Some(format!(
                "`latest` is {kind}, not a link to a version, so it cannot be moved; remove it, then run `submit models promote` on the version to serve"
            )),
        }
    }
}

/// The version `latest` points at, if it points at one.
pub fn current_latest(job_dir: &Path) -> Option<(u64, PathBuf)> {
    LatestState::read(job_dir)
        .version()
        .map(|version| (version, job_dir.join(format!("v{version}"))))
}

/// Holds the job's lock (released on drop, or by the kernel if the process dies).
pub struct JobLock {
    _file: File,
}

fn open_lock(job_dir: &Path) -> Result<File, ArtifactError> {
    let lock_path = job_dir.join(LOCK_FILE);
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path, "open the lock file"))
}

/// Takes the job's lock, waiting for another run's publish (held only for moments).
pub fn lock_job(job_dir: &Path) -> Result<JobLock, ArtifactError> {
    let file = open_lock(job_dir)?;
    file.lock()
        .map_err(io_error(&job_dir.join(LOCK_FILE), "lock"))?;
    Ok(JobLock { _file: file })
}

/// Whether nobody holds a lock on `path` (a directory or file a writer locks while it lives);
/// the probe's own lock is released when it returns.
pub(crate) fn unheld(path: &Path) -> bool {
    File::open(path).is_ok_and(|file| file.try_lock().is_ok())
}

fn remove_any(path: &Path) {
    let is_dir = fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_dir());
    if is_dir {
        let _ = fs::remove_dir_all(path);
    } else {
        let _ = fs::remove_file(path);
    }
}

/// Removes what killed runs left behind: staging directories whose writer no longer holds
/// their lock, directories a writer died creating (after an hour), and, when no command holds
/// the job's lock, versions half deleted by `models gc` (`.deleting-v<N>-<pid>`) and temporary
/// `latest` links (`.latest-<pid>`), which exist only under that lock.
pub fn clean_stale_staging(job_dir: &Path) {
    let Ok(entries) = fs::read_dir(job_dir) else {
        return;
    };
    let mut under_job_lock = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with(STAGING_PREFIX) {
            if unheld(&path) {
                remove_any(&path);
            }
        } else if name.starts_with(CREATING_PREFIX) {
            let old = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600);
            if old {
                remove_any(&path);
            }
        } else if name.starts_with(".deleting-") || name.starts_with(".latest-") {
            under_job_lock.push(path);
        }
    }
    if under_job_lock.is_empty() {
        return;
    }
    let Ok(lock) = open_lock(job_dir) else {
        return;
    };
    if lock.try_lock().is_ok() {
        for path in under_job_lock {
            remove_any(&path);
        }
    }
}

/// One change of `latest`, as `history.jsonl` records it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub at: String,
    pub from: Option<u64>,
    pub to: u64,
    /// `run`, `promote` or `rollback`.
    pub by: String,
    pub reason: String,
    #[serde(default)]
    pub pid: u32,
}

/// Appends to the promotion history and flushes it to disk (call under the job's lock).
pub fn append_history(job_dir: &Path, entry: &HistoryEntry) -> Result<(), ArtifactError> {
    let path = job_dir.join(HISTORY_FILE);
    let mut line = serde_json::to_string(entry).unwrap_or_default();
    line.push('\n');
    let mut file = File::options()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_error(&path, "open the promotion history"))?;
    std::io::Write::write_all(&mut file, line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(&path, "append to the promotion history"))
}

/// The promotion history, oldest first; lines that do not parse (a torn last line after a
/// crash) are left out.
pub fn read_history(job_dir: &Path) -> Result<Vec<HistoryEntry>, ArtifactError> {
    let path = job_dir.join(HISTORY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(io_error(&path, "read the promotion history")(error)),
    }
}

/// Points `latest` at `v<to>` and records the change (call under the job's lock).
pub fn move_latest(
    job_dir: &Path,
    from: Option<u64>,
    to: u64,
    by: &str,
    reason: &str,
) -> Result<(), ArtifactError> {
    point_latest(job_dir, to)?;
    append_history(
        job_dir,
        &HistoryEntry {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            from,
            to,
            by: by.to_owned(),
            reason: reason.to_owned(),
            pid: std::process::id(),
        },
    )?;
    sync_directory(job_dir)
}

impl Staging {
    pub fn create(output_dir: &Path, job: &str) -> Result<Staging, ArtifactError> {
        let job_dir = output_dir.join(job);
        fs::create_dir_all(&job_dir).map_err(io_error(&job_dir, "create the job directory"))?;
        clean_stale_staging(&job_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let stem = format!("{}-{nanos}", std::process::id());
        let creating = job_dir.join(format!("{CREATING_PREFIX}{stem}"));
        fs::create_dir(&creating).map_err(io_error(&creating, "create the staging directory"))?;
        let owner = File::open(&creating)
            .and_then(|owner| owner.lock().map(|()| owner))
            .map_err(io_error(&creating, "lock the staging directory"));
        let owner = match owner {
            Ok(owner) => owner,
            Err(error) => {
                let _ = fs::remove_dir(&creating);
                return Err(error);
            }
        };
        // Renamed only once locked, so a cleaner never sees an unlocked live staging directory.
        let dir = job_dir.join(format!("{STAGING_PREFIX}{stem}"));
        fs::rename(&creating, &dir).map_err(io_error(&dir, "create the staging directory"))?;
        Ok(Staging {
            job_dir,
            dir,
            published: false,
            _owner: owner,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes one file of the version and flushes it to disk.
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<(), ArtifactError> {
        let path = self.dir.join(name);
        let mut file = File::create(&path).map_err(io_error(&path, "create"))?;
        std::io::Write::write_all(&mut file, contents).map_err(io_error(&path, "write"))?;
        file.sync_all().map_err(io_error(&path, "flush"))
    }

    /// Writes one file of the version through `write` (buffered) and flushes it to disk, so a
    /// large file never has to be held in memory whole.
    pub fn write_with(
        &self,
        name: &str,
        write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<(), ArtifactError> {
        let path = self.dir.join(name);
        let file = File::create(&path).map_err(io_error(&path, "create"))?;
        let mut buffered = std::io::BufWriter::with_capacity(1 << 20, file);
        write(&mut buffered).map_err(io_error(&path, "write"))?;
        let file = buffered
            .into_inner()
            .map_err(|error| error.into_error())
            .map_err(io_error(&path, "write"))?;
        file.sync_all().map_err(io_error(&path, "flush"))
    }

    /// Flushes a file that was written into the staging directory by someone else.
    pub fn sync(&self, name: &str) -> Result<(), ArtifactError> {
        let path = self.dir.join(name);
        File::open(&path)
            .and_then(|file| file.sync_all())
            .map_err(io_error(&path, "flush"))
    }

    /// Claims the next version number and moves the staging directory into place; `latest`
    /// follows.
    pub fn publish(self) -> Result<Published, ArtifactError> {
        self.publish_gated(|_, _, _| Ok(true))
    }

    /// As [`Staging::publish`], but under the lock `decide(current latest, staging dir, the
    /// new version's number)` says whether `latest` moves to the new version (and may write
    /// files into the staging directory first, such as a manifest recording the decision).
    pub fn publish_gated(
        mut self,
        decide: impl FnOnce(Option<(u64, PathBuf)>, &Path, u64) -> Result<bool, ArtifactError>,
    ) -> Result<Published, ArtifactError> {
        if std::env::var_os(FAIL_BEFORE_PUBLISH).is_some() {
            return Err(ArtifactError::Injected);
        }
        let lock = lock_job(&self.job_dir)?;
        let latest = current_latest(&self.job_dir);
        let previous = latest.as_ref().map(|(version, _)| *version);
        let counter_path = self.job_dir.join(COUNTER_FILE);
        let counted: u64 = fs::read_to_string(&counter_path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        let highest = versions(&self.job_dir)?
            .last()
            .copied()
            .unwrap_or(0)
            .max(counted);
        let version = highest.checked_add(1).ok_or_else(|| ArtifactError::Refused {
            path: self.job_dir.clone(),
            problem: format!(
                "cannot number the next version: v{highest} (a directory or {COUNTER_FILE}) is the largest number there can be; remove it"
            ),
        })?;
        let promote = decide(latest, &self.dir, version)?;
        let dir = self.job_dir.join(format!("v{version}"));
        fs::rename(&self.dir, &dir).map_err(io_error(&dir, "publish (rename) the version"))?;
        self.published = true;
        fs::write(&counter_path, version.to_string())
            .map_err(io_error(&counter_path, "record the version number"))?;
        let latest_error = if promote {
            LatestState::read(&self.job_dir).blocks_move().or_else(|| {
                move_latest(
                    &self.job_dir,
                    previous,
                    version,
                    "run",
                    "published by a run",
                )
                .err()
                .map(|error| error.to_string())
            })
        } else {
            None
        };
        sync_directory(&self.job_dir)?;
        drop(lock);
        Ok(Published {
            version,
            dir,
            promoted: promote && latest_error.is_none(),
            latest_error,
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Replaces `latest` atomically with a link to `v<version>`.
fn point_latest(job_dir: &Path, version: u64) -> Result<(), ArtifactError> {
    let temporary = job_dir.join(format!(".latest-{}", std::process::id()));
    let _ = fs::remove_file(&temporary);
    std::os::unix::fs::symlink(format!("v{version}"), &temporary)
        .map_err(io_error(&temporary, "create the latest link"))?;
    let latest = job_dir.join(LATEST);
    fs::rename(&temporary, &latest).map_err(io_error(&latest, "replace the latest link"))
}

fn sync_directory(dir: &Path) -> Result<(), ArtifactError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(dir, "flush the directory"))
}

/// Published version numbers of a job directory, ascending.
pub fn versions(job_dir: &Path) -> Result<Vec<u64>, ArtifactError> {
    let entries = match fs::read_dir(job_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(job_dir, "list versions")(error)),
    };
    let mut numbers: Vec<u64> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let digits = name.strip_prefix('v')?;
            // `v007` is not v7: only the canonical spelling is a version.
            (!digits.starts_with('0') || digits == "0")
                .then(|| digits.parse().ok())
                .flatten()
        })
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_and_latest_follows() {
        let root = tempfile::tempdir().unwrap();
        for expected in 1..=3 {
            let staging = Staging::create(root.path(), "job").unwrap();
            staging.write("a.txt", b"x").unwrap();
            let published = staging.publish().unwrap();
            assert_eq!(published.version, expected);
        }
        let job = root.path().join("job");
        assert_eq!(versions(&job).unwrap(), vec![1, 2, 3]);
        assert_eq!(
            fs::read_link(job.join(LATEST)).unwrap(),
            PathBuf::from("v3")
        );
    }

    #[test]
    fn dropped_staging_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let staging = Staging::create(root.path(), "job").unwrap();
        staging.write("a.txt", b"x").unwrap();
        drop(staging);
        let left: Vec<_> = fs::read_dir(root.path().join("job")).unwrap().collect();
        assert!(left.is_empty());
    }
}
