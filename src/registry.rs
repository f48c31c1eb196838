//! `submit models ...`: the versions a job has published, read back from disk, and the few
//! changes a person makes to them by hand (which one is `latest`, removing old ones). Every
//! change to `latest` is one atomic rename under the job's lock, as when publishing.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::artifact::{self, store};
use crate::cli::ModelsAction;

/// A registry command that cannot be carried out (exit code 3, like other input problems).
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct RegistryError {
    pub path: PathBuf,
    pub problem: String,
}

fn problem(path: &Path, problem: impl Into<String>) -> RegistryError {
    RegistryError {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// What a command prints: lines for a person and one JSON value for `--json`.
pub struct Output {
    pub human: String,
    pub json: Value,
}

pub fn run(action: &ModelsAction) -> anyhow::Result<Output> {
    match action {
        ModelsAction::List { dir } => list(dir),
        ModelsAction::Show { version } => show(version),
        ModelsAction::Diff { first, second } => diff(first, second),
        ModelsAction::Promote { version } => promote(version),
        ModelsAction::Rollback { job_dir } => rollback(job_dir),
        ModelsAction::Gc { job_dir, keep } => gc(job_dir, *keep),
        ModelsAction::Verify { path } => verify(path),
        ModelsAction::History { job_dir } => history(job_dir),
        ModelsAction::Report {
            version,
            compare,
            out,
        } => report(version, compare, out.as_deref()),
    }
}

/// A version's files for its report, each checked against the manifest's hashes first;
/// versions from before reports have no curves (their charts are left out).
fn report_files(path: &Path) -> anyhow::Result<crate::report::html::VersionFiles> {
    let (_, number, dir) = resolve_version(path)?;
    let (manifest, metrics) = artifact::load_description(&dir, artifact::verify::Depth::Hashes)?;
    let read = |name: &str| fs::read_to_string(dir.join(name)).ok();
    let curves = read(artifact::CURVES)
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| json!({}));
    Ok(crate::report::html::VersionFiles {
        label: format!("v{number}"),
        manifest: serde_json::to_value(&manifest)?,
        metrics,
        curves,
        resolved_toml: read(artifact::RESOLVED_JOB).unwrap_or_default(),
    })
}

fn report(version: &Path, compare: &[PathBuf], out: Option<&Path>) -> anyhow::Result<Output> {
    let mut versions = vec![report_files(version)?];
    for other in compare {
        versions.push(report_files(other)?);
    }
    let job = versions[0].manifest["job"]
        .as_str()
        .unwrap_or("job")
        .to_owned();
    let html = if versions.len() == 1 {
        crate::report::html::render(&versions[0])
    } else {
        crate::report::html::compare(&versions)
    };
    let path = out.map_or_else(
        || {
            PathBuf::from(format!(
                "{job}-{}{}.html",
                versions[0].label,
                if versions.len() > 1 { "-compare" } else { "" }
            ))
        },
        Path::to_path_buf,
    );
    // Written beside its final name and renamed: a reader never sees half a page.
    let temporary = path.with_extension(format!("html.{}.tmp", std::process::id()));
    fs::write(&temporary, &html)
        .and_then(|()| fs::rename(&temporary, &path))
        .map_err(|error| {
            let _ = fs::remove_file(&temporary);
            crate::artifact::ArtifactError::Io {
                path: path.clone(),
                action: "write".to_owned(),
                cause: error,
            }
        })?;
    let labels: Vec<&str> = versions
        .iter()
        .map(|version| version.label.as_str())
        .collect();
    Ok(Output {
        human: format!("wrote {} ({job} {})\n", path.display(), labels.join(", ")),
        json: json!({"status": "ok", "report": path.display().to_string(), "job": job, "versions": labels}),
    })
}

fn is_job_dir(dir: &Path) -> bool {
    dir.join(store::LATEST).exists()
        || store::versions(dir).is_ok_and(|versions| !versions.is_empty())
}

/// `dir` itself when it is a job folder, else the job folders directly under it, sorted.
fn job_dirs_under(dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
    if is_job_dir(dir) {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|error| problem(dir, error.to_string()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir() && is_job_dir(path))
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn list(dir: &Path) -> anyhow::Result<Output> {
    if !dir.is_dir() {
        return Err(problem(
            dir,
            "no such directory (give a job's folder, e.g. models/quickstart, or the output folder)",
        )
        .into());
    }
    let job_dirs = job_dirs_under(dir)?;
    let mut human = String::new();
    let mut jobs = Vec::new();
    for job_dir in job_dirs {
        let state = store::LatestState::read(&job_dir);
        let latest = state.version();
        human.push_str(&format!(
            "{}\n  {:<8} {:<25} {:<14} {:<22} latest\n",
            job_dir.display(),
            "version",
            "created",
            "algorithm",
            "metric"
        ));
        let mut versions = Vec::new();
        for version in store::versions(&job_dir)? {
            let dir = job_dir.join(format!("v{version}"));
            let (manifest, metrics) =
                match artifact::load_description(&dir, artifact::verify::Depth::Sizes) {
                    Ok(description) => description,
                    Err(error) => {
                        let why = error.to_string();
                        human.push_str(&format!(
                            "  v{version:<7} damaged or incomplete: {why}{}\n",
                            if latest == Some(version) {
                                "  (latest)"
                            } else {
                                ""
                            }
                        ));
                        versions.push(json!({
                            "version": version,
                            "complete": false,
                            "problem": why,
                            "latest": latest == Some(version),
                            "dir": dir.display().to_string(),
                        }));
                        continue;
                    }
                };
            let metric = artifact::headline_metric(&metrics);
            let is_latest = latest == Some(version);
            human.push_str(&format!(
                "  v{version:<7} {:<25} {:<14} {:<22} {}\n",
                manifest.created_at,
                manifest.algorithm,
                metric.map_or("-".to_owned(), |(name, value)| format!("{name} {value:.4}")),
                if is_latest { "*" } else { "" },
            ));
            versions.push(json!({
                "version": version,
                "complete": true,
                "created_at": manifest.created_at,
                "algorithm": manifest.algorithm,
                "metric": metric.map(|(name, _)| name),
                "value": metric.map(|(_, value)| value),
                "latest": is_latest,
                "dir": dir.display().to_string(),
            }));
        }
        let latest_problem = state.problem();
        if let Some(problem) = &latest_problem {
            human.push_str(&format!("  note: {problem}\n"));
        }
        jobs.push(json!({
            "job_dir": job_dir.display().to_string(),
            "latest": latest,
            "latest_problem": latest_problem,
            "versions": versions,
        }));
    }
    if jobs.is_empty() {
        human.push_str(&format!("no published versions under {}\n", dir.display()));
    }
    Ok(Output {
        human,
        json: json!({"status": "ok", "jobs": jobs}),
    })
}

/// A version directory (or `latest`), resolved: (job dir, version number, version dir).
fn resolve_version(path: &Path) -> Result<(PathBuf, u64, PathBuf), RegistryError> {
    let resolved = fs::canonicalize(path).map_err(|error| problem(path, error.to_string()))?;
    let name = resolved
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default()
        .to_owned();
    let version: u64 = name
        .strip_prefix('v')
        .and_then(|number| number.parse().ok())
        .ok_or_else(|| {
            problem(
                path,
                "not a version directory (expected .../<job>/v<N> or .../<job>/latest)",
            )
        })?;
    let job_dir = resolved
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| problem(path, "a version directory has a job folder above it"))?;
    Ok((job_dir, version, resolved))
}

fn show(version: &Path) -> anyhow::Result<Output> {
    let (_, _, dir) = resolve_version(version)?;
    let (manifest, metrics) = artifact::load_description(&dir, artifact::verify::Depth::Sizes)?;
    let value = json!({
        "status": "ok",
        "dir": dir.display().to_string(),
        "manifest": serde_json::to_value(&manifest)?,
        "metrics": metrics,
    });
    let human = format!(
        "{}\nmanifest.json:\n{}\nmetrics.json:\n{}\n",
        dir.display(),
        serde_json::to_string_pretty(&value["manifest"])?,
        serde_json::to_string_pretty(&value["metrics"])?
    );
    Ok(Output { human, json: value })
}

/// Top-level scalars of an object, as `key -> value` (nested objects flattened with dots).
fn flatten(value: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    if let Value::Object(map) = value {
        for (key, inner) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match inner {
                Value::Object(_) => flatten(inner, &path, out),
                Value::Array(_) => {}
                scalar => out.push((path, scalar.clone())),
            }
        }
    }
}

fn diff(first: &Path, second: &Path) -> anyhow::Result<Output> {
    let (_, first_number, first_dir) = resolve_version(first)?;
    let (_, second_number, second_dir) = resolve_version(second)?;
    let mut human = format!(
        "{:<36} {:>20} {:>20} {:>14}\n",
        "",
        format!("v{first_number}"),
        format!("v{second_number}"),
        "delta"
    );
    // Each version's parameters and metrics, read (and checked) once.
    let describe = |dir: &Path| -> anyhow::Result<[Value; 2]> {
        let (manifest, metrics) = artifact::load_description(dir, artifact::verify::Depth::Sizes)?;
        Ok([manifest.params, metrics])
    };
    let (first_values, second_values) = (describe(&first_dir)?, describe(&second_dir)?);
    let mut sections = serde_json::Map::new();
    for (index, section) in ["params", "metrics"].into_iter().enumerate() {
        let flat = |value: &Value| {
            let mut flat = Vec::new();
            flatten(value, "", &mut flat);
            flat
        };
        let (a, b) = (flat(&first_values[index]), flat(&second_values[index]));
        let mut keys: Vec<String> = a.iter().chain(&b).map(|(key, _)| key.clone()).collect();
        keys.sort();
        keys.dedup();
        keys.retain(|key| !key.starts_with("timings_s") && !key.starts_with("peak_"));
        human.push_str(&format!("{section}:\n"));
        let mut rows = Vec::new();
        for key in keys {
            let find = |list: &[(String, Value)]| {
                list.iter()
                    .find(|(name, _)| *name == key)
                    .map(|(_, value)| value.clone())
                    .unwrap_or(Value::Null)
            };
            let (old, new) = (find(&a), find(&b));
            let delta = match (old.as_f64(), new.as_f64()) {
                (Some(old), Some(new)) if old != new => Some(new - old),
                _ => None,
            };
            let show = |value: &Value| match value {
                Value::Null => "-".to_owned(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            human.push_str(&format!(
                "  {:<34} {:>20} {:>20} {:>14}{}\n",
                key,
                show(&old),
                show(&new),
                delta.map_or(String::new(), |delta| format!("{delta:+.6}")),
                if old != new { "  *" } else { "" },
            ));
            rows.push(json!({"key": key, "first": old, "second": new, "delta": delta, "changed": old != new}));
        }
        sections.insert(section.to_owned(), Value::Array(rows));
    }
    Ok(Output {
        human,
        json: json!({
            "status": "ok",
            "first": first_dir.display().to_string(),
            "second": second_dir.display().to_string(),
            "params": sections.remove("params"),
            "metrics": sections.remove("metrics"),
        }),
    })
}

fn promote(version: &Path) -> anyhow::Result<Output> {
    let (job_dir, number, _) = resolve_version(version)?;
    let _lock = store::lock_job(&job_dir)?;
    // Checked again under the lock: `models gc` or another command may have changed the job
    // since the path was resolved.
    let dir = job_dir.join(format!("v{number}"));
    artifact::verify_version(&dir)?;
    let state = store::LatestState::read(&job_dir);
    if let Some(blocked) = state.blocks_move() {
        return Err(problem(&job_dir, blocked).into());
    }
    let previous = state.version();
    store::move_latest(&job_dir, previous, number, "promote", "models promote")?;
    Ok(moved(&job_dir, previous, number, "promote"))
}

fn moved(job_dir: &Path, previous: Option<u64>, now: u64, action: &str) -> Output {
    Output {
        human: format!(
            "{}: latest -> v{now}{}\n",
            job_dir.display(),
            previous.map_or(String::new(), |previous| format!(" (was v{previous})"))
        ),
        json: json!({"status": "ok", "action": action, "job_dir": job_dir.display().to_string(), "latest": now, "previous": previous}),
    }
}

/// The versions that were `latest`, oldest first, as a stack that rollbacks pop: a run's or
/// promote's change pushes its target, a rollback pops the version it left.
fn promoted_stack(entries: &[store::HistoryEntry]) -> Vec<u64> {
    let mut stack: Vec<u64> = Vec::new();
    for entry in entries {
        if entry.by == "rollback" {
            if stack.last().copied() == entry.from {
                stack.pop();
            }
            if stack.last() != Some(&entry.to) {
                stack.push(entry.to);
            }
        } else {
            stack.push(entry.to);
        }
    }
    stack
}

/// Whether a version's own manifest says the promotion gate turned it down (for job folders
/// from before the history was kept).
fn was_rejected(dir: &Path) -> bool {
    artifact::load_manifest(dir).is_ok_and(|manifest| {
        manifest
            .promotion
            .is_some_and(|promotion| promotion["promoted"] == Value::Bool(false))
    })
}

fn rollback(job_dir: &Path) -> anyhow::Result<Output> {
    if !is_job_dir(job_dir) {
        return Err(problem(job_dir, "not a job folder with published versions").into());
    }
    let _lock = store::lock_job(job_dir)?;
    let current = store::current_latest(job_dir)
        .map(|(version, _)| version)
        .ok_or_else(|| problem(job_dir, "`latest` points at no complete version"))?;
    let history = store::read_history(job_dir)?;
    let mut candidates: Vec<u64> = if history.is_empty() {
        // No history (a job folder from before it was kept): the older versions that the
        // promotion gate did not turn down.
        store::versions(job_dir)?
            .into_iter()
            .filter(|&version| {
                version < current && !was_rejected(&job_dir.join(format!("v{version}")))
            })
            .collect()
    } else {
        let mut stack = promoted_stack(&history);
        stack.retain(|&version| version != current);
        stack
    };
    let mut skipped = Vec::new();
    while let Some(candidate) = candidates.pop() {
        let dir = job_dir.join(format!("v{candidate}"));
        match artifact::verify_version(&dir) {
            Ok(_) => {
                store::move_latest(
                    job_dir,
                    Some(current),
                    candidate,
                    "rollback",
                    "models rollback: back to the previously promoted version",
                )?;
                let mut output = moved(job_dir, Some(current), candidate, "rollback");
                for (version, why) in &skipped {
                    output
                        .human
                        .push_str(&format!("  skipped v{version}: {why}\n"));
                }
                output.json["skipped"] = json!(
                    skipped
                        .iter()
                        .map(|(version, why)| json!({"version": version, "problem": why}))
                        .collect::<Vec<_>>()
                );
                return Ok(output);
            }
            Err(error) => skipped.push((candidate, error.to_string())),
        }
    }
    let mut message =
        format!("no earlier promoted version of this job to roll back to from v{current}");
    for (version, why) in &skipped {
        message.push_str(&format!("\n  v{version} cannot be used: {why}"));
    }
    Err(problem(job_dir, message).into())
}

fn history(job_dir: &Path) -> anyhow::Result<Output> {
    if !is_job_dir(job_dir) {
        return Err(problem(job_dir, "not a job folder with published versions").into());
    }
    let entries = store::read_history(job_dir)?;
    let mut human = format!("{}\n", job_dir.display());
    if entries.is_empty() {
        human.push_str("  no promotion history (it is kept from this version of submit on)\n");
    }
    for entry in &entries {
        human.push_str(&format!(
            "  {:<25} {:>6} -> {:<6} {:<9} {}\n",
            entry.at,
            entry.from.map_or("-".to_owned(), |from| format!("v{from}")),
            format!("v{}", entry.to),
            entry.by,
            entry.reason
        ));
    }
    Ok(Output {
        human,
        json: json!({"status": "ok", "job_dir": job_dir.display().to_string(), "history": entries}),
    })
}

/// Version directories `path` stands for: itself (a version), every version of a job folder,
/// or every version of every job under an output folder.
fn versions_under(path: &Path) -> Result<Vec<PathBuf>, RegistryError> {
    if !path.exists() {
        return Err(problem(path, "no such file or directory"));
    }
    if path.join(artifact::MANIFEST).exists()
        || path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name == store::LATEST || name.starts_with('v'))
            && !is_job_dir(path)
    {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    for job_dir in job_dirs_under(path)? {
        let numbers =
            store::versions(&job_dir).map_err(|error| problem(&job_dir, error.to_string()))?;
        found.extend(
            numbers
                .into_iter()
                .map(|version| job_dir.join(format!("v{version}"))),
        );
    }
    Ok(found)
}

fn verify(path: &Path) -> anyhow::Result<Output> {
    let dirs = versions_under(path)?;
    if dirs.is_empty() {
        return Err(problem(path, "no published versions here").into());
    }
    let mut human = String::new();
    let mut checked = Vec::new();
    for dir in &dirs {
        let manifest = artifact::verify_version(dir).map_err(|error| {
            problem(
                dir,
                format!(
                    "damaged: {error}{}",
                    if checked.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({} version(s) checked before it were sound)",
                            checked.len()
                        )
                    }
                ),
            )
        })?;
        let bytes: u64 = manifest
            .files
            .iter()
            .map(|entry| match entry {
                artifact::verify::FileEntry::Recorded { size, .. } => *size,
                artifact::verify::FileEntry::Named(_) => 0,
            })
            .sum();
        let note = if manifest.format_version < 2 {
            " (format 1: file hashes were not recorded, only presence and the model were checked)"
        } else {
            ""
        };
        human.push_str(&format!(
            "{}: ok, {} files, {bytes} bytes{note}\n",
            dir.display(),
            manifest.files.len() + 1
        ));
        checked.push(json!({
            "dir": dir.display().to_string(),
            "ok": true,
            "files": manifest.files.len() + 1,
            "bytes": bytes,
            "hashed": manifest.format_version >= 2,
        }));
    }
    Ok(Output {
        human,
        json: json!({"status": "ok", "verified": checked}),
    })
}

fn gc(job_dir: &Path, keep: usize) -> anyhow::Result<Output> {
    if !is_job_dir(job_dir) {
        return Err(problem(job_dir, "not a job folder with published versions").into());
    }
    let _lock = store::lock_job(job_dir)?;
    let latest = store::current_latest(job_dir).map(|(version, _)| version);
    let versions = store::versions(job_dir)?;
    let cut = versions.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for &version in &versions[..cut] {
        if Some(version) == latest {
            continue;
        }
        // Renamed first, so a removal cut short never leaves a half version named v<N>.
        let dir = job_dir.join(format!("v{version}"));
        let doomed = job_dir.join(format!(".deleting-v{version}-{}", std::process::id()));
        fs::rename(&dir, &doomed).map_err(|error| problem(&dir, error.to_string()))?;
        fs::remove_dir_all(&doomed).map_err(|error| problem(&doomed, error.to_string()))?;
        removed.push(version);
    }
    let kept: Vec<u64> = store::versions(job_dir)?;
    Ok(Output {
        human: format!(
            "{}: removed {} version(s){}; kept {}\n",
            job_dir.display(),
            removed.len(),
            if removed.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    removed
                        .iter()
                        .map(|v| format!("v{v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            kept.iter()
                .map(|v| format!("v{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        json: json!({"status": "ok", "action": "gc", "removed": removed, "kept": kept, "latest": latest}),
    })
}
