//! Text for messages and names: code shortened to one line, identifiers split into words.

/// How much of a piece of code a message quotes. The detectors quote at three widths; each is named here so
/// a message's width is chosen, not copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Longer than this many characters (on one line) is cut …
    pub max: usize,
    /// … to this many, then `…`.
    pub keep: usize,
}

impl Cut {
    /// A statement (C1, C2, C3): up to 70 characters.
    pub const STATEMENT: Cut = Cut { max: 70, keep: 67 };
    /// A value or an expression in a sentence (I3, I5, I6, O1): up to 60 characters.
    pub const EXPRESSION: Cut = Cut { max: 60, keep: 57 };
    /// A callee or a receiver (C5 drivers, C6, F3): up to 40 characters.
    pub const NAME: Cut = Cut { max: 40, keep: 39 };
}

/// Code on one line (whitespace runs made one space), cut to `cut`'s width. Only the start of the code is looked
/// at, however long it is (a capture can be a whole file).
pub fn shorten(code: &str, cut: Cut) -> String {
    let mut one_line = String::new();
    let mut count = 0;
    for (i, word) in code.split_whitespace().enumerate() {
        if i > 0 {
            one_line.push(' ');
            count += 1;
        }
        one_line.push_str(word);
        count += word.chars().count();
        if count > cut.max {
            break;
        }
    }
    if count > cut.max {
        let kept: String = one_line.chars().take(cut.keep).collect();
        format!("{kept}…")
    } else {
        one_line
    }
}

/// Does `text` hold `word` as a whole identifier (`user_id` in `chat.user_id != me.id`, not in `other_user_id`)?
pub fn has_word(text: &str, word: &str) -> bool {
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    text.match_indices(word).any(|(at, _)| {
        let before = at == 0 || !ident(bytes[at - 1]);
        let end = at + word.len();
        let after = end >= bytes.len() || !ident(bytes[end]);
        before && after
    })
}

/// A `def`/`class` header read as text: `rest` is what follows the keyword on line `*next - 1` of `lines`; returns
/// the name and the rest of the header, joining following lines (advancing `*next`, at most `max_lines`) until
/// `complete` says the header is whole. `None` when no name follows the keyword.
pub fn header_of(
    rest: &str,
    lines: &[&str],
    next: &mut usize,
    max_lines: usize,
    complete: impl Fn(&str) -> bool,
) -> Option<(String, String)> {
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() {
        return None;
    }
    let mut header = rest[name.len()..].to_string();
    let mut extra = 0;
    while !complete(&header) && extra < max_lines && *next < lines.len() {
        header.push(' ');
        header.push_str(lines[*next].trim());
        *next += 1;
        extra += 1;
    }
    Some((name, header))
}

/// Split an identifier into lower-case words (`uploaded_files` → uploaded, files; `docUrls` → doc, urls).
pub fn words(ident: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in ident.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The bases of a class, from the header text after its name (`(Base, sa.orm.Mixin, Generic[T], metaclass=M):`
/// → `Base`, `Mixin`, `Generic`): each base's last dotted segment without its subscript; keyword arguments
/// (`metaclass=…`, SQLModel's `table=True`) are left out. Reads up to the parenthesis that closes the list.
pub fn class_bases(after_name: &str) -> Vec<String> {
    let Some(list) = after_name.trim_start().strip_prefix('(') else {
        return Vec::new();
    };
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut end = list.len();
    for (at, c) in list.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ')' if depth == 0 => {
                end = at;
                break;
            }
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..end.max(start)]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|b| !b.is_empty() && !b.contains('='))
        .map(|b| {
            let last = b.rsplit('.').next().unwrap_or(b);
            last.split('[').next().unwrap_or(last).trim().to_string()
        })
        .filter(|b| !b.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::class_bases;

    #[test]
    fn bases_of_a_class_header() {
        assert_eq!(
            class_bases("(Base, sa.orm.TenantMixin, Generic[T], table=True):"),
            ["Base", "TenantMixin", "Generic"]
        );
        assert_eq!(
            class_bases("( Dict[str, int], metaclass=Meta(x) ) :  # (c)"),
            ["Dict"]
        );
        assert!(class_bases(":").is_empty());
        assert!(class_bases("():").is_empty());
    }

    use super::*;

    #[test]
    fn shortens_to_the_named_widths_reading_only_the_start() {
        assert_eq!(shorten("a  =\n  b", Cut::NAME), "a = b");
        let long = format!("f({})", "x, ".repeat(100_000));
        for cut in [Cut::STATEMENT, Cut::EXPRESSION, Cut::NAME] {
            let s = shorten(&long, cut);
            assert_eq!(s.chars().count(), cut.keep + 1);
            assert!(s.ends_with('…'));
        }
        let exact = "y".repeat(60);
        assert_eq!(shorten(&exact, Cut::EXPRESSION), exact, "60 characters fit");
        assert_eq!(
            shorten(&format!("{exact}z"), Cut::EXPRESSION)
                .chars()
                .count(),
            58
        );
    }
}
