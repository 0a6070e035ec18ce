//! Webhook intake after the signature check: JSON of any shape, under any event name, is classified without
//! panicking, and the job it yields (if any) is well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodaudit::github::events::classify;

const EVENTS: [&str; 8] = [
    "pull_request",
    "issue_comment",
    "check_run",
    "check_suite",
    "installation",
    "installation_repositories",
    "ping",
    "push",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let event = EVENTS[usize::from(selector) % EVENTS.len()];
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let intake = classify(event, &payload, 4242);
    if let Some(fields) = intake.job_fields() {
        assert!(!fields.repo.is_empty(), "a job names its repository");
        assert!(fields.payload.is_object(), "a job's payload is an object");
    }
});
