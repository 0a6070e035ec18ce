//! Where analysis time goes (`prodaudit audit --timings`): the token prefilter, parsing, and each detector,
//! summed over every file and thread. Rule authors use it to find a detector worth narrowing; it costs a clock
//! read per detector run, so it is off unless asked for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Time and run counters, shared by the threads that analyse files.
#[derive(Debug)]
pub struct Timings {
    scan_ns: AtomicU64,
    parse_ns: AtomicU64,
    index_ns: AtomicU64,
    files_scanned: AtomicU64,
    files_parsed: AtomicU64,
    detector_ns: Vec<AtomicU64>,
    detector_runs: Vec<AtomicU64>,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct TimingRow {
    pub name: String,
    pub seconds: f64,
    pub runs: u64,
}

fn add(counter: &AtomicU64, d: Duration) {
    counter.fetch_add(
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

fn secs(counter: &AtomicU64) -> f64 {
    counter.load(Ordering::Relaxed) as f64 / 1e9
}

impl Timings {
    /// Counters for a rule set of `detectors` detectors.
    pub fn new(detectors: usize) -> Self {
        Timings {
            scan_ns: AtomicU64::new(0),
            parse_ns: AtomicU64::new(0),
            index_ns: AtomicU64::new(0),
            files_scanned: AtomicU64::new(0),
            files_parsed: AtomicU64::new(0),
            detector_ns: (0..detectors).map(|_| AtomicU64::new(0)).collect(),
            detector_runs: (0..detectors).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn scanned(&self, d: Duration) {
        add(&self.scan_ns, d);
        self.files_scanned.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn parsed(&self, d: Duration) {
        add(&self.parse_ns, d);
        self.files_parsed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn indexed(&self, d: Duration) {
        add(&self.index_ns, d);
    }

    pub(crate) fn detector(&self, i: usize, d: Duration) {
        if let (Some(ns), Some(runs)) = (self.detector_ns.get(i), self.detector_runs.get(i)) {
            add(ns, d);
            runs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Files whose tokens were scanned, and files that were parsed.
    pub fn files(&self) -> (u64, u64) {
        (
            self.files_scanned.load(Ordering::Relaxed),
            self.files_parsed.load(Ordering::Relaxed),
        )
    }

    /// The engine's own phases (prefilter, parse, node index), then the detectors by descending time; detectors
    /// that never ran are left out. `names` gives the detector ids, by index.
    pub fn rows(&self, names: &[&str]) -> (Vec<TimingRow>, Vec<TimingRow>) {
        let (scanned, parsed) = self.files();
        let phases = vec![
            TimingRow {
                name: "token prefilter".into(),
                seconds: secs(&self.scan_ns),
                runs: scanned,
            },
            TimingRow {
                name: "parse".into(),
                seconds: secs(&self.parse_ns),
                runs: parsed,
            },
            TimingRow {
                name: "node index".into(),
                seconds: secs(&self.index_ns),
                runs: parsed,
            },
        ];
        let mut detectors: Vec<TimingRow> = self
            .detector_ns
            .iter()
            .zip(&self.detector_runs)
            .enumerate()
            .filter(|(_, (_, runs))| runs.load(Ordering::Relaxed) > 0)
            .map(|(i, (ns, runs))| TimingRow {
                name: names
                    .get(i)
                    .map_or_else(|| format!("#{i}"), |n| n.to_string()),
                seconds: secs(ns),
                runs: runs.load(Ordering::Relaxed),
            })
            .collect();
        detectors.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.name.cmp(&b.name)));
        (phases, detectors)
    }

    /// A plain-text table: phases, then the `top` slowest detectors and the total of the rest.
    pub fn render(&self, names: &[&str], top: usize) -> String {
        let (phases, detectors) = self.rows(names);
        let total: f64 = phases.iter().chain(&detectors).map(|r| r.seconds).sum();
        let mut out = format!(
            "timings (CPU seconds summed over threads; {:.2} s in all)\n{:<44} {:>9} {:>6} {:>9}\n",
            total, "phase or detector", "seconds", "%", "runs"
        );
        let pct = |s: f64| if total > 0.0 { 100.0 * s / total } else { 0.0 };
        let mut line = |r: &TimingRow| {
            out.push_str(&format!(
                "{:<44} {:>9.3} {:>6.1} {:>9}\n",
                r.name,
                r.seconds,
                pct(r.seconds),
                r.runs
            ));
        };
        for r in &phases {
            line(r);
        }
        for r in detectors.iter().take(top) {
            line(r);
        }
        if detectors.len() > top {
            let rest = &detectors[top..];
            line(&TimingRow {
                name: format!("{} other detectors", rest.len()),
                seconds: rest.iter().map(|r| r.seconds).sum(),
                runs: rest.iter().map(|r| r.runs).sum(),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sort_detectors_by_time_and_leave_out_those_never_run() {
        let t = Timings::new(3);
        t.detector(0, Duration::from_millis(5));
        t.detector(2, Duration::from_millis(9));
        t.detector(2, Duration::from_millis(1));
        t.detector(7, Duration::from_millis(1)); // out of range: ignored, no panic
        t.parsed(Duration::from_millis(20));
        t.scanned(Duration::from_millis(2));
        t.scanned(Duration::from_millis(2));
        let (phases, detectors) = t.rows(&["a", "b", "c"]);
        assert_eq!(phases[0].runs, 2);
        assert_eq!(phases[1].runs, 1);
        assert!((phases[1].seconds - 0.020).abs() < 1e-9);
        let names: Vec<&str> = detectors.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["c", "a"]);
        assert_eq!(detectors[0].runs, 2);
        let text = t.render(&["a", "b", "c"], 1);
        assert!(text.contains("1 other detectors"), "{text}");
        assert!(text.contains("parse"), "{text}");
    }
}
