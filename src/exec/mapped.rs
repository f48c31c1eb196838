//! Input files are memory-mapped (page cache, not heap under `driver_memory`), and a file that
//! another process truncates while it is mapped raises SIGBUS on the next read of a vanished
//! page. Instead of dying silently with exit 135, the process reports the file and exits 3, as
//! for any other unreadable input.

use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// The two finished messages (stderr line, `--json` line) for the file being read, leaked so
/// the signal handler can write them without allocating.
struct Messages {
    text: Box<[u8]>,
    json: Box<[u8]>,
}

static CURRENT: AtomicPtr<Messages> = AtomicPtr::new(std::ptr::null_mut());
static INSTALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_bus_error(_signal: libc::c_int) {
    let messages = CURRENT.load(Ordering::Acquire);
    // SAFETY: only async-signal-safe calls (write, _exit, signal, raise); the messages were
    // leaked and are never freed.
    unsafe {
        if messages.is_null() {
            libc::signal(libc::SIGBUS, libc::SIG_DFL);
            libc::raise(libc::SIGBUS);
            return;
        }
        let messages = &*messages;
        libc::write(2, messages.text.as_ptr().cast(), messages.text.len());
        if super::memory::json_errors() {
            libc::write(1, messages.json.as_ptr().cast(), messages.json.len());
        }
        libc::_exit(3);
    }
}

/// Marks `path` as the mapped file being read until the guard is dropped; a SIGBUS meanwhile
/// ends the process with exit code 3 and a message naming it.
pub struct MappedRead {
    messages: *mut Messages,
}

// SAFETY: the pointer is only compared, never dereferenced, outside the signal handler.
unsafe impl Send for MappedRead {}
unsafe impl Sync for MappedRead {}

pub fn reading(path: &std::path::Path) -> MappedRead {
    if !INSTALLED.swap(true, Ordering::AcqRel) {
        // SAFETY: installs a handler that only touches the leaked messages (see above).
        unsafe {
            libc::signal(
                libc::SIGBUS,
                on_bus_error as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
    let message = format!(
        "{}: the file changed (it was truncated or rewritten) while it was being read; read a file that no other process is writing, e.g. write to a temporary name and rename it into place",
        path.display()
    );
    let messages = Box::new(Messages {
        text: format!("error: {message}\n").into_bytes().into_boxed_slice(),
        json: format!(
            "{}\n",
            serde_json::json!({"status": "error", "exit_code": 3, "kind": "input", "error": message})
        )
        .into_bytes()
        .into_boxed_slice(),
    });
    let messages = Box::into_raw(messages);
    CURRENT.store(messages, Ordering::Release);
    MappedRead { messages }
}

impl Drop for MappedRead {
    fn drop(&mut self) {
        // The old messages stay allocated: a handler may be reading them on another thread.
        let _ = CURRENT.compare_exchange(
            self.messages,
            std::ptr::null_mut(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}
