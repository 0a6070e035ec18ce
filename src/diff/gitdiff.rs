//! The `git diff` parser: file headers, extended headers, paths (C-quoted or not), then the shared
//! hunk parser for the bodies.

use super::hunk::{is_hunk_header, malformed, parse_hunks, preview, split_lines, trim_cr};
use super::{DiffError, FileDiff, FileStatus, Hunk};

/// Parses the output of `git diff` (several files) given as raw bytes.
///
/// Expects git's format as produced by `git diff --no-color --no-ext-diff -M -U3 --src-prefix=a/
/// --dst-prefix=b/ BASE HEAD`, and also accepts plain unified diffs (`--- x` / `+++ y` sections without a
/// `diff --git` line). Content lines need not be UTF-8 (only their first byte matters); paths are decoded
/// lossily. Empty lines between and after files are tolerated; anything else outside a file is an error,
/// as are truncated hunks and combined diffs (`diff --cc`).
pub fn parse_git_diff(input: &[u8]) -> Result<Vec<FileDiff>, DiffError> {
    let lines = split_lines(input);
    let mut pos = 0;
    let mut files = Vec::new();
    while let Some(&raw) = lines.get(pos) {
        let line = trim_cr(raw);
        if line.is_empty() {
            pos += 1;
        } else if line.starts_with(b"diff --cc ") || line.starts_with(b"diff --combined ") {
            return Err(DiffError::CombinedDiff { line: pos + 1 });
        } else if let Some(rest) = line.strip_prefix(b"diff --git ") {
            files.push(parse_git_file(&lines, &mut pos, rest)?);
        } else if line.starts_with(b"--- ")
            && lines
                .get(pos + 1)
                .is_some_and(|next| trim_cr(next).starts_with(b"+++ "))
        {
            files.push(parse_plain_file(&lines, &mut pos)?);
        } else {
            let what = if files.is_empty() {
                "expected a \"diff --git\" header"
            } else {
                "expected a \"diff --git\" header or the end of the diff"
            };
            return Err(malformed(
                pos + 1,
                format!("{what}, found {}", preview(line)),
            ));
        }
    }
    Ok(files)
}

/// What the lines of one file's header said.
#[derive(Default)]
struct Header {
    new_file: bool,
    deleted: bool,
    old_mode: Option<String>,
    new_mode: Option<String>,
    index_mode: Option<String>,
    rename_from: Option<String>,
    rename_to: Option<String>,
    copy_from: Option<String>,
    copy_to: Option<String>,
    /// The `---` path: `Some(None)` for `/dev/null`.
    minus: Option<Option<String>>,
    /// The `+++` path: `Some(None)` for `/dev/null`.
    plus: Option<Option<String>>,
    binary: bool,
    submodule: bool,
}

/// Parses one file starting at its `diff --git ` line (`rest` is that line after the prefix); leaves
/// `*pos` on the first line after the file.
fn parse_git_file(lines: &[&[u8]], pos: &mut usize, rest: &[u8]) -> Result<FileDiff, DiffError> {
    let header_no = *pos + 1;
    *pos += 1;
    let mut h = Header::default();
    let mut hunks = Vec::new();
    while let Some(&raw) = lines.get(*pos) {
        let line = trim_cr(raw);
        let line_no = *pos + 1;
        if line.is_empty() || line.starts_with(b"diff ") {
            break;
        }
        if is_hunk_header(line) {
            hunks = parse_hunks(lines, pos, &mut h.submodule)?;
            break;
        }
        if let Some(minus) = line.strip_prefix(b"--- ") {
            let (old, new) = parse_markers(lines, *pos, minus)?;
            h.minus = Some(old);
            h.plus = Some(new);
            *pos += 2;
            if lines.get(*pos).is_some_and(|l| is_hunk_header(l)) {
                hunks = parse_hunks(lines, pos, &mut h.submodule)?;
            }
            break;
        }
        if line == b"GIT binary patch" {
            // Base85 data lines never contain a space, so they never look like "diff ...".
            h.binary = true;
            *pos += 1;
            while lines
                .get(*pos)
                .is_some_and(|l| !trim_cr(l).starts_with(b"diff "))
            {
                *pos += 1;
            }
            break;
        }
        extended_header(line, &mut h).map_err(|r| malformed(line_no, r))?;
        *pos += 1;
    }
    build_file(h, hunks, rest, header_no)
}

