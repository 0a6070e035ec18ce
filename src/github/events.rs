//! What a webhook asks of us: the events and actions prodaudit acts on, read from the payload into a small
//! job description. Everything else is acknowledged and dropped.

use serde_json::Value;

/// A slash command in a pull-request comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `/audit`: re-audit the changed lines.
    Audit,
    /// `/audit full`: every line of the changed files.
    Full,
    /// `/audit help`.
    Help,
}

/// Work a webhook asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// Audit a pull request at a head commit.
    Audit {
        installation_id: i64,
        repo: String,
        pr_number: i64,
        head_sha: String,
        /// The base commit as the webhook gave it (lets the audit skip asking for the pull request).
        base_sha: Option<String>,
        draft: bool,
        full: bool,
    },
    /// A slash command to check (permission, bot) and carry out.
    Command {
        installation_id: i64,
        repo: String,
        pr_number: i64,
        comment_id: i64,
        user: String,
        command: Command,
    },
    /// Re-run requested from a check run or suite: the pull requests may be unknown (fork pushes).
    Rerun {
        installation_id: i64,
        repo: String,
        head_sha: String,
        pr_numbers: Vec<i64>,
    },
    /// Acknowledged and logged, nothing to do (ping, installation events, actions we do not handle).
    Ignore { reason: String },
    /// Work asked for with impossible values (a pull request number of 0, a head that is not a commit
    /// SHA, …): refused with a 4xx that says why, nothing stored.
    Invalid { reason: String },
}

/// What the queue stores of an intake.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFields {
    pub installation_id: i64,
    pub repo: String,
    pub pr_number: Option<i64>,
    pub head_sha: Option<String>,
    pub payload: Value,
}

impl Intake {
    /// The job the queue stores for this intake, if any.
    pub fn job_fields(&self) -> Option<JobFields> {
        match self {
            Intake::Audit {
                installation_id,
                repo,
                pr_number,
                head_sha,
                base_sha,
                draft,
                full,
            } => Some(JobFields {
                installation_id: *installation_id,
                repo: repo.clone(),
                pr_number: Some(*pr_number),
                head_sha: Some(head_sha.clone()),
                payload: match base_sha {
                    Some(b) => {
                        serde_json::json!({"kind": "audit", "full": full, "draft": draft, "base_sha": b})
                    }
                    None => serde_json::json!({"kind": "audit", "full": full, "draft": draft}),
                },
            }),
            Intake::Command {
                installation_id,
                repo,
                pr_number,
                comment_id,
                user,
                command,
            } => Some(JobFields {
                installation_id: *installation_id,
                repo: repo.clone(),
                pr_number: Some(*pr_number),
                head_sha: None,
                payload: serde_json::json!({
                    "kind": "command",
                    "comment_id": comment_id,
                    "user": user,
                    "command": match command { Command::Audit => "audit", Command::Full => "full", Command::Help => "help" },
                }),
            }),
            Intake::Rerun {
                installation_id,
                repo,
                head_sha,
                pr_numbers,
            } => Some(JobFields {
                installation_id: *installation_id,
                repo: repo.clone(),
                pr_number: pr_numbers.first().copied(),
                head_sha: Some(head_sha.clone()),
                payload: serde_json::json!({"kind": "rerun", "pr_numbers": pr_numbers}),
            }),
            Intake::Ignore { .. } | Intake::Invalid { .. } => None,
        }
    }
}

/// Parse `/audit`, `/audit full`, `/audit help` at the start of a comment (first line, case-insensitive).
pub fn parse_command(body: &str) -> Option<Command> {
    let first = body.trim_start().lines().next()?.trim();
    let mut words = first.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("/audit") {
        return None;
    }
    match words.next().map(|w| w.to_ascii_lowercase()) {
        None => Some(Command::Audit),
        Some(w) if w == "full" => Some(Command::Full),
        Some(w) if w == "help" => Some(Command::Help),
        Some(_) => Some(Command::Help),
    }
}

fn ignore(reason: impl Into<String>) -> Intake {
    Intake::Ignore {
        reason: reason.into(),
    }
}

/// `owner/name` with GitHub's characters (letters, digits, `-`, `_`, `.`), neither part empty, `.` or `..`.
pub fn is_repo_full_name(full_name: &str) -> bool {
    let mut parts = full_name.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    [owner, name].iter().all(|part| {
        !part.is_empty()
            && part.len() <= 100
            && *part != "."
            && *part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    })
}

