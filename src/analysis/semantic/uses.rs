//! Functions nothing calls: the functions and methods of the repository whose name no other code of the service
//! mentions (outside comments, tests and code that is not the service, and outside import lines that only bring
//! the name in). Their code never runs in the service, so a critical/high finding there is a wrong comment. A
//! function only such functions mention is one of them too (the helper of a function nothing calls): names count
//! from module and class level, from functions never called unused, and from functions found used, to a fixed
//! point.
//!
//! Read from each Python file's text in one pass, as names: a method or nested function counts as used when its
//! name appears anywhere else as a word (a call, a callback handed over, a string naming it, a docstring), so the
//! answer errs towards "used". A module-level function is a name its module exports, so only code that can reach
//! that module counts: a bare use in its own file, in a file importing the name from a module or package of the
//! module's name (`from app.api import get`, `from . import get`, a star import), or an attribute use on the
//! module's name, its package's name or an import alias (`api.get(…)`, `core.get`, `fapi.get`); in a file that
//! reads attributes or imports modules by name and names the module, any use; in a file importing modules by a
//! run-time name, any attribute use; in a deployment text, a use naming the module too. Never a word of a docstring
//! or comment. A CLI's `api.get(url)` helpers beside the server are then not "used" by every `dict.get` of the
//! service.
//!
//! Never called dead: decorated functions (routes, tasks, properties, validators, fixtures), dunder
//! methods, `test…` functions, and methods of classes with a base the repository does not define (a library's base
//! class may call them: LangChain's `_run`, a `BaseHTTPMiddleware.dispatch`).

use super::python::text::class_bases;
use super::reach::{ModuleFacts, import_statement};
use std::collections::{HashMap, HashSet};

/// Most names recorded per file (definitions and uses); a file past it counts as using every name.
const MAX_NAMES_PER_FILE: usize = 200_000;

/// One `def` of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefFact {
    pub name: String,
    /// 1-based line of the `def`.
    pub line: usize,
    /// Decorated, a dunder, a test, or a method a library's base class may call: never called dead.
    pub exempt: bool,
    /// For a method: the bases of its class (names as written, last segment).
    pub class_bases: Option<Vec<String>>,
    /// Its body can decide nothing about access ([`can_decide`] is false on every line): no `raise`, branch,
    /// comparison, `await`, query or call of a checking helper — it formats, signs or stores what it is given.
    pub passive: bool,
    /// Hashes of the words of its own body (not of functions nested in it), sorted and unique: they count as uses
    /// only when the function itself is used.
    pub uses: Vec<u64>,
    /// Defined at module level (not in a class or another function): used only where its module can be reached.
    pub top_level: bool,
    /// A start-up or shutdown hook (named `lifespan`/`startup`/`on_startup`/`shutdown`/… or decorated
    /// `@….on_event(…)`): what only it calls runs before the server takes traffic.
    pub startup: bool,
    /// Hashes of the words of its own body's lines that hand work over to run on its own (`create_task(…)`,
    /// `ensure_future`, `Thread(target=…)`, `add_job`, `start_soon`), sorted and unique: what a start-up hook
    /// spawns runs while the server serves.
    pub spawns: Vec<u64>,
    /// The code words of its own body not written after a dot (no docstring or comment), sorted and unique.
    pub bare: Vec<u64>,
    /// The code words of its own body written after a dot, with the word before the dot (`api.get` →
    /// `(api, get)`; `0` for a base that is no word, `f().get`), sorted and unique.
    pub dotted: Vec<(u64, u64)>,
}

/// Words of a function that may decide access besides the checking helpers' own
/// ([`super::python::roles::ACCESS_CHECK_WORDS`]): membership, roles, policies and predicates.
const MORE_DECIDING_WORDS: &[&str] = &["member", "role", "policy", "is_", "has_"];

fn deciding_word(lower: &str) -> bool {
    super::python::roles::ACCESS_CHECK_WORDS
        .iter()
        .chain(MORE_DECIDING_WORDS)
        .any(|w| lower.contains(w))
}

/// Could this line of a function's body decide whether a caller may act (so the function may be a check)?
/// Errs towards yes: a function with any such line is never called passive.
fn can_decide(t: &str) -> bool {
    let lower = t.to_ascii_lowercase();
    // A return annotation is no comparison.
    let ops = t.replace("->", "");
    let branch = ["if ", "elif ", "assert ", "while ", "match ", "case "]
        .iter()
        .any(|k| t.starts_with(k));
    branch
        || super::python::text::has_word(t, "raise")
        || super::python::text::has_word(t, "await")
        || super::python::text::has_word(t, "yield")
        || super::python::text::has_word(t, "if")
        || ["==", "!=", "<", ">", " is ", " not "]
            .iter()
            .any(|o| ops.contains(o))
        || (t.contains(" in ") && !t.starts_with("for "))
        || [
            ".execute(",
            ".query(",
            ".scalar",
            ".get(",
            "session",
            "select(",
        ]
        .iter()
        .any(|w| t.contains(w))
        || deciding_word(&lower)
}

