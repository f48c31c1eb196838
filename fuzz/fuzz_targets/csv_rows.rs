//! Any bytes as a delimited ratings file: polars' read plus our row conversion (ids, ratings,
//! the text fallback) must give ratings or an IngestError, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As in the binary: a panic inside a polars read becomes an input error; any other panic
    // is a crash for libFuzzer.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            if !submit::exec::panics_contained() {
                eprintln!("{info}");
                std::process::abort();
            }
        }));
    });
    let _ = submit::ingest::reader::ratings_from_text(data);
});
