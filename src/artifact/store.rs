//! Versions on disk: `<output.dir>/<job>/v<N>/` plus a `latest` link.
//!
//! A version is written in full under a hidden staging directory, then claimed and published
//! under the job's lock file: the next number is taken, the staging directory is renamed to
//! `v<N>` (one atomic rename), and `latest` is replaced by renaming a fresh link over it. A
//! crash or kill at any moment leaves either no `v<N>` or a complete one; leftover staging
//! directories of dead processes are removed by the next run. The lock (`flock`, released by the
//! kernel when a process dies) is held only for the claim, so concurrent runs of one job each
//! publish their own complete version.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::ArtifactError;

const STAGING_PREFIX: &str = ".staging-";
const LOCK_FILE: &str = ".lock";
const COUNTER_FILE: &str = ".last-version";
pub const LATEST: &str = "latest";

/// Environment variable that makes publishing fail after every file is written (for tests of
/// the failure path; documented in the README).
pub const FAIL_BEFORE_PUBLISH: &str = "SUBMIT_FAIL_BEFORE_PUBLISH";

fn io_error(path: &Path, action: &str) -> impl FnOnce(std::io::Error) -> ArtifactError {
    let path = path.to_path_buf();
    let action = action.to_owned();
    move |source| ArtifactError::Io {
        path,
        action,
        source,
    }
}

/// A version being written; removed on drop unless published.
pub struct Staging {
    job_dir: PathBuf,
    dir: PathBuf,
    published: bool,
}

pub struct Published {
    pub version: u32,
    pub dir: PathBuf,
    /// Whether `latest` now points at this version.
    pub promoted: bool,
}

/// The version `latest` points at, if it points at one.
pub fn current_latest(job_dir: &Path) -> Option<(u32, PathBuf)> {
    let target = fs::read_link(job_dir.join(LATEST)).ok()?;
    let name = target.file_name()?.to_str()?.to_owned();
    let version = name.strip_prefix('v')?.parse().ok()?;
    let dir = job_dir.join(&name);
    dir.join(super::MANIFEST)
        .is_file()
        .then_some((version, dir))
}

/// Holds the job's lock (released on drop, or by the kernel if the process dies).
pub struct JobLock {
    _file: File,
}

/// Takes the job's lock, waiting for another run's publish (held only for moments).
pub fn lock_job(job_dir: &Path) -> Result<JobLock, ArtifactError> {
    let lock_path = job_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path, "open the lock file"))?;
    file.lock().map_err(io_error(&lock_path, "lock"))?;
    Ok(JobLock { _file: file })
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission; nothing is sent.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes what killed runs left behind, once their process is gone: staging directories
/// (`.staging-<pid>-<time>`), versions half deleted by `models gc` (`.deleting-v<N>-<pid>`) and
/// temporary `latest` links (`.latest-<pid>`).
pub fn clean_stale_staging(job_dir: &Path) {
    let Ok(entries) = fs::read_dir(job_dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid: Option<i32> = if let Some(rest) = name.strip_prefix(STAGING_PREFIX) {
            rest.split('-').next().and_then(|pid| pid.parse().ok())
        } else if let Some(rest) = name.strip_prefix(".deleting-") {
            rest.rsplit('-').next().and_then(|pid| pid.parse().ok())
        } else if let Some(rest) = name.strip_prefix(".latest-") {
            rest.parse().ok()
        } else {
            None
        };
        if pid.is_some_and(|pid| !process_alive(pid)) {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                let _ = fs::remove_dir_all(&path);
            } else {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

impl Staging {
    pub fn create(output_dir: &Path, job: &str) -> Result<Staging, ArtifactError> {
        let job_dir = output_dir.join(job);
        fs::create_dir_all(&job_dir).map_err(io_error(&job_dir, "create the job directory"))?;
        clean_stale_staging(&job_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let dir = job_dir.join(format!("{STAGING_PREFIX}{}-{nanos}", std::process::id()));
        fs::create_dir(&dir).map_err(io_error(&dir, "create the staging directory"))?;
        Ok(Staging {
            job_dir,
            dir,
            published: false,
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
        self.publish_gated(|_, _| Ok(true))
    }

    /// As [`Staging::publish`], but under the lock `decide(current latest, staging dir)` says
    /// whether `latest` moves to the new version (and may write files into the staging
    /// directory first, such as a manifest recording the decision).
    pub fn publish_gated(
        mut self,
        decide: impl FnOnce(Option<(u32, PathBuf)>, &Path) -> Result<bool, ArtifactError>,
    ) -> Result<Published, ArtifactError> {
        if std::env::var_os(FAIL_BEFORE_PUBLISH).is_some() {
            return Err(ArtifactError::Injected);
        }
        let lock = lock_job(&self.job_dir)?;
        let promote = decide(current_latest(&self.job_dir), &self.dir)?;
        let counter_path = self.job_dir.join(COUNTER_FILE);
        let counted: u32 = fs::read_to_string(&counter_path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        let version = versions(&self.job_dir)?
            .last()
            .copied()
            .unwrap_or(0)
            .max(counted)
            + 1;
        let dir = self.job_dir.join(format!("v{version}"));
        fs::rename(&self.dir, &dir).map_err(io_error(&dir, "publish (rename) the version"))?;
        self.published = true;
        fs::write(&counter_path, version.to_string())
            .map_err(io_error(&counter_path, "record the version number"))?;
        if promote {
            point_latest(&self.job_dir, version)?;
        }
        sync_directory(&self.job_dir)?;
        drop(lock);
        Ok(Published {
            version,
            dir,
            promoted: promote,
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
pub fn point_latest(job_dir: &Path, version: u32) -> Result<(), ArtifactError> {
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
pub fn versions(job_dir: &Path) -> Result<Vec<u32>, ArtifactError> {
    let entries = match fs::read_dir(job_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(job_dir, "list versions")(error)),
    };
    let mut numbers: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_prefix('v')?.parse().ok()
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
