//! Any bytes as a delimited ratings file: polars' read plus our row conversion (ids, ratings,
//! the text fallback) must give ratings or an IngestError, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = submit::ingest::reader::ratings_from_text(data);
});
