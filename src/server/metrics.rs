//! Prometheus metrics (`GET /metrics`, text format): webhooks by event and outcome, queue depth, audit
//! durations, GitHub requests by route and status, rate-limit remaining, findings by rule and severity.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels2 = Vec<(&'static str, String)>;

/// Every metric the App exports.
pub struct Metrics {
    registry: Registry,
    pub webhooks: Family<Labels2, Counter>,
    pub queue_queued: Gauge,
    pub queue_running: Gauge,
    pub queue_dead: Gauge,
    pub audit_seconds: Histogram,
    pub audits: Family<Labels2, Counter>,
    pub github_requests: Family<Labels2, Counter>,
    pub rate_limit_remaining: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub findings: Family<Labels2, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("prodaudit");
        let webhooks = Family::<Labels2, Counter>::default();
        registry.register(
            "webhooks",
            "Webhook deliveries by event and outcome",
            webhooks.clone(),
        );
        let queue_queued = Gauge::default();
        registry.register(
            "queue_queued",
            "Jobs waiting in the queue",
            queue_queued.clone(),
        );
        let queue_running = Gauge::default();
        registry.register(
            "queue_running",
            "Jobs being worked on",
            queue_running.clone(),
        );
        let queue_dead = Gauge::default();
        registry.register(
            "queue_dead",
            "Jobs given up after their last attempt",
            queue_dead.clone(),
        );
        let audit_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        registry.register(
            "audit_duration_seconds",
            "Wall time of one audit job",
            audit_seconds.clone(),
        );
        let audits = Family::<Labels2, Counter>::default();
        registry.register("audits", "Audit jobs by outcome", audits.clone());
        let github_requests = Family::<Labels2, Counter>::default();
        registry.register(
            "github_requests",
            "GitHub API requests by route and status",
            github_requests.clone(),
        );
        let rate_limit_remaining = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "github_rate_limit_remaining",
            "x-ratelimit-remaining of the last GitHub answer",
            rate_limit_remaining.clone(),
        );
        let findings = Family::<Labels2, Counter>::default();
        registry.register(
            "findings",
            "Findings reported, by rule and severity",
            findings.clone(),
        );
        Metrics {
            registry,
            webhooks,
            queue_queued,
            queue_running,
            queue_dead,
            audit_seconds,
            audits,
            github_requests,
            rate_limit_remaining,
            findings,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Count a delivery. `event` is the `X-GitHub-Event` header: known events keep their name, anything else
    /// is counted as "other" (the header comes from the network: each distinct value would be a new series).
    /// Deliveries whose signature did not verify are counted under the fixed event "unverified".
    pub fn webhook(&self, event: &str, outcome: &str) {
        self.webhooks
            .get_or_create(&vec![
                ("event", event_label(event).to_string()),
                ("outcome", webhook_outcome_label(outcome).to_string()),
            ])
            .inc();
    }

    /// A delivery refused before its signature verified: never labelled with what the request says.
    pub fn webhook_unverified(&self) {
        self.webhook(UNVERIFIED, "bad_signature");
    }

    /// Count a GitHub API request. `route` must be a path template (the concrete path would make one series per
    /// repository and pull request); a route not in [`GITHUB_ROUTES`] is counted as "other", and a status not in
    /// [`GITHUB_STATUSES`] by its class ("2xx" … "5xx").
    pub fn github_request(&self, route: &str, status: u16) {
        self.github_requests
            .get_or_create(&vec![
                ("route", github_route_label(route).to_string()),
                ("status", github_status_label(status)),
            ])
            .inc();
    }
}

/// The event label of deliveries whose signature did not verify.
pub const UNVERIFIED: &str = "unverified";

/// The events with their own label; every other `X-GitHub-Event` is "other".
pub const KNOWN_EVENTS: &[&str] = &[
    "pull_request",
    "issue_comment",
    "check_run",
    "check_suite",
    "ping",
    "installation",
    "installation_repositories",
    "installation_target",
    "github_app_authorization",
    "push",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "meta",
];

