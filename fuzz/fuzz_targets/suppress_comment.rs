//! Suppression comments (`# prodaudit: ignore[C5] reason`) in any text: no panic, and a parsed comment names
//! at least one non-empty id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodaudit::analysis::suppress::{Suppressions, parse_comment};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        if let Some(ids) = parse_comment(line) {
            assert!(!ids.is_empty() && ids.iter().all(|id| !id.is_empty()));
        }
    }
    let suppressions = Suppressions::scan(text);
    for line in 0..4 {
        let _ = suppressions.covers(line, "C5", "blocking-call-in-async");
    }
});
