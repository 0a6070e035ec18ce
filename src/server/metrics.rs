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

    pub fn webhook(&self, event: &str, outcome: &str) {
        self.webhooks
            .get_or_create(&vec![
                ("event", event.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    pub fn github_request(&self, route: &str, status: u16) {
        self.github_requests
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
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
        m.github_request("/repos/{owner}/{repo}/pulls/{n}/files", 200);
        m.audit_seconds.observe(0.3);
        let text = m.render();
        assert!(
            text.contains("prodaudit_webhooks_total{event=\"pull_request\",outcome=\"queued\"} 2"),
            "{text}"
        );
        assert!(text.contains("prodaudit_github_requests_total{route=\"/repos/{owner}/{repo}/pulls/{n}/files\",status=\"200\"} 1"));
        assert!(text.contains("prodaudit_audit_duration_seconds_count 1"));
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
