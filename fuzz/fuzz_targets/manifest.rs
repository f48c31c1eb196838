//! Any bytes as `manifest.json`: a checked manifest or an error naming the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = submit::artifact::parse_manifest(std::path::Path::new("manifest.json"), data);
});
