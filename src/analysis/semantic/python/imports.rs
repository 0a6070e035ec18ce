//! Imports and alias resolution: what each local name of a file was imported as (`import numpy as np`,
//! `from time import sleep`), so a callee can be read by its qualified name.

use crate::analysis::context::FileContext;
use crate::analysis::nodes::PyNode;
use crate::analysis::semantic::python::syntax;
use std::collections::HashMap;

/// One imported binding: `import module` / `import module as bound` (`name` is `None`; unaliased, `bound` is the
/// module's first segment) or `from module import name as bound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub module: String,
    pub name: Option<String>,
    pub bound: String,
    /// Written with `as`.
    pub aliased: bool,
}

impl Binding {
    /// What the local name stands for: `np -> numpy`, `sleep -> time.sleep`; an unaliased `import a.b` binds `a`
    /// to `a`.
    fn target(&self) -> String {
        match &self.name {
            Some(name) => format!("{}.{name}", self.module),
            None if self.aliased => self.module.clone(),
            None => self.bound.clone(),
        }
    }
}

/// The file's imports: each binding in document order, and the local names mapped to what they name
/// (`import numpy as np` gives `np -> numpy`, `from time import sleep` gives `sleep -> time.sleep`; a later
/// import of the same name wins). Imports anywhere in the file count (lazy imports inside functions are common).
#[derive(Debug, Default)]
pub struct Imports {
    bindings: Vec<Binding>,
    map: HashMap<String, String>,
    /// Local names bound with `as`, mapped to the name the file would have written without it.
    aliases: HashMap<String, String>,
}

impl Imports {
    /// The imports of the file whose root is `root` (read from the file's node index when there is one).
    pub fn of_file<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> Self {
        let mut nodes: Vec<PyNode<'r>> = ctx.of_kind(root, "import_statement").to_vec();
        nodes.extend(ctx.of_kind(root, "import_from_statement").iter().cloned());
        nodes.sort_by_key(|n| n.range().start);
        Self::from_nodes(nodes.into_iter())
    }

