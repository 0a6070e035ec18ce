//! Detectors that need more than a pattern: Rust code over the parsed tree, referenced from a rule file by
//! `check: <id>`.

use super::language::Lang;
use ast_grep_core::Node;
use ast_grep_core::tree_sitter::StrDoc;
use std::ops::Range;

mod sync_session;

/// A node of a parsed Python file.
pub type PyNode<'r> = Node<'r, StrDoc<Lang>>;

/// A place a check found, by byte range, with an optional message replacing the detector's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckMatch {
    pub range: Range<usize>,
    pub message: Option<String>,
}

/// A detector written in Rust.
pub trait Check: Sync + Send {
    /// The id rule files use in `check:`.
    fn id(&self) -> &'static str;
    /// Literal tokens one of which a file must contain for the check to find anything (empty: always run).
    fn tokens(&self) -> &'static [&'static str];
    /// Find matches in a parsed file.
    fn run(&self, root: &PyNode<'_>, out: &mut Vec<CheckMatch>);
}

static CHECKS: &[&dyn Check] = &[&sync_session::SyncSessionInAsync];

/// The check with this id.
pub fn lookup(id: &str) -> Option<&'static dyn Check> {
    CHECKS.iter().copied().find(|c| c.id() == id)
}

/// Every known check id.
pub fn ids() -> Vec<&'static str> {
    CHECKS.iter().map(|c| c.id()).collect()
}

/// True for `async def` function definitions.
pub fn is_async_def(node: &PyNode<'_>) -> bool {
    node.kind() == "function_definition" && node.child(0).is_some_and(|c| c.kind() == "async")
}

/// The nearest enclosing function (`def`, `async def` or `lambda`) of a node, not counting the node itself.
pub fn enclosing_function<'r>(node: &PyNode<'r>) -> Option<PyNode<'r>> {
    node.ancestors()
        .find(|a| matches!(a.kind().as_ref(), "function_definition" | "lambda"))
}

/// Is the node's code run on the event loop, i.e. is its nearest enclosing function an `async def`?
pub fn in_async_context(node: &PyNode<'_>) -> bool {
    enclosing_function(node).is_some_and(|f| is_async_def(&f))
}