/// What one file defines and which names it uses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NameFacts {
    pub defs: Vec<DefFact>,
    /// Hashes of the words used outside every function's body (module and class level, decorators, parameters
    /// and defaults), sorted and unique.
    pub uses: Vec<u64>,
    /// Classes defined here.
    pub classes: Vec<String>,
    /// Too many names to record: counts as using every name.
    pub uses_everything: bool,
    /// Module-level and class-level code words not written after a dot (see [`DefFact::bare`]).
    pub bare: Vec<u64>,
    /// Module-level and class-level code words written after a dot (see [`DefFact::dotted`]).
    pub dotted: Vec<(u64, u64)>,
    /// Hashes of the names bound by `as` in import lines (`import app.api as fapi` → `fapi`).
    pub aliases: Vec<u64>,
    /// Imports modules by name (`import_module`, `__import__`, `load_module`, `spec_from_file_location`).
    pub loads_modules: bool,
    /// … by a name only known at run time (not a string literal): an attribute use there may be on any module.
    pub loads_unknown_modules: bool,
    /// Reads attributes by name (`getattr(api, "get")`): a bare word there may name any module's function.
    pub reads_attrs: bool,
}

/// Words of one stretch of a file, as all words, code words not after a dot, and code words after a dot.
#[derive(Debug, Default)]
struct LineWords {
    all: Vec<u64>,
    bare: Vec<u64>,
    dotted: Vec<(u64, u64)>,
}

impl LineWords {
    /// The words counted against [`MAX_NAMES_PER_FILE`] (the bare and dotted lists hold the same words again).
    fn len(&self) -> usize {
        self.all.len()
    }

    fn extend(&mut self, other: LineWords) {
        self.all.extend(other.all);
        self.bare.extend(other.bare);
        self.dotted.extend(other.dotted);
    }

    fn sort(&mut self) {
        for v in [&mut self.all, &mut self.bare] {
            v.sort_unstable();
            v.dedup();
        }
        self.dotted.sort_unstable();
        self.dotted.dedup();
    }

    /// Prose (a docstring, a comment): a word of it counts only as a plain word.
    fn prose(&mut self, text: &str) {
        self.all.extend(words(text).map(hash));
    }

    /// Code: every word, and each one as bare or after a dot. The part after a `#` outside quotes is prose.
    fn code(&mut self, text: &str) {
        let (code, comment) = split_comment(text);
        self.prose(comment);
        let bytes = code.as_bytes();
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
        let mut i = 0;
        // The last identifier read and whether only a dot (and spaces) followed it.
        let mut prev: Option<&str> = None;
        let mut after_dot = false;
        while i < bytes.len() {
            let b = bytes[i];
            if word(b) {
                let start = i;
                while i < bytes.len() && word(bytes[i]) {
                    i += 1;
                }
                let w = &code[start..i];
                if !bytes[start].is_ascii_digit() && w.len() > 2 && !is_keyword(w) {
                    let h = hash(w);
                    self.all.push(h);
                    if after_dot {
                        self.dotted.push((prev.map_or(0, hash), h));
                    } else {
                        self.bare.push(h);
                    }
                }
                prev = (!bytes[start].is_ascii_digit()).then_some(w);
                after_dot = false;
                continue;
            }
            // `"app.main:create_app"` names `create_app` of module `main` as a dot would.
            let colon_path = b == b':'
                && prev.is_some()
                && i > 0
                && word(bytes[i - 1])
                && bytes.get(i + 1).is_some_and(|&n| word(n));
            if b == b'.' || colon_path {
                after_dot = true;
            } else if !b.is_ascii_whitespace() {
                prev = None;
                after_dot = false;
            }
            i += 1;
        }
    }
}

/// A line's code and its comment: split at the first `#` outside single or double quotes.
fn split_comment(line: &str) -> (&str, &str) {
    let mut quote: Option<u8> = None;
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(_) if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'#' => return (&line[..i], &line[i..]),
            None => {}
        }
        i += 1;
    }
    (line, "")
}

fn hash(word: &str) -> u64 {
    // FxHash's step over the bytes, written out (no `Hasher` calls per word). Not keyed against collisions: the
    // words are the repository's own, and a collision only makes a function count as used (the safe side).
    const K: u64 = 0x517c_c1b7_2722_0a95;
    word.bytes().fold(word.len() as u64, |h, b| {
        (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K)
    })
}
/// Python keywords and the commonest builtins, skipped when counting uses (most of the words of any file); a
/// `match` compiles to comparisons by length, this runs for every word of the repository.
fn is_keyword(w: &str) -> bool {
    matches!(
        w,
        "self"
            | "def"
            | "return"
            | "None"
            | "True"
            | "False"
            | "and"
            | "not"
            | "for"
            | "from"
            | "import"
            | "class"
            | "else"
            | "elif"
            | "with"
            | "try"
            | "except"
            | "raise"
            | "await"
            | "async"
            | "lambda"
            | "pass"
            | "while"
            | "yield"
            | "str"
            | "int"
            | "dict"
            | "list"
            | "cls"
    )
}

/// The identifiers of a piece of code (words of letters, digits, `_` and non-ASCII letters, not starting with a
/// digit), read byte by byte: this runs over every line of the repository.
fn words(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
        loop {
            while i < bytes.len() && !word(bytes[i]) {
                i += 1;
            }
            if i >= bytes.len() {
                return None;
            }
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            // Word boundaries fall on ASCII bytes, so `start..i` is on character boundaries. Words of one or
            // two letters and Python's keywords name no function worth holding findings back for: not counted.
            if !bytes[start].is_ascii_digit() && i - start > 2 && !is_keyword(&text[start..i]) {
                return text.get(start..i);
            }
        }
    })
}

