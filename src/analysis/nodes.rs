//! One walk of a parsed file that indexes its nodes by kind, shared by every detector that runs on the file:
//! the ast-grep rules are dispatched from it, and Rust checks ask it for "every `call`" instead of walking the
//! whole tree again each.

use super::language::Lang;
use ast_grep_core::tree_sitter::StrDoc;
use ast_grep_core::{AstGrep, Node};
use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Deref;
use std::rc::Rc;

/// A node of a parsed file (Python, Dockerfile or YAML: the grammar is the file's).
pub type PyNode<'r> = Node<'r, StrDoc<Lang>>;

/// The nodes of one tree, in document (pre-)order, grouped by kind id; and the per-file analyses that several
/// detectors share (see [`NodeIndex::memo`]).
pub struct NodeIndex<'r> {
    root_id: usize,
    by_kind: Vec<Vec<PyNode<'r>>>,
    memo: RefCell<HashMap<TypeId, Rc<dyn Any>>>,
}

/// Pre-order walk of the named nodes under `root` (itself included) with a cursor: no recursion, constant
/// memory. `Err(row)` of the first node deeper than `max_depth` levels below `root`.
fn walk_named<'t>(
    root: &tree_sitter::Node<'t>,
    max_depth: usize,
    mut visit: impl FnMut(tree_sitter::Node<'t>),
) -> Result<(), usize> {
    let mut cursor = root.walk();
    let mut depth = 0usize;
    loop {
        let node = cursor.node();
        if node.is_named() {
            visit(node);
        }
        if cursor.goto_first_child() {
            depth += 1;
            if depth > max_depth {
                return Err(cursor.node().start_position().row);
            }
            continue;
        }
        loop {
            if depth == 0 {
                return Ok(());
            }
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return Ok(());
            }
            depth -= 1;
        }
    }
}

/// Files larger than this get their per-kind lists sized by a counting walk first.
const PRESIZE_ABOVE_BYTES: usize = 256 * 1024;

impl<'r> NodeIndex<'r> {
    /// Index the whole parsed file in one cursor walk that also measures its depth: `Err(row)` (0-based) of the
    /// first node deeper than `max_depth` levels, for the caller to turn the file away before any detector walks
    /// up such a tree. (Was a depth walk plus the index walk: the walk is what the index costs.)
    pub fn build_within_depth(
        doc: &'r AstGrep<StrDoc<Lang>>,
        max_depth: usize,
    ) -> Result<Self, usize> {
        let root = doc.root();
        let inner = root.get_inner_node();
        let mut by_kind: Vec<Vec<PyNode<'r>>> = Vec::new();
        if root.range().len() > PRESIZE_ABOVE_BYTES {
            let mut counts: Vec<usize> = Vec::new();
            walk_named(&inner, max_depth, |n| {
                let k = usize::from(n.kind_id());
                if counts.len() <= k {
                    counts.resize(k + 1, 0);
                }
                counts[k] += 1;
            })?;
            by_kind = counts.into_iter().map(Vec::with_capacity).collect();
        }
        walk_named(&inner, max_depth, |n| {
            let k = usize::from(n.kind_id());
            if by_kind.len() <= k {
                by_kind.resize_with(k + 1, Vec::new);
            }
            by_kind[k].push(doc.adopt(n));
        })?;
        Ok(NodeIndex {
            root_id: root.node_id(),
            by_kind,
            memo: RefCell::new(HashMap::new()),
        })
    }

    /// The value of type `T` computed for this file: `compute` runs the first time a detector asks for a `T`,
    /// later askers share its result. One type per analysis (a newtype where needed), so two analyses cannot
    /// collide; `compute` may itself ask for other memoised values.
    pub fn memo<T: Any>(&self, compute: impl FnOnce() -> T) -> Rc<T> {
        let key = TypeId::of::<T>();
        if let Some(hit) = self.memo.borrow().get(&key).cloned()
            && let Ok(value) = hit.downcast::<T>()
        {
            return value;
        }
        let value = Rc::new(compute());
        self.memo
            .borrow_mut()
            .insert(key, value.clone() as Rc<dyn Any>);
        value
    }

    /// Is this the index of the tree whose root is `root`?
    pub fn is_of(&self, root: &PyNode<'_>) -> bool {
        self.root_id == root.node_id()
    }

    /// The nodes with this kind id, in document order.
    pub fn of_kind_id(&self, id: u16) -> &[PyNode<'r>] {
        self.by_kind.get(usize::from(id)).map_or(&[], Vec::as_slice)
    }

