//! Any bytes as a job file: parsing, key checks and validation must return Ok or a
//! ConfigError, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("/nonexistent/fuzz/job.toml");
        let _ = submit::config::validate::validate_text(path, text);
    }
});