/// The names a file defines and uses.
pub fn name_facts(text: &str) -> NameFacts {
    let mut facts = NameFacts::default();
    facts.loads_modules = [
        "import_module",
        "__import__",
        "load_module",
        "spec_from_file_location",
    ]
    .iter()
    .any(|w| text.contains(w));
    facts.loads_unknown_modules = ["load_module", "spec_from_file_location"]
        .iter()
        .any(|w| text.contains(w))
        || ["import_module(", "__import__("].iter().any(|call| {
            text.match_indices(call)
                .any(|(at, m)| !text[at + m.len()..].trim_start().starts_with(['"', '\'']))
        });
    facts.reads_attrs = facts.loads_modules || text.contains("getattr(");
    let mut uses = LineWords::default();
    let mut next_check = MAX_NAMES_PER_FILE;
    // Enclosing blocks: (indent, class bases when a class, index in `defs` when a function).
    let mut stack: Vec<(usize, Option<Vec<String>>, Option<usize>)> = Vec::new();
    let mut decorated = false;
    let mut event_hook = false;
    let mut in_quotes = false;
    // The words of the line read last and the function whose own body holds it (`None`: outside every body).
    let mut pending: (Option<usize>, LineWords) = (None, LineWords::default());
    let mut def_uses: Vec<LineWords> = Vec::new();
    let mut def_spawns: Vec<Vec<u64>> = Vec::new();
    let mut recorded = 0usize;
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        // The last line's words go to their function's body, or to the file's.
        let (owner, words_of_line) = std::mem::take(&mut pending);
        recorded += words_of_line.len();
        match owner.and_then(|k| def_uses.get_mut(k)) {
            Some(v) => v.extend(words_of_line),
            None => uses.extend(words_of_line),
        }
        if recorded >= next_check {
            // Counted with repeats: sort them out before giving up.
            uses.sort();
            for v in &mut def_uses {
                v.sort();
            }
            let kept = uses.len() + def_uses.iter().map(LineWords::len).sum::<usize>();
            if kept > MAX_NAMES_PER_FILE {
                facts.uses_everything = true;
                break;
            }
            next_check = recorded + MAX_NAMES_PER_FILE;
        }
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let indent = line.len() - t.len();
        // A line of code at or left of a block's own indentation closes the block (not a line of a triple-quoted
        // string, nor the closing bracket of an expression).
        if !in_quotes && !t.starts_with([')', ']', '}']) {
            while stack.last().is_some_and(|(d, _, _)| *d >= indent) {
                stack.pop();
            }
        }
        // The function whose own body holds this line: the innermost open block indented less, when a function.
        pending.0 = stack
            .iter()
            .rev()
            .find(|(d, _, _)| *d < indent)
            .and_then(|(_, _, def)| *def);
        let uses = &mut pending.1;
        if t.starts_with('@') {
            decorated = true;
            event_hook |= t.contains(".on_event(");
            uses.code(t);
            // A decorator's arguments over several lines (`@router.patch("/x",\n    response_model=Out)`).
            let mut depth = balance(t);
            let mut extra = 0;
            while depth > 0 && extra < MAX_HEADER_LINES {
                let Some((_, more)) = lines.next() else { break };
                uses.code(more);
                depth += balance(more);
                extra += 1;
            }
            continue;
        }
        let def = t
            .strip_prefix("async def ")
            .or_else(|| t.strip_prefix("def "));
        let class = t.strip_prefix("class ");
        if def.is_some() || class.is_some() {
            while stack.last().is_some_and(|(d, _, _)| *d >= indent) {
                stack.pop();
            }
        }
        if let Some(rest) = def {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let class_bases = stack.last().and_then(|(_, c, _)| c.clone());
            let top_level = stack.is_empty();
            // Names the use count skips (one or two letters, keywords) are never called unused.
            let exempt = decorated
                || name.len() <= 2
                || is_keyword(&name)
                || (name.starts_with("__") && name.ends_with("__"))
                || name.starts_with("test");
            let mut index = None;
            if !name.is_empty() {
                index = Some(facts.defs.len());
                facts.defs.push(DefFact {
                    passive: !deciding_word(&name.to_ascii_lowercase()),
                    startup: event_hook || super::python::roles::is_startup_hook_name(&name),
                    spawns: Vec::new(),
                    name: name.clone(),
                    line: i + 1,
                    exempt,
                    class_bases,
                    uses: Vec::new(),
                    top_level,
                    bare: Vec::new(),
                    dotted: Vec::new(),
                });
                def_uses.push(LineWords::default());
                def_spawns.push(Vec::new());
            }
            uses.code(&rest[name.len()..]);
            stack.push((indent, None, index));
            decorated = false;
            event_hook = false;
            continue;
        }
        if let Some(rest) = class {
            // Bases over several lines (`class Agent(\n    Base,\n):`).
            let mut header = rest.to_string();
            let mut depth = balance(rest);
            let mut extra = 0;
            while depth > 0 && extra < MAX_HEADER_LINES {
                let Some((_, more)) = lines.next() else { break };
                header.push(' ');
                header.push_str(more.trim());
                depth += balance(more);
                extra += 1;
            }
            let rest = header.as_str();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let bases: Vec<String> = class_bases(&rest[name.len()..])
                .into_iter()
                .filter(|b| b != "object")
                .collect();
            uses.code(rest);
            if !name.is_empty() {
                facts.classes.push(name);
            }
            stack.push((indent, Some(bases), None));
            decorated = false;
            event_hook = false;
            continue;
        }
        decorated = false;
        event_hook = false;
        // A line of a function's body that could decide access: neither it nor the functions around it are
        // passive (a nested function's line counts for its parents too).
        // Docstrings and other triple-quoted text are prose, not code.
        let quotes = t.matches("\"\"\"").count() + t.matches("'''").count();
        let prose = in_quotes || quotes > 0;
        // A triple-quoted string inside code (`x = build("""…`), not a docstring or a string standing alone.
        let in_code = !in_quotes
            && quotes > 0
            && !t
                .trim_start_matches(['r', 'b', 'f', 'u', 'R', 'B', 'F', 'U'])
                .starts_with(['"', '\'']);
        if quotes % 2 == 1 {
            in_quotes = !in_quotes;
        }
        // Read only while some function around the line may still be passive (most functions decide something
        // within their first lines; the scan then stops costing anything for the rest of their body).
        let open = stack.iter().any(|(d, _, def)| {
            *d < indent
                && def
                    .and_then(|k| facts.defs.get(k))
                    .is_some_and(|f| f.passive)
        });
        if open && !prose && can_decide(t) {
            for (d, _, def) in &stack {
                if *d < indent
                    && let Some(def) = def.and_then(|k| facts.defs.get_mut(k))
                {
                    def.passive = false;
                }
            }
        }
        // `from m import a, b as c`: only `b` is used (renamed here, the file then uses `c`); the names an import
        // brings in are used where the file calls them.
        if t.starts_with("from ") && t.contains(" import") {
            let mut all = t.to_string();
            let mut extra = 0;
            while extra < 200
                && ((all.contains('(') && !all.contains(')')) || all.trim_end().ends_with('\\'))
            {
                match lines.next() {
                    Some((_, more)) => {
                        all.push(' ');
                        all.push_str(more.split('#').next().unwrap_or(""));
                    }
                    None => break,
                }
                extra += 1;
            }
            renamed_imports(&all, uses, &mut facts.aliases);
            continue;
        }
        if t.starts_with("import ") {
            renamed_imports(t, uses, &mut facts.aliases);
            continue;
        }
        if !prose
            && spawns_work(t)
            && let Some(v) = pending.0.and_then(|k| def_spawns.get_mut(k))
        {
            v.extend(words(t).map(hash));
        }
        if in_code && quotes % 2 == 0 {
            // `x = call("""text""", other_fn)`: the string closes on its line; the line is code.
            uses.code(t);
        } else if in_code {
            // `prompt = build_prompt("""…`: the code before the triple quote is code, the rest is text.
            let at = [t.find("\"\"\""), t.find("'''")]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(t.len());
            uses.code(&t[..at]);
            uses.prose(&t[at..]);
        } else if prose {
            uses.prose(t);
        } else {
            uses.code(t);
        }
    }
    let (owner, words_of_line) = pending;
    match owner.and_then(|k| def_uses.get_mut(k)) {
        Some(v) => v.extend(words_of_line),
        None => uses.extend(words_of_line),
    }
    uses.sort();
    facts.uses = uses.all;
    facts.bare = uses.bare;
    facts.dotted = uses.dotted;
    for ((d, mut v), mut spawned) in facts.defs.iter_mut().zip(def_uses).zip(def_spawns) {
        v.sort();
        d.uses = v.all;
        d.bare = v.bare;
        d.dotted = v.dotted;
        spawned.sort_unstable();
        spawned.dedup();
        d.spawns = spawned;
    }
    facts.aliases.sort_unstable();
    facts.aliases.dedup();
    facts
}

