//! The `driver_memory` cap: a global allocator that counts live heap bytes.
//!
//! Polars and the standard collections allocate infallibly, so a cap cannot be enforced by
//! returning errors. Instead, the allocation that would cross the cap writes a one-line message
//! (what phase the job was in, how far over it went) straight to stderr without allocating, and
//! ends the process with exit code 4. Nothing is published: versions only appear by an atomic
//! rename at the very end, and the staging directory left behind is removed by the next run.
//! This is cheaper than a supervising child process and gives the same guarantee.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static LIMIT_TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static PHASE: AtomicUsize = AtomicUsize::new(0);
static JSON_ERRORS: AtomicBool = AtomicBool::new(false);

/// The phases a job moves through; the memory message names the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Phase {
    Starting = 0,
    Ingesting = 1,
    BuildingDataset = 2,
    Training = 3,
    Evaluating = 4,
    Publishing = 5,
}

const PHASE_NAMES: [&str; 6] = [
    "starting",
    "reading the input",
    "building the training matrices",
    "training the model",
    "evaluating on the test split",
    "writing the model artifacts",
];

pub fn set_phase(phase: Phase) {
    PHASE.store(phase as usize, Ordering::Relaxed);
}

/// Sets the cap; `text` is how the user wrote it (e.g. `2G`), for the message.
pub fn set_limit(bytes: u64, text: &str) {
    let _ = LIMIT_TEXT.set(text.to_owned());
    LIMIT.store(
        usize::try_from(bytes).unwrap_or(usize::MAX),
        Ordering::SeqCst,
    );
}

/// Also print the memory error as a JSON object on stdout (for `--json`).
pub fn set_json_errors(enabled: bool) {
    JSON_ERRORS.store(enabled, Ordering::Relaxed);
}

pub(crate) fn json_errors() -> bool {
    JSON_ERRORS.load(Ordering::Relaxed)
}

pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Bytes that may still be allocated before the cap (for up-front budget checks).
pub fn headroom() -> usize {
    LIMIT.load(Ordering::Relaxed).saturating_sub(live_bytes())
}

/// Peak resident set size of the process as the kernel saw it.
pub fn peak_rss_bytes() -> u64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0 {
            (usage.ru_maxrss.max(0) as u64) * 1024
        } else {
            0
        }
    }
}

fn reserve(size: usize) -> bool {
    let limit = LIMIT.load(Ordering::Relaxed);
    let previous = LIVE.fetch_add(size, Ordering::Relaxed);
    let now = previous.saturating_add(size);
    if now > limit {
        LIVE.fetch_sub(size, Ordering::Relaxed);
        over_limit(size, now, limit);
    }
    if now > PEAK.load(Ordering::Relaxed) {
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
    true
}

/// A fixed buffer that formats without touching the heap.
struct StackText {
    bytes: [u8; 768],
    length: usize,
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let room = self.bytes.len() - self.length;
        let take = text.len().min(room);
        self.bytes[self.length..self.length + take].copy_from_slice(&text.as_bytes()[..take]);
        self.length += take;
        Ok(())
    }
}

struct Mebibytes(usize);

impl std::fmt::Display for Mebibytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenths = (self.0 as u128 * 10) >> 20;
        write!(f, "{}.{} MiB", tenths / 10, tenths % 10)
    }
}

#[cold]
fn over_limit(request: usize, would_be: usize, limit: usize) -> ! {
    use std::fmt::Write;
    let phase = PHASE_NAMES
        .get(PHASE.load(Ordering::Relaxed))
        .copied()
        .unwrap_or("running");
    let limit_text = LIMIT_TEXT.get().map_or("?", String::as_str);
    let mut text = StackText {
        bytes: [0; 768],
        length: 0,
    };
    let _ = write!(
        text,
        "driver_memory {limit_text} exceeded while {phase}: a request for {} would bring the heap to {}, {} over the cap; nothing was published",
        Mebibytes(request),
        Mebibytes(would_be),
        Mebibytes(would_be - limit),
    );
    let message_end = text.length;
    let mut line = StackText {
        bytes: [0; 768],
        length: 0,
    };
    let _ = write!(
        line,
        "error: {}\n  help: raise `job.driver_memory` (or --driver-memory), or read less with `input.limit` / `input.sample_fraction`\n",
        std::str::from_utf8(&text.bytes[..message_end]).unwrap_or("")
    );
    // SAFETY: raw writes of stack buffers to the standard descriptors, then an immediate exit;
    // no allocation and no locks, as required inside the allocator.
    unsafe {
        libc::write(2, line.bytes.as_ptr().cast(), line.length);
        if JSON_ERRORS.load(Ordering::Relaxed) {
            let mut json = StackText {
                bytes: [0; 768],
                length: 0,
            };
            let _ = writeln!(
                json,
                "{{\"status\":\"error\",\"exit_code\":4,\"kind\":\"resource\",\"error\":\"{}\"}}",
                std::str::from_utf8(&text.bytes[..message_end]).unwrap_or("")
            );
            libc::write(1, json.bytes.as_ptr().cast(), json.length);
        }
        libc::_exit(4);
    }
}

// SAFETY: every method forwards to the system allocator with the same layout; the counting
// around it never touches the heap.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        reserve(layout.size());
        // SAFETY: same contract as the caller's.
        let pointer = unsafe { System.alloc(layout) };
        if pointer.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        reserve(layout.size());
        // SAFETY: same contract as the caller's.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if pointer.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            reserve(new_size - layout.size());
        }
        // SAFETY: same contract as the caller's.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if moved.is_null() {
            if new_size > layout.size() {
                LIVE.fetch_sub(new_size - layout.size(), Ordering::Relaxed);
            }
        } else if new_size < layout.size() {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        moved
    }
}