/// Parses a plain unified-diff file (`--- x` then `+++ y`, no `diff --git`) at `lines[*pos]`.
fn parse_plain_file(lines: &[&[u8]], pos: &mut usize) -> Result<FileDiff, DiffError> {
    let header_no = *pos + 1;
    let minus = lines
        .get(*pos)
        .and_then(|l| trim_cr(l).strip_prefix(b"--- "))
        .unwrap_or_default();
    let (old_path, new_path) = parse_markers(lines, *pos, minus)?;
    *pos += 2;
    let mut submodule = false;
    let hunks = if lines.get(*pos).is_some_and(|l| is_hunk_header(l)) {
        parse_hunks(lines, pos, &mut submodule)?
    } else {
        Vec::new()
    };
    let status = match (&old_path, &new_path) {
        (None, None) => {
            return Err(malformed(
                header_no,
                "both \"---\" and \"+++\" are /dev/null",
            ));
        }
        (None, Some(_)) => FileStatus::Added,
        (Some(_), None) => FileStatus::Deleted,
        (Some(_), Some(_)) => FileStatus::Modified,
    };
    Ok(FileDiff {
        old_path,
        new_path,
        status,
        binary: false,
        submodule,
        old_mode: None,
        new_mode: None,
        hunks,
    })
}

/// Parses the `--- ` line at `lines[at]` (its text after the prefix is `minus`) and the `+++ ` line that
/// must follow it.
fn parse_markers(
    lines: &[&[u8]],
    at: usize,
    minus: &[u8],
) -> Result<(Option<String>, Option<String>), DiffError> {
    let plus = lines
        .get(at + 1)
        .and_then(|l| trim_cr(l).strip_prefix(b"+++ "))
        .ok_or_else(|| malformed(at + 2, "a \"---\" line must be followed by a \"+++\" line"))?;
    let old = marker_path(minus, b"a/").map_err(|r| malformed(at + 1, r))?;
    let new = marker_path(plus, b"b/").map_err(|r| malformed(at + 2, r))?;
    Ok((old, new))
}

/// Applies one extended header line (`old mode`, `rename from`, `index`, ...) to `h`.
fn extended_header(line: &[u8], h: &mut Header) -> Result<(), String> {
    if let Some(v) = line.strip_prefix(b"old mode ") {
        h.old_mode = Some(mode(v)?);
    } else if let Some(v) = line.strip_prefix(b"new mode ") {
        h.new_mode = Some(mode(v)?);
    } else if let Some(v) = line.strip_prefix(b"deleted file mode ") {
        h.deleted = true;
        h.old_mode = Some(mode(v)?);
    } else if let Some(v) = line.strip_prefix(b"new file mode ") {
        h.new_file = true;
        h.new_mode = Some(mode(v)?);
    } else if let Some(v) = line
        .strip_prefix(b"rename from ")
        .or_else(|| line.strip_prefix(b"rename old "))
    {
        h.rename_from = Some(header_path(v)?);
    } else if let Some(v) = line
        .strip_prefix(b"rename to ")
        .or_else(|| line.strip_prefix(b"rename new "))
    {
        h.rename_to = Some(header_path(v)?);
    } else if let Some(v) = line.strip_prefix(b"copy from ") {
        h.copy_from = Some(header_path(v)?);
    } else if let Some(v) = line.strip_prefix(b"copy to ") {
        h.copy_to = Some(header_path(v)?);
    } else if let Some(v) = line.strip_prefix(b"index ") {
        // "index abc123..def456[ 100644]"
        let mut parts = v.split(|&b| b == b' ').filter(|p| !p.is_empty());
        let ids = parts.next().unwrap_or_default();
        if !ids.windows(2).any(|w| w == b"..") {
            return Err(format!("invalid index line {}", preview(line)));
        }
        if let Some(m) = parts.next() {
            h.index_mode = Some(mode(m)?);
        }
    } else if line.starts_with(b"similarity index ") || line.starts_with(b"dissimilarity index ") {
        // Informational only.
    } else if line.starts_with(b"Binary files ") {
        h.binary = true;
    } else {
        return Err(format!(
            "unrecognised line in the header of a file diff: {}",
            preview(line)
        ));
    }
    Ok(())
}