fn event_label(event: &str) -> &'static str {
    if event == UNVERIFIED {
        return UNVERIFIED;
    }
    if event.is_empty() {
        return "none";
    }
    KNOWN_EVENTS
        .iter()
        .find(|e| **e == event)
        .copied()
        .unwrap_or("other")
}

/// The outcomes intake reports; anything else (a programming slip) is "other".
const WEBHOOK_OUTCOMES: &[&str] = &[
    "bad_signature",
    "unsupported_media_type",
    "malformed",
    "invalid",
    "ignored",
    "store_failed",
    "queued",
    "coalesced",
    "duplicate",
];

fn webhook_outcome_label(outcome: &str) -> &'static str {
    WEBHOOK_OUTCOMES
        .iter()
        .find(|o| **o == outcome)
        .copied()
        .unwrap_or("other")
}

/// The path templates of the GitHub requests the App makes.
pub const GITHUB_ROUTES: &[&str] = &[
    "/app/installations/{installation_id}/access_tokens",
    "/repos/{owner}/{repo}/pulls/{pull_number}",
    "/repos/{owner}/{repo}/pulls/{pull_number}/files",
    "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
    "/repos/{owner}/{repo}/pulls/{pull_number}/comments",
    "/repos/{owner}/{repo}/contents/{path}",
    "/repos/{owner}/{repo}/git/trees/{tree_sha}",
    "/repos/{owner}/{repo}/check-runs",
    "/repos/{owner}/{repo}/check-runs/{check_run_id}",
    "/repos/{owner}/{repo}/commits/{ref}/check-runs",
    "/repos/{owner}/{repo}/collaborators/{username}/permission",
    "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
    "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    "/repos/{owner}/{repo}/commits/{commit_sha}/pulls",
    "/graphql",
];

fn github_route_label(route: &str) -> &'static str {
    GITHUB_ROUTES
        .iter()
        .find(|r| **r == route)
        .copied()
        .unwrap_or("other")
}

/// Statuses with their own label (0: no answer); others are counted by class.
pub const GITHUB_STATUSES: &[u16] = &[
    0, 200, 201, 202, 204, 304, 400, 401, 403, 404, 409, 410, 422, 429, 500, 502, 503, 504,
];

fn github_status_label(status: u16) -> String {
    if GITHUB_STATUSES.contains(&status) {
        status.to_string()
    } else {
        match status / 100 {
            1..=5 => format!("{}xx", status / 100),
            _ => "other".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.webhook("pull_request", "queued");
        m.webhook("pull_request", "queued");
        m.github_request("/repos/{owner}/{repo}/pulls/{pull_number}/files", 200);
        m.audit_seconds.observe(0.3);
        let text = m.render();
        assert!(
            text.contains("prodaudit_webhooks_total{event=\"pull_request\",outcome=\"queued\"} 2"),
            "{text}"
        );
        assert!(text.contains("prodaudit_github_requests_total{route=\"/repos/{owner}/{repo}/pulls/{pull_number}/files\",status=\"200\"} 1"));
        assert!(text.contains("prodaudit_audit_duration_seconds_count 1"));
        assert!(text.trim_end().ends_with("# EOF"));
    }

    /// Label values come from closed sets, whatever a request or GitHub says.
    #[test]
    fn labels_are_a_closed_set() {
        let m = Metrics::new();
        for i in 0..500 {
            m.webhook(&format!("evil_{i}"), "ignored");
            m.webhook(&format!("evil_{i}"), &format!("outcome_{i}"));
            m.github_request(
                &format!("/repos/acme/api/pulls/{i}"),
                200 + (i % 400) as u16,
            );
        }
        m.webhook_unverified();
        let text = m.render();
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        assert!(series <= 60, "{series} series:\n{text}");
        assert!(!text.contains("evil_"), "{text}");
        assert!(!text.contains("/repos/acme"), "{text}");
        assert!(text.contains("event=\"other\""), "{text}");
        assert!(
            text.contains("event=\"unverified\",outcome=\"bad_signature\""),
            "{text}"
        );
        assert!(text.contains("route=\"other\""), "{text}");
        assert!(text.contains("status=\"4xx\""), "{text}");
    }
}