/// Does a line of code hand work over to run on its own (a task, a thread, a scheduled job) rather than run it?
fn spawns_work(t: &str) -> bool {
    [
        "task(",
        "ensure_future(",
        "start_soon(",
        "Thread(",
        "Process(",
        "add_job(",
        "spawn(",
        "run_forever(",
    ]
    .iter()
    .any(|m| t.contains(m))
}

/// Lines a decorator's arguments or a class's bases may span.
const MAX_HEADER_LINES: usize = 50;

/// Opening minus closing parentheses of a line (strings and comments are not told apart: an estimate).
fn balance(line: &str) -> i32 {
    line.chars().fold(0, |n, c| match c {
        '(' | '[' => n + 1,
        ')' | ']' => n - 1,
        _ => n,
    })
}

/// `a as b` in an import: `a` is used (the file then uses `b`, which names nothing defined), and `b` is an alias.
fn renamed_imports(line: &str, uses: &mut LineWords, aliases: &mut Vec<u64>) {
    let flat = line.replace(['(', ')', ',', '\\'], " ");
    let parts: Vec<&str> = flat.split_whitespace().collect();
    for w in parts.windows(3) {
        if w[1] == "as" {
            let original = w[0].rsplit('.').next().unwrap_or(w[0]);
            uses.all.push(hash(original));
            uses.bare.push(hash(original));
            aliases.push(hash(w[2]));
        }
    }
}

/// What [`unused_functions`] found, by path: `(name, 1-based line of the def)`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unused {
    /// Functions nothing in the service calls.
    pub dead: HashMap<String, Vec<(String, usize)>>,
    /// Functions only start-up or shutdown hooks call (directly or through functions only they call): they run
    /// before the server takes traffic or after it stops, never while it serves a request.
    pub startup_only: HashMap<String, Vec<(String, usize)>>,
}