    /// The nodes of this kind (by name: a grammar may give one name several ids), in document order. None once
    /// the file's analysis time is up: the checks asking then end quickly, and the engine skips the file.
    pub fn of_kind(&self, kind: &str) -> Nodes<'_, 'r> {
        if super::limits::deadline_passed() {
            return Nodes::Borrowed(&[]);
        }
        let mut ids = self
            .by_kind
            .iter()
            .filter(|nodes| nodes.first().is_some_and(|n| n.kind() == kind));
        let Some(first) = ids.next() else {
            return Nodes::Borrowed(&[]);
        };
        let rest: Vec<&Vec<PyNode<'r>>> = ids.collect();
        if rest.is_empty() {
            return Nodes::Borrowed(first.as_slice());
        }
        let mut all: Vec<PyNode<'r>> = first.clone();
        for nodes in rest {
            all.extend(nodes.iter().cloned());
        }
        // Pre-order: by start, the outer (longer) node first.
        all.sort_by_key(|n| (n.range().start, std::cmp::Reverse(n.range().end)));
        Nodes::Owned(all)
    }
}

/// Nodes of one kind: borrowed from an index, or collected by a walk.
pub enum Nodes<'i, 'r> {
    Borrowed(&'i [PyNode<'r>]),
    Owned(Vec<PyNode<'r>>),
}

impl<'r> Deref for Nodes<'_, 'r> {
    type Target = [PyNode<'r>];
    fn deref(&self) -> &Self::Target {
        match self {
            Nodes::Borrowed(s) => s,
            Nodes::Owned(v) => v,
        }
    }
}

impl<'i, 'r> IntoIterator for &'i Nodes<'_, 'r> {
    type Item = &'i PyNode<'r>;
    type IntoIter = std::slice::Iter<'i, PyNode<'r>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    #[test]
    fn index_lists_the_same_nodes_in_the_same_order_as_a_walk() {
        let src = "import time\n\nasync def f(x):\n    g(h(x))\n    def inner():\n        k()\n    return [m(i) for i in x]\n";
        let doc = Lang::Python.ast_grep(src);
        let root = doc.root();
        let Ok(index) = NodeIndex::build_within_depth(&doc, 100) else {
            panic!("not deeper than 100 levels")
        };
        assert!(index.is_of(&root));
        for kind in [
            "call",
            "function_definition",
            "identifier",
            "import_statement",
        ] {
            let walked: Vec<_> = root
                .dfs()
                .filter(|n| n.kind() == kind)
                .map(|n| n.range())
                .collect();
            let indexed: Vec<_> = index.of_kind(kind).iter().map(|n| n.range()).collect();
            assert!(!walked.is_empty(), "{kind}");
            assert_eq!(walked, indexed, "{kind}");
        }
        assert_eq!(index.of_kind("call").len(), 4);
        assert!(index.of_kind("no_such_kind").is_empty());
        let other = Lang::Python.ast_grep("x = 1\n");
        assert!(!index.is_of(&other.root()));
    }

    #[test]
    fn trees_deeper_than_the_limit_are_refused_with_their_row() {
        // `a.b.c…` nests one level per link without a bracket.
        let src = format!("x = 1\ny = a{}\n", ".b".repeat(300));
        let doc = Lang::Python.ast_grep(&src);
        assert_eq!(NodeIndex::build_within_depth(&doc, 100).err(), Some(1));
        assert!(NodeIndex::build_within_depth(&doc, 1000).is_ok());
    }

    #[test]
    fn memo_computes_once_per_type() {
        let doc = Lang::Python.ast_grep("x = 1\n");
        let Ok(index) = NodeIndex::build_within_depth(&doc, 100) else {
            panic!("not deeper than 100 levels")
        };
        let runs = std::cell::Cell::new(0);
        let first = index.memo(|| {
            runs.set(runs.get() + 1);
            vec![1u32, 2]
        });
        let second = index.memo(|| {
            runs.set(runs.get() + 1);
            vec![3u32]
        });
        assert_eq!(runs.get(), 1);
        assert_eq!(*second, vec![1, 2]);
        assert!(Rc::ptr_eq(&first, &second));
        // Another type is another analysis; nested asks work.
        let other = index.memo(|| index.memo(|| vec![9u32]).len() as u64 + 40);
        assert_eq!(*other, 42);
    }
}