/// A full commit SHA: 40 hexadecimal characters.
pub fn is_commit_sha(sha: &str) -> bool {
    sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

fn invalid(reason: impl Into<String>) -> Intake {
    Intake::Invalid {
        reason: reason.into(),
    }
}

/// Refuse work whose values cannot be GitHub's: they would be stored, put into API paths and retried.
fn validate(intake: Intake) -> Intake {
    let (installation_id, repo) = match &intake {
        Intake::Audit {
            installation_id,
            repo,
            ..
        }
        | Intake::Command {
            installation_id,
            repo,
            ..
        }
        | Intake::Rerun {
            installation_id,
            repo,
            ..
        } => (*installation_id, repo.as_str()),
        Intake::Ignore { .. } | Intake::Invalid { .. } => return intake,
    };
    if installation_id <= 0 {
        return invalid(format!(
            "installation id {installation_id} is not a positive number"
        ));
    }
    // The name goes into API paths: only `owner/name` as GitHub spells them.
    if !is_repo_full_name(repo) {
        return invalid("repository full_name is not owner/name");
    }
    let positive = |what: &str, n: i64| {
        (n <= 0).then(|| invalid(format!("{what} {n} is not a positive number")))
    };
    let sha = |sha: &str| {
        (!is_commit_sha(sha)).then(|| {
            invalid(format!(
                "head sha {:?} is not 40 hexadecimal characters",
                sha.chars().take(64).collect::<String>()
            ))
        })
    };
    let problem = match &intake {
        Intake::Audit {
            pr_number,
            head_sha,
            ..
        } => positive("pull request number", *pr_number).or_else(|| sha(head_sha)),
        Intake::Command {
            pr_number,
            comment_id,
            ..
        } => positive("pull request number", *pr_number)
            .or_else(|| positive("comment id", *comment_id)),
        Intake::Rerun {
            head_sha,
            pr_numbers,
            ..
        } => sha(head_sha).or_else(|| {
            pr_numbers
                .iter()
                .find_map(|n| positive("pull request number", *n))
        }),
        Intake::Ignore { .. } | Intake::Invalid { .. } => None,
    };
    problem.unwrap_or(intake)
}

/// Read what an event asks for. `app_id` is ours: check-run events of other apps are not ours to answer.
/// Work with impossible values is [`Intake::Invalid`].
pub fn classify(event: &str, payload: &Value, app_id: u64) -> Intake {
    validate(classify_unchecked(event, payload, app_id))
}

fn classify_unchecked(event: &str, payload: &Value, app_id: u64) -> Intake {
    let action = payload["action"].as_str().unwrap_or("");
    let installation = payload["installation"]["id"].as_i64();
    let repo = payload["repository"]["full_name"]
        .as_str()
        .map(str::to_string);
    let (Some(installation_id), Some(repo)) = (installation, repo) else {
        return ignore(format!("{event}.{action}: no installation or repository"));
    };
    match event {
        "pull_request" => {
            if !matches!(
                action,
                "opened" | "synchronize" | "reopened" | "ready_for_review"
            ) {
                return ignore(format!("pull_request.{action}"));
            }
            let pr = &payload["pull_request"];
            let (Some(number), Some(head)) = (pr["number"].as_i64(), pr["head"]["sha"].as_str())
            else {
                return ignore("pull_request without number or head sha");
            };
            if pr["state"].as_str() == Some("closed") {
                return ignore("pull request is closed");
            }
            Intake::Audit {
                installation_id,
                repo,
                pr_number: number,
                head_sha: head.to_string(),
                base_sha: pr["base"]["sha"]
                    .as_str()
                    .filter(|b| !b.is_empty())
                    .map(str::to_string),
                draft: pr["draft"].as_bool().unwrap_or(false),
                full: false,
            }
        }
        "issue_comment" => {
            if action != "created" {
                return ignore(format!("issue_comment.{action}"));
            }
            if payload["issue"]["pull_request"].is_null() {
                return ignore("comment on an issue, not a pull request");
            }
            let comment = &payload["comment"];
            let user_type = comment["user"]["type"].as_str().unwrap_or("");
            let login = comment["user"]["login"].as_str().unwrap_or("");
            if user_type == "Bot" || login.ends_with("[bot]") {
                return ignore("comment by a bot");
            }
            let Some(command) = comment["body"].as_str().and_then(parse_command) else {
                return ignore("comment without a command");
            };
            let (Some(number), Some(comment_id)) =
                (payload["issue"]["number"].as_i64(), comment["id"].as_i64())
            else {
                return ignore("comment without issue number or id");
            };
            Intake::Command {
                installation_id,
                repo,
                pr_number: number,
                comment_id,
                user: login.to_string(),
                command,
            }
        }
        "check_run" | "check_suite" => {
            let obj = &payload[event];
            let wanted = match (event, action) {
                ("check_run", "rerequested") | ("check_suite", "rerequested") => true,
                ("check_run", "requested_action") => {
                    payload["requested_action"]["identifier"].as_str() == Some("reaudit")
                }
                _ => false,
            };
            if !wanted {
                return ignore(format!("{event}.{action}"));
            }
            if obj["app"]["id"].as_u64().is_some_and(|id| id != app_id) {
                return ignore(format!("{event}.{action} of another app"));
            }
            let Some(head) = obj["head_sha"].as_str() else {
                return ignore(format!("{event} without head sha"));
            };
            let pr_numbers = obj["pull_requests"]
                .as_array()
                .map(|a| a.iter().filter_map(|p| p["number"].as_i64()).collect())
                .unwrap_or_default();
            Intake::Rerun {
                installation_id,
                repo,
                head_sha: head.to_string(),
                pr_numbers,
            }
        }
        other => ignore(format!("{other}.{action}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
    const SHA2: &str = "fedcba9876543210fedcba9876543210fedcba98";

    fn base() -> Value {
        json!({"installation": {"id": 7}, "repository": {"full_name": "acme/api"}})
    }

    #[test]
    fn commands() {
        assert_eq!(parse_command("/audit"), Some(Command::Audit));
        assert_eq!(parse_command("  /AUDIT full\nplease"), Some(Command::Full));
        assert_eq!(parse_command("/audit help"), Some(Command::Help));
        assert_eq!(parse_command("/audit nonsense"), Some(Command::Help));
        assert_eq!(parse_command("please /audit"), None);
        assert_eq!(parse_command("/auditing"), None);
        assert_eq!(parse_command(""), None);
    }

    #[test]
    fn pull_request_actions() {
        let mut p = base();
        p["action"] = json!("synchronize");
        p["pull_request"] =
            json!({"number": 5, "head": {"sha": SHA}, "draft": true, "state": "open"});
        assert_eq!(
            classify("pull_request", &p, 1),
            Intake::Audit {
                installation_id: 7,
                repo: "acme/api".into(),
                pr_number: 5,
                head_sha: SHA.into(),
                base_sha: None,
                draft: true,
                full: false
            }
        );
        p["action"] = json!("closed");
        assert!(matches!(
            classify("pull_request", &p, 1),
            Intake::Ignore { .. }
        ));
        p["action"] = json!("labeled");
        assert!(matches!(
            classify("pull_request", &p, 1),
            Intake::Ignore { .. }
        ));
    }

    #[test]
    fn comments_from_bots_and_on_issues_are_ignored() {
        let mut p = base();
        p["action"] = json!("created");
        p["issue"] = json!({"number": 3, "pull_request": {"url": "x"}});
        p["comment"] =
            json!({"id": 11, "body": "/audit full", "user": {"login": "alice", "type": "User"}});
        assert!(matches!(
            classify("issue_comment", &p, 1),
            Intake::Command {
                command: Command::Full,
                comment_id: 11,
                ..
            }
        ));
        p["comment"]["user"] = json!({"login": "prodaudit[bot]", "type": "Bot"});
        assert!(matches!(
            classify("issue_comment", &p, 1),
            Intake::Ignore { .. }
        ));
        p["comment"]["user"] = json!({"login": "alice", "type": "User"});
        p["issue"] = json!({"number": 3});
        assert!(matches!(
            classify("issue_comment", &p, 1),
            Intake::Ignore { .. }
        ));
    }

    #[test]
    fn reruns_of_our_checks_only() {
        let mut p = base();
        p["action"] = json!("rerequested");
        p["check_run"] = json!({"head_sha": SHA2, "app": {"id": 42}, "pull_requests": []});
        assert_eq!(
            classify("check_run", &p, 42),
            Intake::Rerun {
                installation_id: 7,
                repo: "acme/api".into(),
                head_sha: SHA2.into(),
                pr_numbers: vec![]
            }
        );
        assert!(matches!(
            classify("check_run", &p, 43),
            Intake::Ignore { .. }
        ));
        p["action"] = json!("requested_action");
        p["requested_action"] = json!({"identifier": "reaudit"});
        assert!(matches!(
            classify("check_run", &p, 42),
            Intake::Rerun { .. }
        ));
        p["requested_action"] = json!({"identifier": "other"});
        assert!(matches!(
            classify("check_run", &p, 42),
            Intake::Ignore { .. }
        ));
        assert!(matches!(
            classify("ping", &json!({"zen": "x"}), 42),
            Intake::Ignore { .. }
        ));
    }

    /// The webhook_payload fuzz target's invariant (every job names its repository): an empty or path-like
    /// repository name was turned into a job, and from there into API paths such as `/repos//pulls/1`.
    #[test]
    fn repository_names_must_be_owner_slash_name() {
        for bad in [
            "",
            "/",
            "acme",
            "acme/",
            "/api",
            "a/b/c",
            "../x",
            "acme/..",
            "ac me/api",
            "acme/api?x=1",
        ] {
            let payload = serde_json::json!({
                "action": "opened",
                "installation": {"id": 1},
                "repository": {"full_name": bad},
                "pull_request": {"number": 1, "state": "open", "head": {"sha": SHA}},
            });
            assert!(
                matches!(
                    classify("pull_request", &payload, 1),
                    Intake::Invalid { .. }
                ),
                "{bad:?} was accepted"
            );
        }
        for good in ["acme/api", "a-b/c_d.e", "octo-org/.github"] {
            assert!(is_repo_full_name(good), "{good:?} was refused");
        }
    }

    /// Impossible values are refused (with the reason), not stored as work.
    #[test]
    fn impossible_values_are_invalid() {
        let pr = |number: Value, sha: Value, installation: Value, repo: &str| {
            json!({
                "action": "opened",
                "installation": {"id": installation},
                "repository": {"full_name": repo},
                "pull_request": {"number": number, "state": "open", "head": {"sha": sha}},
            })
        };
        let ok = pr(json!(3), json!(SHA), json!(9), "acme/api");
        assert!(matches!(
            classify("pull_request", &ok, 1),
            Intake::Audit { .. }
        ));
        let cases = [
            (
                pr(json!(-1), json!(SHA), json!(9), "acme/api"),
                "pull request number -1",
            ),
            (
                pr(json!(0), json!(SHA), json!(9), "acme/api"),
                "pull request number 0",
            ),
            (pr(json!(3), json!("abc"), json!(9), "acme/api"), "head sha"),
            (
                pr(json!(3), json!(format!("{SHA}0")), json!(9), "acme/api"),
                "head sha",
            ),
            (
                pr(json!(3), json!(SHA.replace('a', "g")), json!(9), "acme/api"),
                "head sha",
            ),
            (
                pr(json!(3), json!(SHA), json!(0), "acme/api"),
                "installation id 0",
            ),
            (
                pr(json!(3), json!(SHA), json!(-5), "acme/api"),
                "installation id -5",
            ),
            (pr(json!(3), json!(SHA), json!(9), "acme"), "owner/name"),
        ];
        for (payload, why) in cases {
            match classify("pull_request", &payload, 1) {
                Intake::Invalid { reason } => assert!(reason.contains(why), "{reason} / {why}"),
                other => panic!("{payload} gave {other:?}"),
            }
        }
        let mut c = base();
        c["action"] = json!("created");
        c["issue"] = json!({"number": -2, "pull_request": {"url": "x"}});
        c["comment"] =
            json!({"id": 11, "body": "/audit", "user": {"login": "alice", "type": "User"}});
        assert!(matches!(
            classify("issue_comment", &c, 1),
            Intake::Invalid { .. }
        ));
        let mut r = base();
        r["action"] = json!("rerequested");
        r["check_run"] = json!({"head_sha": "nope", "app": {"id": 42}, "pull_requests": []});
        assert!(matches!(
            classify("check_run", &r, 42),
            Intake::Invalid { .. }
        ));
        r["check_run"] =
            json!({"head_sha": SHA, "app": {"id": 42}, "pull_requests": [{"number": 0}]});
        assert!(matches!(
            classify("check_run", &r, 42),
            Intake::Invalid { .. }
        ));
        // Events without work stay acknowledged whatever they carry.
        let ping =
            json!({"zen": "x", "installation": {"id": -1}, "repository": {"full_name": "x"}});
        assert!(matches!(classify("ping", &ping, 1), Intake::Ignore { .. }));
    }
}
