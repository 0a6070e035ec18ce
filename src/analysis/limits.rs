//! Per-file limits that keep one hostile file from hurting the process that analyses it: nesting deep enough to
//! exhaust a parser or a recursive walk, lines long enough to make every finding huge, more findings than anyone
//! reads, analysis that runs too long. A file over a limit is skipped with the reason, never a crash.
//!
//! The nesting checks are cheap text scans run before any parser sees the file: the YAML grammar's scanner
//! aborts the process (a C assertion) when its indentation stack passes about 250 levels, so a deep file must be
//! turned away before it is parsed, not noticed while it is walked.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Open collections (block levels and flow brackets together) a YAML file may nest. Real manifests stay under
/// 20; the YAML parser itself breaks past about 250 block levels.
pub const MAX_YAML_NESTING: usize = 100;

/// Open brackets a Python file may nest: CPython's own tokenizer refuses more than 200.
pub const MAX_PYTHON_BRACKETS: usize = 200;

/// Indentation levels a Python file may nest: CPython's own tokenizer refuses more than 100.
pub const MAX_PYTHON_INDENTS: usize = 100;

/// Characters a YAML line may hold: the YAML parser counts columns in 16 bits.
pub const MAX_YAML_LINE_CHARS: usize = 30_000;

/// Findings reported per file; the rest are counted and said to be left out.
pub const MAX_FINDINGS_PER_FILE: usize = 1_000;

/// Analysis time per file; a file that runs over stops being analysed and is skipped with the reason.
pub const DEFAULT_FILE_TIME_LIMIT: Duration = Duration::from_secs(10);

/// The environment variable that overrides [`DEFAULT_FILE_TIME_LIMIT`] (whole seconds; for slow machines and
/// unoptimised builds).
pub const FILE_TIME_LIMIT_ENV: &str = "PRODAUDIT_FILE_TIME_LIMIT_SECS";

/// The analysis time per file: [`FILE_TIME_LIMIT_ENV`] when it holds a number of seconds, else the default.
pub fn file_time_limit() -> Duration {
    std::env::var(FILE_TIME_LIMIT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_FILE_TIME_LIMIT, Duration::from_secs)
}

/// Characters of a source line kept in a finding's code frame when the line is longer than
/// [`MAX_FRAME_LINE_CHARS`]: a window around the match.
pub const FRAME_WINDOW_CHARS: usize = 200;

/// Lines up to this many characters are kept whole in code frames.
pub const MAX_FRAME_LINE_CHARS: usize = 500;

/// Characters of a finding's message; longer messages (a check quoting huge code) are cut.
pub const MAX_MESSAGE_CHARS: usize = 1_000;

/// Levels a syntax tree may have. Bracket and indentation nesting stop far below (see the other limits);
/// chains such as `a.b().c()…` or `1 + 1 + …` nest no bracket yet make trees as deep as they are long.
pub const MAX_TREE_DEPTH: usize = 2_000;

