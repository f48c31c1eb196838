//! How a job runs on this machine: the thread pool for `local[N]`, the memory cap, and where
//! progress goes (bars on a terminal, timestamped plain lines under cron, nothing with --quiet).

pub mod mapped;
pub mod memory;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Builds the rayon pool with exactly `threads` workers and tells polars to use as many.
pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    // SAFETY: called once, from the main thread, before polars or any other thread of ours
    // starts (polars reads this variable once, when its own pool is first used).
    unsafe {
        std::env::set_var("POLARS_MAX_THREADS", threads.to_string());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|index| format!("submit-worker-{index}"))
        .build()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Bars,
    Lines,
    Quiet,
}

/// The progress and log sink of one run.
#[derive(Clone)]
pub struct Progress {
    mode: Mode,
    verbose: bool,
}

impl Progress {
    pub fn new(quiet: bool, verbose: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Progress { mode, verbose }
    }

    pub fn quiet() -> Progress {
        Progress {
            mode: Mode::Quiet,
            verbose: false,
        }
    }

    fn line(&self, message: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Bars => eprintln!("{message}"),
            Mode::Lines => eprintln!(
                "{} {message}",
                chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
            ),
        }
    }

    pub fn info(&self, message: &str) {
        self.line(message);
    }

    /// Only with --verbose.
    pub fn detail(&self, message: &str) {
        if self.verbose {
            self.line(message);
        }
    }

    /// A step of unknown length (a spinner on a terminal, a start line otherwise).
    pub fn step(&self, label: &str) -> Step {
        let bar = (self.mode == Mode::Bars).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed_precise}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        if self.mode == Mode::Lines {
            self.line(&format!("{label}..."));
        }
        Step {
            progress: self.clone(),
            bar,
            label: label.to_owned(),
            started: Instant::now(),
        }
    }

    /// A step of `length` units (a bar on a terminal, a line per unit otherwise).
    pub fn counted(&self, label: &str, length: u64) -> Step {
        let bar = (self.mode == Mode::Bars).then(|| {
            let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {msg} [{elapsed_precise}, eta {eta}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_owned());
            bar
        });
        Step {
            progress: self.clone(),
            bar,
            label: label.to_owned(),
            started: Instant::now(),
        }
    }
}

/// One running step; reports its end with the elapsed time.
pub struct Step {
    progress: Progress,
    bar: Option<ProgressBar>,
    label: String,
    started: Instant,
}

impl Step {
    /// Moves a counted step to `position` with a status message (e.g. the training loss).
    pub fn update(&self, position: u64, total: u64, message: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(position);
                bar.set_message(message.to_owned());
            }
            None => self
                .progress
                .line(&format!("{} {position}/{total} {message}", self.label)),
        }
    }

    pub fn finish(self, summary: &str) -> Duration {
        let elapsed = self.started.elapsed();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.progress.line(&format!(
            "{} done in {:.2}s{}{summary}",
            self.label,
            elapsed.as_secs_f64(),
            if summary.is_empty() { "" } else { ": " },
        ));
        elapsed
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A memory need known before it is allocated that does not fit under `driver_memory` (exit 4).
#[derive(Debug, thiserror::Error)]
#[error(
    "driver_memory {limit} is too small for {what}: they need about {needed} more, and {available} is left under the cap; nothing was published\n  help: raise `job.driver_memory` (or --driver-memory), or read less with `input.limit` / `input.sample_fraction`"
)]
pub struct ResourceError {
    pub what: String,
    pub needed: crate::config::ByteSize,
    pub available: crate::config::ByteSize,
    pub limit: crate::config::ByteSize,
}

impl ResourceError {
    pub fn check(
        what: &str,
        needed: usize,
        config: &crate::config::JobConfig,
    ) -> Result<(), ResourceError> {
        let available = memory::headroom();
        if needed <= available {
            return Ok(());
        }
        Err(ResourceError {
            what: what.to_owned(),
            needed: crate::config::ByteSize(needed as u64),
            available: crate::config::ByteSize(available as u64),
            limit: config.driver_memory,
        })
    }
}

/// Reads done by polars in progress: a panic inside polars on malformed input (fuzzing found
/// one, a field that is a lone quote) is turned into an input error instead of reaching the
/// panic hook. A count, not a thread-local flag: polars panics on its own worker threads.
static CONTAINED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether a panic now should unwind to [`contain_panics`] rather than end the process.
pub fn panics_contained() -> bool {
    CONTAINED.load(std::sync::atomic::Ordering::SeqCst) > 0
}

/// Runs `work`, turning a panic inside it into `Err(message)`.
pub fn contain_panics<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    CONTAINED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    CONTAINED.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}