/// A file mode: octal digits.
fn mode(v: &[u8]) -> Result<String, String> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return Err(format!("invalid file mode {}", preview(v)));
    }
    Ok(String::from_utf8_lossy(v).into_owned())
}

/// A path of a `rename from`/`copy to`/... line: C-quoted, or the rest of the line verbatim.
fn header_path(v: &[u8]) -> Result<String, String> {
    let bytes = if v.first() == Some(&b'"') {
        let (decoded, used) = unquote(v)?;
        if !v.get(used..).unwrap_or_default().trim_ascii().is_empty() {
            return Err(format!(
                "unexpected text after the quoted path {}",
                preview(v)
            ));
        }
        decoded
    } else {
        v.to_vec()
    };
    non_empty_path(&bytes).ok_or_else(|| "empty path".to_string())
}

/// The path of a `---`/`+++` line without `prefix`; `None` for `/dev/null`. An unquoted path ends at a
/// tab (git appends one to names that contain a space; old tools append a tab and a timestamp).
fn marker_path(v: &[u8], prefix: &[u8]) -> Result<Option<String>, String> {
    let bytes = if v.first() == Some(&b'"') {
        unquote(v)?.0
    } else {
        let end = v.iter().position(|&b| b == b'\t').unwrap_or(v.len());
        v[..end].to_vec()
    };
    if bytes == b"/dev/null" {
        return Ok(None);
    }
    let path = bytes.strip_prefix(prefix).unwrap_or(&bytes);
    non_empty_path(path)
        .map(Some)
        .ok_or_else(|| format!("empty path in {}", preview(v)))
}

