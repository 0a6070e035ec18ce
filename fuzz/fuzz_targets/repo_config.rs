//! `.github/prodaudit.yml` from a pull request: any text parses or fails with an error, never a panic, and a
//! parsed config answers path questions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodaudit::repo_config::RepoConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let known: Vec<String> = ["C1", "C5", "F1", "I4", "blocking-call-in-async"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Ok(config) = RepoConfig::parse(".github/prodaudit.yml", text, &known) {
        for path in ["app/main.py", "tests/test_x.py", "deploy/k8s.yaml", "", "a b/ü.py"] {
            let _ = config.wants_path(path);
        }
    }
});