/// Why a YAML text is nested too deeply (or has lines too long) for the parser, if it is.
pub fn yaml_too_deep(text: &str) -> Option<String> {
    // Indents of the open block collections, and open flow brackets.
    let mut block: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (n, line) in text.split('\n').enumerate() {
        if line.len() > MAX_YAML_LINE_CHARS && line.chars().count() > MAX_YAML_LINE_CHARS {
            return Some(format!(
                "line {} is longer than {MAX_YAML_LINE_CHARS} characters (generated or minified?)",
                n + 1
            ));
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = line[indent..].trim_end_matches('\r');
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if rest.starts_with("---") || rest.starts_with("...") {
            block.clear();
            flow = 0;
            continue;
        }
        if flow == 0 {
            while block.last().is_some_and(|&i| i > indent) {
                block.pop();
            }
            if block.last() != Some(&indent) {
                block.push(indent);
            }
            // Compact nested collections on one line: `- - - a`, `? - a`, `- key: - …`.
            let mut col = indent;
            let mut r = rest;
            while let Some(after) = ["- ", "? ", ": "]
                .iter()
                .find_map(|p| r.strip_prefix(p))
                .or_else(|| (r == "-").then_some(""))
            {
                let skipped = r.len() - after.len();
                let trimmed = after.trim_start_matches(' ');
                col += skipped + (after.len() - trimmed.len());
                block.push(col);
                r = trimmed;
                if r.is_empty() {
                    break;
                }
            }
        }
        // Flow brackets outside quotes and comments.
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for c in rest.chars() {
            match quote {
                Some(q) => {
                    if c == q {
                        quote = None;
                    }
                }
                None => match c {
                    '#' if prev == ' ' || prev == '\t' => break,
                    '\'' | '"' if matches!(prev, ' ' | '[' | '{' | ',' | ':') => quote = Some(c),
                    '[' | '{' => {
                        flow += 1;
                        if block.len() + flow > MAX_YAML_NESTING {
                            return Some(too_deep(n + 1, MAX_YAML_NESTING));
                        }
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
        }
        if block.len() + flow > MAX_YAML_NESTING {
            return Some(too_deep(n + 1, MAX_YAML_NESTING));
        }
    }
    None
}

fn too_deep(line: usize, limit: usize) -> String {
    format!("nested deeper than {limit} levels (at line {line})")
}

/// Why a Python text is nested deeper than Python itself allows, if it is: more open brackets than
/// [`MAX_PYTHON_BRACKETS`] or more indentation levels than [`MAX_PYTHON_INDENTS`].
pub fn python_too_deep(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut indents: Vec<usize> = vec![0];
    let mut line = 1usize;
    let mut at_line_start = true;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if at_line_start {
            at_line_start = false;
            let mut j = i;
            while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                j += 1;
            }
            let blank = j >= b.len() || matches!(b[j], b'\n' | b'\r' | b'#' | b'\\');
            if depth == 0 && !blank {
                let width = j - i;
                while indents.last().is_some_and(|&w| w > width) {
                    indents.pop();
                }
                if indents.last().is_some_and(|&w| w < width) {
                    indents.push(width);
                    if indents.len() - 1 > MAX_PYTHON_INDENTS {
                        return Some(format!(
                            "nested deeper than Python allows (more than {MAX_PYTHON_INDENTS} indentation levels at line {line})"
                        ));
                    }
                }
            }
            i = j;
            continue;
        }
        match c {
            b'\n' => {
                line += 1;
                at_line_start = true;
                i += 1;
            }
            b'\\' => i += 2, // a line continuation or an escaped character
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'\'' | b'"' => {
                let triple = b.get(i + 1) == Some(&c) && b.get(i + 2) == Some(&c);
                i += if triple { 3 } else { 1 };
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'\n' if !triple => break,
                        b'\n' => {
                            line += 1;
                            i += 1;
                        }
                        q if q == c
                            && (!triple
                                || (b.get(i + 1) == Some(&c) && b.get(i + 2) == Some(&c))) =>
                        {
                            i += if triple { 3 } else { 1 };
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_PYTHON_BRACKETS {
                    return Some(format!(
                        "nested deeper than Python allows (more than {MAX_PYTHON_BRACKETS} open brackets at line {line})"
                    ));
                }
                i += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// The point in time a file's analysis must end by, polled cheaply by the engine between detectors and every few
/// hundred nodes, and by the node index each time a check asks it for nodes (it then answers "none").
#[derive(Debug)]
pub struct Deadline {
    at: Instant,
    passed: Cell<bool>,
}

impl Deadline {
    pub fn after(limit: Duration) -> Self {
        let now = Instant::now();
        Deadline {
            at: now.checked_add(limit).unwrap_or(now),
            passed: Cell::new(limit.is_zero()),
        }
    }

    /// Has the time run out? Once it has, it stays out.
    pub fn passed(&self) -> bool {
        if !self.passed.get() && Instant::now() >= self.at {
            self.passed.set(true);
        }
        self.passed.get()
    }
}

thread_local! {
    static CURRENT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Makes `at` this thread's analysis deadline (for [`deadline_passed`]) until the guard is dropped.
pub struct DeadlineGuard {
    previous: Option<Instant>,
}

impl DeadlineGuard {
    pub fn set(deadline: &Deadline) -> Self {
        let previous = CURRENT.with(|c| c.replace(Some(deadline.at)));
        DeadlineGuard { previous }
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Has the analysis deadline of this thread passed? For code that cannot see the engine's [`Deadline`].
pub fn deadline_passed() -> bool {
    CURRENT.with(|c| c.get().is_some_and(|at| Instant::now() >= at))
}

/// At most `max` characters of `s`, cut on a character boundary, with `…` when something was cut.
pub fn cut_chars(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(s),
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}…", &s[..end])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_yaml_flow_and_block_are_caught() {
        let n = 10_000;
        let flow = format!("a: {}x{}\n", "[".repeat(n), "]".repeat(n));
        assert!(yaml_too_deep(&flow).is_some_and(|r| r.contains("nested deeper")));
        let maps = format!("a: {}x{}\n", "{a: ".repeat(n), "}".repeat(n));
        assert!(yaml_too_deep(&maps).is_some());
        let compact = format!("a:\n  {}x\n", "- ".repeat(n));
        assert!(yaml_too_deep(&compact).is_some());
        let indented: String = (0..150)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(yaml_too_deep(&indented).is_some());
    }

    #[test]
    fn ordinary_yaml_passes() {
        let text = "services:\n  web:\n    image: x\n    command: [\"sh\", \"-c\", \"echo [[[[[[\"]\n    environment:\n      - A=1 # [[[[\n      - B='{{{{'\n---\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: a\n          args: [a, {b: [c]}]\n";
        assert_eq!(yaml_too_deep(text), None);
        let ok: String = (0..60)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert_eq!(yaml_too_deep(&ok), None);
    }

    #[test]
    fn long_yaml_lines_are_caught() {
        let text = format!("a: {}\n", "x".repeat(MAX_YAML_LINE_CHARS + 1));
        assert!(yaml_too_deep(&text).is_some_and(|r| r.contains("longer than")));
    }

    #[test]
    fn python_nesting_beyond_cpython_is_caught() {
        let parens = format!("x = {}1{}\n", "(".repeat(5000), ")".repeat(5000));
        assert!(python_too_deep(&parens).is_some_and(|r| r.contains("open brackets")));
        let ifs: String = (0..150)
            .map(|i| format!("{}if x:\n", " ".repeat(i)))
            .chain(std::iter::once(format!("{}pass\n", " ".repeat(150))))
            .collect();
        assert!(python_too_deep(&ifs).is_some_and(|r| r.contains("indentation levels")));
    }

    #[test]
    fn ordinary_python_passes() {
        let text = "def f(a, b=(1, [2, {3: 4}])):\n    s = '((((' + \"[[[[\" + '''\n((((\n'''  # {{{{\n    if a:\n        return s\n    return \\\n        b\n";
        assert_eq!(python_too_deep(text), None);
        let brackets = format!("x = {}1{}\n", "(".repeat(200), ")".repeat(200));
        assert_eq!(python_too_deep(&brackets), None);
    }

    #[test]
    fn zero_time_limit_has_passed_at_once() {
        let d = Deadline::after(Duration::ZERO);
        assert!(d.passed());
        let d = Deadline::after(Duration::from_secs(3600));
        assert!(!d.passed());
        assert!(!deadline_passed());
        {
            let _g = DeadlineGuard::set(&Deadline::after(Duration::ZERO));
            assert!(deadline_passed());
        }
        assert!(!deadline_passed());
    }

    #[test]
    fn cut_chars_respects_boundaries() {
        assert_eq!(cut_chars("éééé", 2), "éé…");
        assert_eq!(cut_chars("ab", 2), "ab");
    }
}