/// The functions of each file that nothing else uses, and those only start-up uses, by path: `(name, line)`.
/// `counted` says which files' uses count (the service's code, not tests or scripts); `other_texts` are more texts
/// whose words count as uses (deployment files, configuration naming a function).
pub fn unused_functions<'a>(
    files: impl IntoIterator<Item = (&'a String, &'a ModuleFacts)> + Clone,
    counted: impl Fn(&str) -> bool,
    other_texts: &[(String, String)],
) -> Unused {
    let mut classes: HashSet<&str> = HashSet::new();
    for (_, facts) in files.clone() {
        classes.extend(facts.names.classes.iter().map(String::as_str));
    }
    // Never called unused: exempt, or a method a library's base class may call.
    let kept_anyway = |d: &DefFact| {
        d.exempt
            || d.class_bases
                .as_ref()
                .is_some_and(|bases| bases.iter().any(|b| !classes.contains(b.as_str())))
    };
    let modules: Vec<(&String, &ModuleFacts)> =
        files.into_iter().filter(|(p, _)| counted(p)).collect();
    let files: Vec<(&String, &NameFacts)> = modules.iter().map(|(p, m)| (*p, &m.names)).collect();
    if files.iter().any(|(_, f)| f.uses_everything) {
        return Unused::default();
    }
    // A module's names: its own (`api` for `app/api.py`, `core` for `app/core/__init__.py`) and its package's.
    // A module at the top of the tree has no package: `u64::MAX` names nothing (a missing base is `0`).
    let names_of = |path: &str| -> (u64, u64) {
        let named = |n: Option<&str>| n.filter(|n| !n.is_empty()).map_or(u64::MAX, hash);
        let mut parts = path.trim_end_matches(".py").rsplit('/');
        let stem = parts.next();
        let parent = parts.next();
        if stem == Some("__init__") {
            (named(parent), named(parts.next()))
        } else {
            (named(stem), named(parent))
        }
    };
    let module_names: Vec<(u64, u64)> = files.iter().map(|(p, _)| names_of(p)).collect();
    // Per file: the names it imports from a module or package (by the module's last name part; empty for
    // `from . import`), and the modules it star-imports.
    let imported: Vec<HashMap<u64, Vec<u64>>> = modules
        .iter()
        .map(|(_, f)| {
            let mut m: HashMap<u64, Vec<u64>> = HashMap::new();
            for (_, dotted, names) in &f.imports {
                let module = hash(dotted.rsplit('.').next().unwrap_or(""));
                for n in names {
                    m.entry(hash(n)).or_default().push(module);
                }
            }
            m
        })
        .collect();
    // Every word of each file (code and prose), to ask whether a file names a module at all.
    let mentions: Vec<HashSet<u64>> = files
        .iter()
        .map(|(_, f)| {
            f.uses
                .iter()
                .chain(f.defs.iter().flat_map(|d| d.uses.iter()))
                .copied()
                .collect()
        })
        .collect();
    let names_module = |from: usize, to: usize| {
        let (stem, parent) = module_names[to];
        mentions[from].contains(&stem) || mentions[from].contains(&parent)
    };
    let aliases: Vec<HashSet<u64>> = files
        .iter()
        .map(|(_, f)| f.aliases.iter().copied().collect())
        .collect();
    let star = hash("*");
    let empty = hash("");
    // Can code of file `from` reach module `to`'s name `name` written bare?
    let sees_bare = |from: usize, to: usize, name: u64| -> bool {
        // A file reading attributes by name (`getattr(api, "get")`) may reach the name of a module it names.
        if from == to || (files[from].1.reads_attrs && names_module(from, to)) {
            return true;
        }
        let (stem, parent) = module_names[to];
        let via = |n: u64| {
            imported[from]
                .get(&n)
                .is_some_and(|mods| mods.iter().any(|&m| m == stem || m == parent || m == empty))
        };
        via(name) || via(star)
    };
    // … written after a dot on `base`?
    // (In its own file a name after a dot is another object's: `requests.get` inside `def get`.)
    let sees_dotted = |from: usize, to: usize, base: u64| -> bool {
        let (stem, parent) = module_names[to];
        base == stem
            || base == parent
            || aliases[from].contains(&base)
            || files[from].1.loads_unknown_modules
            || (files[from].1.loads_modules && names_module(from, to))
    };
    // Every function, by name: `(file, index in its defs)`.
    let mut by_name: HashMap<u64, Vec<(usize, usize)>> = HashMap::new();
    for (i, (_, facts)) in files.iter().enumerate() {
        for (k, d) in facts.defs.iter().enumerate() {
            if !kept_anyway(d) {
                by_name.entry(hash(&d.name)).or_default().push((i, k));
            }
        }
    }
    // Words of deployment files and configuration count for a method of that name, and for a module's function
    // the text names with its module (`uvicorn app.main:create_app`) or imports from it (`python -c 'from
    // app.tasks import cleanup; cleanup()'`).
    let mut from_texts: Vec<(usize, usize)> = Vec::new();
    for (_, text) in other_texts {
        let mut w = LineWords::default();
        let mut imports: HashMap<u64, Vec<u64>> = HashMap::new();
        for line in text.lines() {
            w.code(line);
            for (at, _) in line.match_indices("from ") {
                let stmt = line[at..].split([';', '\'', '"']).next().unwrap_or("");
                for (_, dotted, names) in import_statement(stmt, &mut std::iter::empty()) {
                    let module = hash(dotted.rsplit('.').next().unwrap_or(""));
                    for n in names {
                        imports.entry(hash(&n)).or_default().push(module);
                    }
                }
            }
        }
        let all: HashSet<u64> = w.all.iter().copied().collect();
        for h in &all {
            for &(i, k) in by_name.get(h).into_iter().flatten() {
                let (stem, parent) = module_names[i];
                let reached = !files[i].1.defs[k].top_level
                    || w.dotted
                        .iter()
                        .any(|&(b, n)| n == *h && (b == stem || b == parent))
                    || imports
                        .get(h)
                        .is_some_and(|mods| mods.iter().any(|&m| m == stem || m == parent));
                if reached {
                    from_texts.push((i, k));
                }
            }
        }
    }
    // The functions used, to a fixed point: the uses of one stretch of code of file `i` (module level, or a used
    // function's body) settle the functions they reach; newly used functions are queued, their bodies read in
    // turn. `blind` (the functions used when start-up is not blinded): start-up hooks count as used, but what their
    // bodies name does not, except what a used function spawns (what is left is what the service runs once it
    // takes traffic).
    let used_functions = |blind: Option<&HashSet<(usize, usize)>>| -> HashSet<(usize, usize)> {
        let mut used: HashSet<(usize, usize)> = HashSet::new();
        let mut queue: Vec<(usize, usize)> = Vec::new();
        let mark = |(j, k): (usize, usize),
                    used: &mut HashSet<(usize, usize)>,
                    queue: &mut Vec<(usize, usize)>| {
            if used.insert((j, k)) {
                queue.push((j, k));
            }
        };
        for (i, (_, facts)) in files.iter().enumerate() {
            for (k, d) in facts.defs.iter().enumerate() {
                if kept_anyway(d) {
                    mark((i, k), &mut used, &mut queue);
                }
            }
        }
        for &f in &from_texts {
            mark(f, &mut used, &mut queue);
        }
        let settle = |i: usize,
                      all: &[u64],
                      bare: &[u64],
                      dotted: &[(u64, u64)],
                      used: &mut HashSet<(usize, usize)>,
                      queue: &mut Vec<(usize, usize)>| {
            for h in all {
                for &(j, k) in by_name.get(h).into_iter().flatten() {
                    if !files[j].1.defs[k].top_level {
                        mark((j, k), used, queue);
                    }
                }
            }
            for &h in bare {
                for &(j, k) in by_name.get(&h).into_iter().flatten() {
                    if files[j].1.defs[k].top_level && sees_bare(i, j, h) {
                        mark((j, k), used, queue);
                    }
                }
            }
            for &(base, h) in dotted {
                for &(j, k) in by_name.get(&h).into_iter().flatten() {
                    if files[j].1.defs[k].top_level && sees_dotted(i, j, base) {
                        mark((j, k), used, queue);
                    }
                }
            }
        };
        for (i, (_, facts)) in files.iter().enumerate() {
            settle(
                i,
                &facts.uses,
                &facts.bare,
                &facts.dotted,
                &mut used,
                &mut queue,
            );
        }
        // Blind to what start-up runs, not to what any used function spawns: a task started at start-up (or by
        // anything else) serves along with the requests.
        for &(i, k) in blind.into_iter().flatten() {
            let d = &files[i].1.defs[k];
            settle(i, &d.spawns, &d.spawns, &[], &mut used, &mut queue);
        }
        while let Some((i, k)) = queue.pop() {
            let d = &files[i].1.defs[k];
            if blind.is_none() || !d.startup {
                settle(i, &d.uses, &d.bare, &d.dotted, &mut used, &mut queue);
            }
        }
        used
    };
    let used = used_functions(None);
    let any_hook = files.iter().any(|(_, f)| f.defs.iter().any(|d| d.startup));
    let running = if any_hook {
        used_functions(Some(&used))
    } else {
        used.clone()
    };
    let mut out = Unused::default();
    for (i, (path, facts)) in files.iter().enumerate() {
        for (k, d) in facts.defs.iter().enumerate() {
            let entry = (d.name.clone(), d.line);
            if !used.contains(&(i, k)) {
                out.dead.entry((*path).clone()).or_default().push(entry);
            } else if !running.contains(&(i, k)) && !d.startup {
                out.startup_only
                    .entry((*path).clone())
                    .or_default()
                    .push(entry);
            }
        }
    }
    out
}