fn non_empty_path(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// Decodes a C-quoted string at the start of `s` (which starts with `"`), as git writes paths with
/// special characters: `\a \b \t \n \v \f \r \" \\` and three-digit octal escapes of bytes. Returns the
/// bytes and how many input bytes the quoted string took (quotes included).
fn unquote(s: &[u8]) -> Result<(Vec<u8>, usize), String> {
    if s.first() != Some(&b'"') {
        return Err("expected a quoted path".to_string());
    }
    let mut out = Vec::new();
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return Ok((out, i + 1)),
            b'\\' => {
                let esc = s.get(i + 1).copied();
                let simple = match esc {
                    Some(b'a') => Some(0x07),
                    Some(b'b') => Some(0x08),
                    Some(b't') => Some(b'\t'),
                    Some(b'n') => Some(b'\n'),
                    Some(b'v') => Some(0x0b),
                    Some(b'f') => Some(0x0c),
                    Some(b'r') => Some(b'\r'),
                    Some(b'"') => Some(b'"'),
                    Some(b'\\') => Some(b'\\'),
                    _ => None,
                };
                if let Some(c) = simple {
                    out.push(c);
                    i += 2;
                    continue;
                }
                let octal = s
                    .get(i + 1..i + 4)
                    .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
                let value =
                    octal.map(|d| d.iter().fold(0u32, |acc, &c| acc * 8 + u32::from(c - b'0')));
                match value.and_then(|v| u8::try_from(v).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 4;
                    }
                    None => {
                        return Err(format!("invalid escape in the quoted path {}", preview(s)));
                    }
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Err(format!("unterminated quoted path {}", preview(s)))
}

/// The two paths of a `diff --git` line (without `a/`/`b/`). Only used when neither `---`/`+++` nor
/// `rename`/`copy` lines name the file: then both names are the same (an added or deleted empty file, a
/// mode change, a binary file), which resolves the ambiguity of unquoted names with spaces.
fn header_paths(rest: &[u8]) -> Result<(String, String), String> {
    let (a, b) = split_header(rest).ok_or_else(|| {
        format!(
            "cannot find the two paths in the \"diff --git\" line {}",
            preview(rest)
        )
    })?;
    let a = a.strip_prefix(b"a/").unwrap_or(&a);
    let b = b.strip_prefix(b"b/").unwrap_or(&b);
    match (non_empty_path(a), non_empty_path(b)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err("empty path in the \"diff --git\" line".to_string()),
    }
}

/// Splits the text after `diff --git ` into the two (still prefixed) names.
fn split_header(rest: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    if rest.first() == Some(&b'"') {
        let (a, used) = unquote(rest).ok()?;
        let tail = rest.get(used..)?.strip_prefix(b" ")?;
        let b = if tail.first() == Some(&b'"') {
            unquote(tail).ok()?.0
        } else {
            tail.to_vec()
        };
        return Some((a, b));
    }
    if rest.last() == Some(&b'"') {
        // An unquoted name cannot contain '"' (git would have quoted it), so the first ` "` starts the
        // quoted second name.
        if let Some(sp) = rest.windows(2).position(|w| w == b" \"") {
            let (b, used) = unquote(&rest[sp + 1..]).ok()?;
            if sp + 1 + used == rest.len() {
                return Some((rest[..sp].to_vec(), b));
            }
        }
    }
    // Both unquoted: "a/P b/P" with the same P (or "P P" without prefixes).
    let len = rest.len();
    if len >= 5 && (len - 5).is_multiple_of(2) {
        let p = (len - 5) / 2;
        if rest.starts_with(b"a/")
            && rest.get(2 + p..5 + p) == Some(b" b/".as_slice())
            && rest.get(2..2 + p) == rest.get(5 + p..)
        {
            return Some((rest[..2 + p].to_vec(), rest[3 + p..].to_vec()));
        }
    }
    if !len.is_multiple_of(2) {
        let p = len / 2;
        if rest.get(p) == Some(&b' ') && rest.get(..p) == rest.get(p + 1..) {
            return Some((rest[..p].to_vec(), rest[p + 1..].to_vec()));
        }
    }
    // Different unquoted names (not produced by git without rename/copy lines): split at the first " b/".
    let sp = rest.windows(3).position(|w| w == b" b/")?;
    Some((rest[..sp].to_vec(), rest[sp + 1..].to_vec()))
}

/// Resolves paths and status from what the header said.
fn build_file(
    h: Header,
    hunks: Vec<Hunk>,
    rest: &[u8],
    header_no: usize,
) -> Result<FileDiff, DiffError> {
    let renamed = h.rename_from.is_some() || h.rename_to.is_some();
    let copied = h.copy_from.is_some() || h.copy_to.is_some();
    // Precedence: ---/+++ lines, then rename/copy lines, then the `diff --git` line itself.
    let old_named = h.minus.or(h.rename_from.or(h.copy_from).map(Some));
    let new_named = h.plus.or(h.rename_to.or(h.copy_to).map(Some));
    let (mut old_path, mut new_path) = match (old_named, new_named) {
        (Some(old), Some(new)) => (old, new),
        (old, new) => {
            let (a, b) = header_paths(rest).map_err(|r| malformed(header_no, r))?;
            (old.unwrap_or(Some(a)), new.unwrap_or(Some(b)))
        }
    };
    // A /dev/null side decides over rename/copy lines (which git never writes together with it).
    let status = if h.new_file || old_path.is_none() {
        FileStatus::Added
    } else if h.deleted || new_path.is_none() {
        FileStatus::Deleted
    } else if renamed {
        FileStatus::Renamed
    } else if copied {
        FileStatus::Copied
    } else {
        FileStatus::Modified
    };
    match status {
        FileStatus::Added => old_path = None,
        FileStatus::Deleted => new_path = None,
        _ => {}
    }
    if old_path.is_none() && new_path.is_none() {
        return Err(malformed(header_no, "the file has no path on either side"));
    }
    let mut old_mode = h.old_mode;
    let mut new_mode = h.new_mode;
    if let Some(m) = &h.index_mode {
        if old_mode.is_none() && status != FileStatus::Added {
            old_mode = Some(m.clone());
        }
        if new_mode.is_none() && status != FileStatus::Deleted {
            new_mode = Some(m.clone());
        }
    }
    let gitlink = |m: &Option<String>| m.as_deref() == Some("160000");
    let submodule = h.submodule || gitlink(&old_mode) || gitlink(&new_mode);
    Ok(FileDiff {
        old_path,
        new_path,
        status,
        binary: h.binary,
        submodule,
        old_mode,
        new_mode,
        hunks,
    })
}
