//! The hunk parser shared by [`parse_git_diff`](super::parse_git_diff) and [`parse_patch`], and the
//! line helpers both use.
//!
//! A hunk body is delimited by the counts of its header, never by the look of its lines: a `+++ x` line
//! inside a hunk is content while the header's new-side count is not exhausted.

use super::{DiffError, Hunk};

/// Splits `input` into lines at `\n` (the `\n` is removed; a `\r` before it is kept). A final `\n` does
/// not start another line, so `"a\nb\n"` is two lines and empty input is no line.
pub(super) fn split_lines(input: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// The line without a trailing `\r` (CRLF diffs), for header parsing.
pub(super) fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A [`DiffError::Malformed`] at 1-based `line`.
pub(super) fn malformed(line: usize, reason: impl Into<String>) -> DiffError {
    DiffError::Malformed {
        line,
        reason: reason.into(),
    }
}

/// A short, printable excerpt of a line for error messages.
pub(super) fn preview(line: &[u8]) -> String {
    const MAX: usize = 60;
    let text = String::from_utf8_lossy(trim_cr(line));
    let mut out: String = text.chars().take(MAX).collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    format!("{out:?}")
}

/// Whether `line` starts a hunk (`@@ ...`). Anything starting with `@@` is treated as a hunk header
/// attempt, so that a malformed one (or a combined `@@@` one) is reported rather than skipped.
pub(super) fn is_hunk_header(line: &[u8]) -> bool {
    line.starts_with(b"@@")
}

/// Parses consecutive hunks starting at `lines[*pos]` (which should be a hunk header), stopping at the
/// first line after a complete hunk that does not start another hunk; `*pos` is left on that line.
/// Sets `*submodule` when a content line is a `Subproject commit` line.
pub(super) fn parse_hunks(
    lines: &[&[u8]],
    pos: &mut usize,
    submodule: &mut bool,
) -> Result<Vec<Hunk>, DiffError> {
    let mut hunks = Vec::new();
    while let Some(&line) = lines.get(*pos) {
        if !is_hunk_header(line) {
            break;
        }
        hunks.push(parse_one_hunk(lines, pos, submodule)?);
    }
    Ok(hunks)
}

/// Parses the hunk whose header is `lines[*pos]` and its body; leaves `*pos` after the body (and after
/// any `\ No newline at end of file` markers that follow it).
fn parse_one_hunk(
    lines: &[&[u8]],
    pos: &mut usize,
    submodule: &mut bool,
) -> Result<Hunk, DiffError> {
    let header_no = *pos + 1;
    let header = lines.get(*pos).copied().unwrap_or_default();
    let (old_start, old_lines, new_start, new_lines) =
        parse_hunk_header(trim_cr(header)).map_err(|r| malformed(header_no, r))?;
    *pos += 1;

    let mut old_left = old_lines;
    let mut new_left = new_lines;
    let mut next_new = new_start;
    let mut next_old = old_start;
    let mut added = Vec::new();
    let mut deleted = Vec::new();
    while old_left > 0 || new_left > 0 {
        let line_no = *pos + 1;
        let Some(&line) = lines.get(*pos) else {
            return Err(malformed(
                line_no,
                format!(
                    "unexpected end of input inside the hunk that starts at line {header_no}: \
                     {old_left} old-side and {new_left} new-side lines missing (truncated diff?)"
                ),
            ));
        };
        // An empty line (bare "\r" in a CRLF diff) is a whitespace-stripped empty context line, as
        // `git apply` takes it.
        let kind = match trim_cr(line).first() {
            None => b' ',
            Some(&b) => b,
        };
        match kind {
            b' ' => {
                if old_left == 0 || new_left == 0 {
                    return Err(count_error(
                        line_no, header_no, "context", old_left, new_left,
                    ));
                }
                old_left -= 1;
                new_left -= 1;
                next_new = next_new.saturating_add(1);
                next_old = next_old.saturating_add(1);
            }
            b'-' => {
                if old_left == 0 {
                    return Err(count_error(line_no, header_no, "'-'", old_left, new_left));
                }
                old_left -= 1;
                deleted.push(next_old);
                next_old = next_old.saturating_add(1);
            }
            b'+' => {
                if new_left == 0 {
                    return Err(count_error(line_no, header_no, "'+'", old_left, new_left));
                }
                new_left -= 1;
                added.push(next_new);
                next_new = next_new.saturating_add(1);
            }
            // `\ No newline at end of file`: belongs to neither side.
            b'\\' => {}
            _ => {
                return Err(malformed(
                    line_no,
                    format!(
                        "the hunk that starts at line {header_no} ends early ({old_left} old-side and \
                         {new_left} new-side lines missing): {} is not a ' ', '-' or '+' line",
                        preview(line)
                    ),
                ));
            }
        }
        if matches!(kind, b' ' | b'-' | b'+')
            && line
                .get(1..)
                .is_some_and(|rest| rest.starts_with(b"Subproject commit "))
        {
            *submodule = true;
        }
        *pos += 1;
    }
    while lines.get(*pos).is_some_and(|l| l.first() == Some(&b'\\')) {
        *pos += 1;
    }
    Ok(Hunk {
        old_start,
        old_lines,
        new_start,
        new_lines,
        added,
        deleted,
    })
}

fn count_error(
    line_no: usize,
    header_no: usize,
    what: &str,
    old_left: usize,
    new_left: usize,
) -> DiffError {
    malformed(
        line_no,
        format!(
            "{what} line does not fit the counts of the hunk header at line {header_no} \
             ({old_left} old-side and {new_left} new-side lines were left)"
        ),
    )
}

/// Parses `@@ -a[,b] +c[,d] @@[ section]` into `(a, b, c, d)`; an omitted count means 1.
fn parse_hunk_header(line: &[u8]) -> Result<(usize, usize, usize, usize), String> {
    let bad = |why: &str| format!("invalid hunk header {}: {why}", preview(line));
    let rest = line.strip_prefix(b"@@ -").ok_or_else(|| {
        bad("expected it to start with \"@@ -\" (combined diffs are not supported)")
    })?;
    let sp = rest
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(|| bad("no new-side range"))?;
    let (old_start, old_lines) =
        parse_range(&rest[..sp]).ok_or_else(|| bad("bad old-side range"))?;
    let rest = rest[sp..]
        .strip_prefix(b" +")
        .ok_or_else(|| bad("expected \" +\" before the new-side range"))?;
    let sp = rest
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(|| bad("missing closing \"@@\""))?;
    let (new_start, new_lines) =
        parse_range(&rest[..sp]).ok_or_else(|| bad("bad new-side range"))?;
    let tail = &rest[sp..];
    if !(tail == b" @@" || tail.starts_with(b" @@ ")) {
        return Err(bad("missing closing \"@@\""));
    }
    for (side, start, count) in [("old", old_start, old_lines), ("new", new_start, new_lines)] {
        if count > 0 && start == 0 {
            return Err(bad(&format!(
                "{side}-side range starts at line 0 but is not empty"
            )));
        }
        if start.checked_add(count).is_none() {
            return Err(bad(&format!("{side}-side range is too large")));
        }
    }
    Ok((old_start, old_lines, new_start, new_lines))
}

/// Parses `start[,count]` (decimal digits only); an omitted count means 1.
fn parse_range(s: &[u8]) -> Option<(usize, usize)> {
    let (start, count) = match s.iter().position(|&b| b == b',') {
        Some(comma) => (&s[..comma], Some(&s[comma + 1..])),
        None => (s, None),
    };
    let start = parse_number(start)?;
    let count = match count {
        Some(c) => parse_number(c)?,
        None => 1,
    };
    Some((start, count))
}

fn parse_number(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, &d| {
        acc.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

/// Parses GitHub's per-file `patch` text from the pull-request files API: hunks only (it starts with
/// `@@`), no `diff --git` header. Empty text (GitHub's answer for a rename without changes) gives no hunk;
/// empty lines after the last hunk are tolerated, anything else outside a hunk is an error.
pub fn parse_patch(patch: &str) -> Result<Vec<Hunk>, DiffError> {
    let lines = split_lines(patch.as_bytes());
    let mut pos = 0;
    while lines.get(pos).is_some_and(|l| trim_cr(l).is_empty()) {
        pos += 1;
    }
    let mut submodule = false;
    let hunks = parse_hunks(&lines, &mut pos, &mut submodule)?;
    while let Some(&line) = lines.get(pos) {
        if !trim_cr(line).is_empty() {
            let what = if hunks.is_empty() {
                "expected a hunk header (\"@@ -a,b +c,d @@\")"
            } else {
                "unexpected line after the last hunk"
            };
            return Err(malformed(
                pos + 1,
                format!("{what}, found {}", preview(line)),
            ));
        }
        pos += 1;
    }
    Ok(hunks)
}