/// The byte range of the block that starts at 1-based `line` (a `def` and its indented body; comment and blank
/// lines do not end it). `None` when the line does not exist.
pub fn block_at_line(text: &str, line: usize) -> Option<std::ops::Range<usize>> {
    let mut offset = 0;
    let mut start = None;
    let mut indent = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        let here = offset;
        offset += l.len();
        if i + 1 < line {
            continue;
        }
        let t = l.trim_start();
        if i + 1 == line {
            start = Some(here);
            indent = l.len() - t.len();
            continue;
        }
        if t.trim().is_empty() || t.starts_with('#') {
            continue;
        }
        if l.len() - t.len() <= indent && !t.starts_with(')') {
            return start.map(|s| s..here);
        }
    }
    start.map(|s| s..text.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A module's facts as the repository model reads them: its imports and its names.
    fn module(text: &str) -> ModuleFacts {
        ModuleFacts {
            names: name_facts(text),
            ..crate::analysis::semantic::reach::module_facts(text)
        }
    }

    fn run(files: &[(&str, &str)]) -> HashMap<String, Vec<(String, usize)>> {
        let facts: BTreeMap<String, ModuleFacts> = files
            .iter()
            .map(|(p, t)| (p.to_string(), module(t)))
            .collect();
        unused_functions(
            facts.iter(),
            |p| !crate::analysis::semantic::paths::is_test_path(p),
            &[],
        )
        .dead
    }

    #[test]
    fn passive_functions_decide_nothing() {
        let f = name_facts(
            "class S:\n    def sign(self, space_id, user_id) -> str:\n        \"\"\"Include in state; raises if bad.\n        if the key is missing\"\"\"\n        payload = {\"s\": space_id, \"u\": user_id}\n        return encode(payload)\n\n    def gate(self, space_id, user_id):\n        if user_id not in members(space_id):\n            raise PermissionError\n\n    def fetch(self, space_id):\n        return self.session.get(Space, space_id)\n\n    def check_it(self, x):\n        return x\n\ndef outer(a):\n    def inner(b):\n        return b == a\n    return inner\n",
        );
        let passive: Vec<(&str, bool)> = f
            .defs
            .iter()
            .map(|d| (d.name.as_str(), d.passive))
            .collect();
        assert_eq!(
            passive,
            [
                ("sign", true),
                ("gate", false),
                ("fetch", false),
                ("check_it", false),
                ("outer", false),
                ("inner", false),
            ]
        );
    }

    #[test]
    fn functions_nothing_calls() {
        let helper = "\
import requests


class GithubHelper:
    def check_visibility(self, owner):
        return requests.get(f\"https://api.github.com/repos/{owner}\")

    def used(self):
        return 1

    def __repr__(self):
        return 'x'


def download_tool(url):
    return requests.get(url)


def used_as_callback(x):
    return x


@router.get(\"/x\")
def route():
    return 2


@router.patch(
    \"/y\",
    response_model=Out,
)
def multi_line_route():
    return 3


class Tool(
    BaseTool,
):
    def _arun(self, q):
        return requests.get(q)


class Tool(BaseTool):
    def _run(self, q):
        return requests.get(q)
";
        let user = "\
from app.helper import GithubHelper, download_tool, used_as_callback
from app.other import thing as renamed

# download_tool(url, folder)
GithubHelper().used()
run(callback=used_as_callback)
renamed()
";
        let test = "from app.helper import GithubHelper\nGithubHelper().check_visibility('a')\n";
        let dead = run(&[
            ("app/helper.py", helper),
            ("app/main.py", user),
            ("tests/test_helper.py", test),
        ]);
        let names: Vec<&str> = dead["app/helper.py"]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        // Only a test calls it; only a comment calls it.
        assert_eq!(names, vec!["check_visibility", "download_tool"]);
        assert_eq!(dead["app/helper.py"][0].1, 5);
        assert!(!dead.contains_key("app/main.py"));
    }

    #[test]
    fn a_function_only_unused_functions_call_is_unused_too() {
        let history = "\
import time


def get_history_by_date_range(channel):
    return get_conversation_history(channel)


def get_conversation_history(channel):
    time.sleep(1)
    return format_message(channel)


def format_message(m):
    return m


def walk(node):
    return [walk(c) for c in node]


def live_entry():
    def wrap(x):
        return x

    if shared_helper:
        return wrap(shared_helper())


def shared_helper():
    return 1


class Reader:
    LIMIT = class_level_helper()

    def read(self):
        return method_helper()


def class_level_helper():
    return 2


def method_helper():
    return 3
";
        // The only caller of the chain's head is in a module nothing imports (not counted).
        let indexer =
            "from app.history import get_history_by_date_range\nget_history_by_date_range('c')\n";
        let main = "from app.history import live_entry, Reader\nlive_entry()\nReader().read()\n";
        let facts: BTreeMap<String, ModuleFacts> = [
            ("app/history.py", history),
            ("app/indexer.py", indexer),
            ("app/main.py", main),
        ]
        .iter()
        .map(|(p, t)| (p.to_string(), module(t)))
        .collect();
        let dead = unused_functions(facts.iter(), |p| p != "app/indexer.py", &[]).dead;
        let names: Vec<&str> = dead["app/history.py"]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        // The whole chain (each named only by the one before it), and a function only its own body names.
        assert_eq!(
            names,
            vec![
                "get_history_by_date_range",
                "get_conversation_history",
                "format_message",
                "walk"
            ]
        );
        // Once the indexer counts, the chain is used all the way down.
        let dead = unused_functions(facts.iter(), |_| true, &[]).dead;
        let names: Vec<&str> = dead["app/history.py"]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, vec!["walk"]);
    }

    #[test]
    fn functions_only_start_up_calls() {
        let main = "\
from fastapi import FastAPI
from app.db import init_db, seed
from app.tasks import listener, register_tasks

@asynccontextmanager
async def lifespan(app):
    await init_db()
    register_tasks()
    yield

app = FastAPI(lifespan=lifespan)

@app.get('/reseed')
async def reseed():
    seed()
";
        let db = "\
def init_db():
    create_tables()
    seed()

def create_tables():
    open('schema.sql').read()

def seed():
    open('seed.json').read()
";
        let tasks = "\
import asyncio

def register_tasks():
    asyncio.create_task(listener())

async def listener():
    poll_forever()

def poll_forever():
    pass
";
        let facts: BTreeMap<String, ModuleFacts> = [
            ("app/main.py".to_string(), module(main)),
            ("app/db.py".to_string(), module(db)),
            ("app/tasks.py".to_string(), module(tasks)),
        ]
        .into();
        let found = unused_functions(facts.iter(), |_| true, &[]);
        let names = |path: &str| -> Vec<&str> {
            found
                .startup_only
                .get(path)
                .into_iter()
                .flatten()
                .map(|(n, _)| n.as_str())
                .collect()
        };
        // Only start-up reaches `init_db` and `create_tables`; a route calls `seed` too.
        assert_eq!(names("app/db.py"), ["init_db", "create_tables"]);
        // `register_tasks` runs once, but the task it spawns serves along with the requests.
        assert_eq!(names("app/tasks.py"), ["register_tasks"]);
        assert!(names("app/main.py").is_empty());
        assert!(found.dead.is_empty(), "{:?}", found.dead);
    }

    #[test]
    fn a_name_in_a_string_or_config_counts_as_used() {
        let tasks = "def nightly_cleanup():\n    pass\n";
        let beat = "SCHEDULE = {\"cleanup\": {\"task\": \"app.tasks.nightly_cleanup\"}}\n";
        assert!(run(&[("app/tasks.py", tasks), ("app/beat.py", beat)]).is_empty());
        let facts: BTreeMap<String, ModuleFacts> =
            [("app/tasks.py".to_string(), module(tasks))].into();
        let compose = [(
            "docker-compose.yml".to_string(),
            "command: python -c 'from app.tasks import nightly_cleanup; nightly_cleanup()'"
                .to_string(),
        )];
        assert!(
            unused_functions(facts.iter(), |_| true, &compose)
                .dead
                .is_empty()
        );
    }

    #[test]
    fn a_star_import_reaches_every_name_of_its_module() {
        let api = "import requests\n\n\ndef get(url, params):\n    return requests.get(url, params=params)\n";
        let star = "from app.cli.api import *\nget('u', {})\n";
        assert!(run(&[("app/cli/api.py", api), ("app/cli/main.py", star)]).is_empty());
        // A star import of another module does not bring the name in.
        let other = star.replace("app.cli.api", "app.other");
        let dead = run(&[("app/cli/api.py", api), ("app/cli/main.py", &other)]);
        assert_eq!(dead["app/cli/api.py"], vec![("get".to_string(), 4)]);
    }

    #[test]
    fn module_functions_count_only_where_their_module_is_reached() {
        // A CLI's client of the server's own API, in a package the server imports for something else.
        let api = "\
import requests


def get(url, headers):
    return requests.get(url, headers=headers)


def list_all(url):
    return requests.get(url + '/list')


def upsert(url, body):
    return requests.post(url, json=body)


class Client:
    def get(self, url):
        return requests.get(url)
";
        let helpers =
            "from app.cli import api\n\n\ndef list_things(url):\n    return api.list_all(url)\n";
        let server = "\
\"\"\"The server: it may get or list_all anything (prose).\"\"\"
from app.cli import parse  # get


def handler(request):
    value = request.query.get('x')  # upsert later
    return parse(value), Client().get
";
        let dead = run(&[
            ("app/cli/api.py", api),
            ("app/cli/helpers.py", helpers),
            ("app/cli/parse.py", "def parse(v):\n    return v\n"),
            ("app/server.py", server),
        ]);
        let names: Vec<&str> = dead["app/cli/api.py"]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        // `get` is no `dict.get`, nor a word of a docstring or comment; `Client.get` is a method (any `.get`).
        assert_eq!(names, vec!["get", "list_all", "upsert"]);
        assert_eq!(dead["app/cli/helpers.py"][0].0, "list_things");

        // Reached: through the module's name, an alias, an imported name, the package re-exporting it, or a
        // file that imports modules by run-time names.
        for user in [
            "from app.cli import api\napi.get('u', {})\n",
            "import app.cli.api as capi\ncapi.get('u', {})\n",
            "from app.cli.api import get\nget('u', {})\n",
            "from app.cli.api import get as fetch\nfetch('u', {})\n",
            "from app import cli\ncli.get('u', {})\n",
            "import importlib\nmod = importlib.import_module(name)\nmod.get('u', {})\n",
            "import uvicorn\nuvicorn.run('app.cli.api:get')\n",
        ] {
            let dead = run(&[("app/cli/api.py", api), ("app/server.py", user)]);
            let names: Vec<&str> = dead
                .get("app/cli/api.py")
                .map(|v| v.iter().map(|(n, _)| n.as_str()).collect())
                .unwrap_or_default();
            assert!(!names.contains(&"get"), "{user}: {names:?}");
            assert!(names.contains(&"list_all"), "{user}: {names:?}");
        }
    }

    #[test]
    fn triple_quoted_text_inside_code_and_docstrings() {
        let lib = "def render(x):\n    return x\n\n\ndef sanitize(x):\n    return x\n\n\ndef finish(x):\n    return x\n";
        let user = "\
from app.lib import render, sanitize, finish


@router.get(\"/\")
def handler():
    \"\"\"Calls finish eventually.\"\"\"
    page = render(\"\"\"<p>hi</p>\"\"\", sanitize)
    return page
";
        let dead = run(&[("app/lib.py", lib), ("app/main.py", user)]);
        let names: Vec<&str> = dead["app/lib.py"].iter().map(|(n, _)| n.as_str()).collect();
        // A callback after a closed triple-quoted string is code; a docstring's word is not a call.
        assert_eq!(names, vec!["finish"]);
    }

    #[test]
    fn block_ranges() {
        let text = "class A:\n    def f(self):\n        x = 1\n\n        # c\n        return x\n    def g(self):\n        pass\n";
        let r = block_at_line(text, 2).expect("line 2");
        assert_eq!(
            &text[r],
            "    def f(self):\n        x = 1\n\n        # c\n        return x\n"
        );
        let r = block_at_line(text, 7).expect("line 7");
        assert_eq!(&text[r], "    def g(self):\n        pass\n");
        assert!(block_at_line(text, 99).is_none());
    }
}
