//! What a version's manifest promises about its files (size and blake3 hash of each), written
//! when publishing and checked before anything loads, promotes or serves the version, so that a
//! truncated, edited or missing file is reported by name instead of being read.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{MANIFEST, VersionError};

/// One file of a version, as the manifest lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum FileEntry {
    /// Format 2 and later: the file's size and blake3 hash (hex).
    Recorded {
        path: String,
        size: u64,
        blake3: String,
    },
    /// Format 1 manifests named their files only.
    Named(String),
}

impl FileEntry {
    pub fn path(&self) -> &str {
        match self {
            FileEntry::Recorded { path, .. } => path,
            FileEntry::Named(path) => path,
        }
    }
}

fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> VersionError {
    let path = path.to_path_buf();
    move |error| VersionError::Read {
        path,
        problem: error.to_string(),
    }
}

fn damaged(path: &Path, problem: impl Into<String>) -> VersionError {
    VersionError::Damaged {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Hex blake3 of everything `reader` yields, and how many bytes that was.
fn hash_reader(mut reader: impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((size, hasher.finalize().to_hex().to_string()))
}

/// Files under `dir`, as `/`-separated paths relative to it, sorted; the manifest itself is not
/// among them (it cannot hold its own hash).
fn files_under(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in fs::read_dir(dir.join(&relative))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = relative.join(&name);
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if !(relative.as_os_str().is_empty() && name == MANIFEST) {
                found.push(
                    path.components()
                        .map(|part| part.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The size and hash of every file in a staging directory, for its manifest.
pub fn record_files(dir: &Path) -> std::io::Result<Vec<FileEntry>> {
    files_under(dir)?
        .into_iter()
        .map(|path| {
            let (size, blake3) = hash_reader(File::open(dir.join(&path))?)?;
            Ok(FileEntry::Recorded { path, size, blake3 })
        })
        .collect()
}

/// The path a manifest entry names, refused when it could leave the version directory.
fn entry_path(dir: &Path, entry: &FileEntry) -> Result<PathBuf, VersionError> {
    let relative = Path::new(entry.path());
    let inside = !entry.path().is_empty()
        && relative
            .components()
            .all(|part| matches!(part, Component::Normal(_)));
    if !inside {
        return Err(damaged(
            &dir.join(MANIFEST),
            format!(
                "lists the file {:?}, which is not a plain path inside the version",
                crate::text::shorten(entry.path(), 120)
            ),
        ));
    }
    Ok(dir.join(relative))
}

/// How thoroughly [`check_files`] looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Every listed file exists with its recorded size (what listing needs: a stat each).
    Sizes,
    /// And its contents hash to the recorded value.
    Hashes,
}

/// Checks the files the manifest lists. `skip` names files the caller hashes itself as it
/// reads them ([`read_checked`]).
pub fn check_files(
    dir: &Path,
    files: &[FileEntry],
    format_version: u32,
    depth: Depth,
    skip: &[&str],
) -> Result<(), VersionError> {
    for entry in files {
        let path = entry_path(dir, entry)?;
        let metadata = listed_file(&path)?;
        let FileEntry::Recorded { size, blake3, .. } = entry else {
            if format_version >= 2 {
                return Err(damaged(
                    &dir.join(MANIFEST),
                    format!(
                        "lists {} without its size and hash (format version {format_version} records both)",
                        entry.path()
                    ),
                ));
            }
            continue;
        };
        if metadata.len() != *size {
            return Err(wrong_size(&path, metadata.len(), *size));
        }
        if depth == Depth::Hashes && !skip.contains(&entry.path()) {
            let file = File::open(&path).map_err(read_error(&path))?;
            let (_, found) = hash_reader(file).map_err(read_error(&path))?;
            if &found != blake3 {
                return Err(hash_mismatch(&path, blake3, &found));
            }
        }
    }
    Ok(())
}

/// The metadata of a file the manifest lists, which must be there as a regular file.
fn listed_file(path: &Path) -> Result<fs::Metadata, VersionError> {
    let metadata = fs::symlink_metadata(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            damaged(path, "missing: the manifest lists it but it is not there")
        } else {
            read_error(path)(error)
        }
    })?;
    if !metadata.is_file() {
        return Err(damaged(path, "not a regular file"));
    }
    Ok(metadata)
}

fn wrong_size(path: &Path, found: u64, recorded: u64) -> VersionError {
    damaged(
        path,
        format!("is {found} bytes; the manifest recorded {recorded} (truncated or rewritten)"),
    )
}

fn hash_mismatch(path: &Path, recorded: &str, found: &str) -> VersionError {
    damaged(
        path,
        format!(
            "its contents do not match the manifest (blake3 {} recorded, {} found): the file was changed or damaged after publishing",
            &recorded[..recorded.len().min(16)],
            &found[..found.len().min(16)]
        ),
    )
}

/// Reads a version file whole and checks it against its manifest entry (the bytes checked are
/// the bytes returned, so nothing can change in between). A file the manifest does not list is
/// refused; so is anything but a regular file.
pub fn read_checked(
    dir: &Path,
    files: &[FileEntry],
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, VersionError> {
    let path = dir.join(name);
    let entry = files
        .iter()
        .find(|entry| entry.path() == name)
        .ok_or_else(|| {
            damaged(
                &dir.join(MANIFEST),
                format!("does not list {name}, the model file this version needs"),
            )
        })?;
    let metadata = listed_file(&path)?;
    if metadata.len() > limit {
        return Err(damaged(
            &path,
            format!(
                "is {} bytes, more than the {limit} bytes a model file may have",
                metadata.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    File::open(&path)
        .and_then(|file| file.take(limit + 1).read_to_end(&mut bytes))
        .map_err(read_error(&path))?;
    if let FileEntry::Recorded { size, blake3, .. } = entry {
        if bytes.len() as u64 != *size {
            return Err(wrong_size(&path, bytes.len() as u64, *size));
        }
        let found = blake3::hash(&bytes).to_hex().to_string();
        if &found != blake3 {
            return Err(hash_mismatch(&path, blake3, &found));
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_nested_files_and_notices_each_kind_of_damage() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(MANIFEST), "{}").unwrap();
        fs::write(dir.path().join("model.bin"), b"0123456789").unwrap();
        fs::create_dir(dir.path().join("nested")).unwrap();
        fs::write(dir.path().join("nested/part"), b"x").unwrap();
        let files = record_files(dir.path()).unwrap();
        let names: Vec<&str> = files.iter().map(FileEntry::path).collect();
        assert_eq!(names, ["model.bin", "nested/part"]);
        check_files(dir.path(), &files, 2, Depth::Hashes, &[]).unwrap();
        assert_eq!(
            read_checked(dir.path(), &files, "model.bin", 100).unwrap(),
            b"0123456789"
        );

        fs::write(dir.path().join("model.bin"), b"0123456788").unwrap();
        check_files(dir.path(), &files, 2, Depth::Sizes, &[]).unwrap();
        let error = check_files(dir.path(), &files, 2, Depth::Hashes, &[]).unwrap_err();
        assert!(error.to_string().contains("do not match"), "{error}");
        assert!(read_checked(dir.path(), &files, "model.bin", 100).is_err());

        fs::write(dir.path().join("model.bin"), b"012").unwrap();
        let error = check_files(dir.path(), &files, 2, Depth::Sizes, &[]).unwrap_err();
        assert!(error.to_string().contains("truncated"), "{error}");

        fs::remove_file(dir.path().join("nested/part")).unwrap();
        fs::write(dir.path().join("model.bin"), b"0123456789").unwrap();
        let error = check_files(dir.path(), &files, 2, Depth::Sizes, &[]).unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");

        let escaping = [FileEntry::Named("../outside".into())];
        assert!(check_files(dir.path(), &escaping, 1, Depth::Sizes, &[]).is_err());
        let unhashed = [FileEntry::Named("model.bin".into())];
        check_files(dir.path(), &unhashed, 1, Depth::Hashes, &[]).unwrap();
        assert!(check_files(dir.path(), &unhashed, 2, Depth::Hashes, &[]).is_err());
    }
}