    fn from_nodes<'r>(nodes: impl Iterator<Item = PyNode<'r>>) -> Self {
        let mut bindings = Vec::new();
        for node in nodes {
            match node.kind().as_ref() {
                "import_statement" => {
                    for name in node.field_children("name") {
                        if name.kind() == "aliased_import" {
                            if let (Some(n), Some(a)) = (name.field("name"), name.field("alias")) {
                                bindings.push(Binding {
                                    module: squash(&n.text()),
                                    name: None,
                                    bound: squash(&a.text()),
                                    aliased: true,
                                });
                            }
                        } else {
                            let module = squash(&name.text());
                            let bound = module.split('.').next().unwrap_or("").to_string();
                            bindings.push(Binding {
                                module,
                                name: None,
                                bound,
                                aliased: false,
                            });
                        }
                    }
                }
                "import_from_statement" => {
                    let Some(module) = node.field("module_name") else {
                        continue;
                    };
                    let module = squash(&module.text());
                    for name in node.field_children("name") {
                        let (orig, local, aliased) = if name.kind() == "aliased_import" {
                            match (name.field("name"), name.field("alias")) {
                                (Some(n), Some(a)) => (squash(&n.text()), squash(&a.text()), true),
                                _ => continue,
                            }
                        } else {
                            let n = squash(&name.text());
                            (n.clone(), n, false)
                        };
                        bindings.push(Binding {
                            module: module.clone(),
                            name: Some(orig),
                            bound: local,
                            aliased,
                        });
                    }
                }
                _ => {}
            }
        }
        let map = bindings
            .iter()
            .map(|b| (b.bound.clone(), b.target()))
            .collect();
        let mut aliases = HashMap::new();
        for b in &bindings {
            if b.aliased {
                let plain = b.name.clone().unwrap_or_else(|| b.module.clone());
                aliases.insert(b.bound.clone(), plain);
            } else {
                // A later import without `as` rebinds the name: it is no longer an alias.
                aliases.remove(&b.bound);
            }
        }
        Imports {
            bindings,
            map,
            aliases,
        }
    }

    /// Every imported binding, in document order.
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// The dotted name `text` with its first segment replaced by what the import bound it to.
    pub fn resolve(&self, text: &str) -> String {
        let (first, rest) = match text.split_once('.') {
            Some((f, r)) => (f, Some(r)),
            None => (text, None),
        };
        match (self.map.get(first), rest) {
            (Some(full), Some(rest)) => format!("{full}.{rest}"),
            (Some(full), None) => full.clone(),
            (None, _) => text.to_string(),
        }
    }

    /// The dotted name `text` as the file would have written it without `as`: after `from requests import get as
    /// fetch`, `fetch` reads `get`; after `import httpx as h`, `h.AsyncClient` reads `httpx.AsyncClient`. Names no
    /// `as` bound are returned as written. Detectors that compare a callee with the names a library documents read
    /// callees through this (or through [`Imports::resolve`] when they compare fully qualified names).
    pub fn unalias(&self, text: &str) -> String {
        let (first, rest) = match text.split_once('.') {
            Some((f, r)) => (f, Some(r)),
            None => (text, None),
        };
        match (self.aliases.get(first), rest) {
            (Some(plain), Some(rest)) => format!("{plain}.{rest}"),
            (Some(plain), None) => plain.clone(),
            (None, _) => text.to_string(),
        }
    }

    /// The callee of a `call` node (`h.get` in `h.get(url)`, whitespace removed) with any import alias undone (see
    /// [`Imports::unalias`]).
    pub fn callee(&self, call: &PyNode<'_>) -> Option<String> {
        syntax::callee(call).map(|c| self.unalias(&c))
    }

    /// The last name of a `call` node's callee (`get` in `requests.get(url)`) with any import alias undone:
    /// `LLM()` after `from langchain_openai import ChatOpenAI as LLM` gives `ChatOpenAI`. `None` when the callee is
    /// not a name or an attribute.
    pub fn callee_tail(&self, call: &PyNode<'_>) -> Option<String> {
        let f = call.field("function")?;
        match f.kind().as_ref() {
            "identifier" => {
                let plain = self.unalias(&f.text());
                Some(plain.rsplit('.').next().unwrap_or(&plain).to_string())
            }
            _ => syntax::callee_tail(call),
        }
    }

    /// The local names bound to something `wanted` accepts (`from asyncio import gather as g` binds `g` to
    /// `asyncio.gather`).
    pub fn names_bound_to(&self, wanted: impl Fn(&str) -> bool) -> Vec<&str> {
        self.map
            .iter()
            .filter(|(_, target)| wanted(target))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Is a local name bound by an import?
    pub fn binds(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Does the file import anything from a module starting with one of these prefixes?
    pub fn uses_any(&self, prefixes: &[&str]) -> bool {
        self.map.values().any(|v| {
            prefixes.iter().any(|p| {
                v == p || v.starts_with(&format!("{p}.")) || v.starts_with(&format!("{p}_"))
            })
        })
    }
}

pub fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    #[test]
    fn bindings_and_resolution_agree() {
        let doc = Lang::Python
            .ast_grep("import a.b\nimport a.c as c\ndef f():\n    from x import y as z, w\n");
        let imports = Imports::of_file(&FileContext::detached(), &doc.root());
        let bound: Vec<(&str, &str, Option<&str>, bool)> = imports
            .bindings()
            .iter()
            .map(|b| {
                (
                    b.bound.as_str(),
                    b.module.as_str(),
                    b.name.as_deref(),
                    b.aliased,
                )
            })
            .collect();
        assert_eq!(
            bound,
            vec![
                ("a", "a.b", None, false),
                ("c", "a.c", None, true),
                ("z", "x", Some("y"), true),
                ("w", "x", Some("w"), false),
            ]
        );
        assert_eq!(imports.resolve("a.b.get"), "a.b.get");
        assert_eq!(imports.resolve("c.run"), "a.c.run");
        assert_eq!(imports.resolve("z"), "x.y");
        assert_eq!(imports.resolve("w.k"), "x.w.k");
        assert_eq!(imports.resolve("other.k"), "other.k");
        assert!(imports.binds("z") && !imports.binds("y"));
    }

    #[test]
    fn aliases_are_undone_and_plain_names_kept() {
        let doc = Lang::Python.ast_grep(
            "import httpx as h\nimport numpy\nfrom requests import get as fetch, post\n\
             from langchain_openai import ChatOpenAI as LLM\nimport a.b as ab\n\
             from m import x as y\nfrom m import y\n\
             fetch(u)\nh.AsyncClient()\nLLM(model=m)\nab()\nself.client.upsert(p)\ny()\n",
        );
        let root = doc.root();
        let imports = Imports::of_file(&FileContext::detached(), &root);
        assert_eq!(imports.unalias("fetch"), "get");
        assert_eq!(imports.unalias("h.get"), "httpx.get");
        assert_eq!(imports.unalias("post"), "post");
        assert_eq!(imports.unalias("numpy.array"), "numpy.array");
        assert_eq!(imports.unalias("ab.c"), "a.b.c");
        // `from m import y` after `from m import x as y`: `y` is no longer an alias.
        assert_eq!(imports.unalias("y"), "y");
        let calls: Vec<(Option<String>, Option<String>)> = root
            .dfs()
            .filter(|n| n.kind() == "call")
            .map(|c| (imports.callee(&c), imports.callee_tail(&c)))
            .collect();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            calls,
            vec![
                (s("get"), s("get")),
                (s("httpx.AsyncClient"), s("AsyncClient")),
                (s("ChatOpenAI"), s("ChatOpenAI")),
                (s("a.b"), s("b")),
                (s("self.client.upsert"), s("upsert")),
                (s("y"), s("y")),
            ]
        );
    }
}
