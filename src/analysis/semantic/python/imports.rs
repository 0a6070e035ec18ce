//! Imports and alias resolution: what each local name of a file was imported as (`import numpy as np`,
//! `from time import sleep`), so a callee can be read by its qualified name.

use crate::analysis::context::FileContext;
use crate::analysis::nodes::PyNode;
use std::collections::HashMap;

/// Local names bound by the file's imports, mapped to what they name: `import numpy as np` gives
/// `np -> numpy`, `from time import sleep` gives `sleep -> time.sleep`. Imports anywhere in the file count
/// (lazy imports inside functions are common).
#[derive(Debug, Default)]
pub struct Imports {
    map: HashMap<String, String>,
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
        let mut map = HashMap::new();
        for node in nodes {
            match node.kind().as_ref() {
                "import_statement" => {
                    for name in node.field_children("name") {
                        if name.kind() == "aliased_import" {
                            if let (Some(n), Some(a)) = (name.field("name"), name.field("alias")) {
                                map.insert(a.text().to_string(), squash(&n.text()));
                            }
                        } else {
                            let full = squash(&name.text());
                            let first = full.split('.').next().unwrap_or("").to_string();
                            map.insert(first.clone(), first);
                        }
                    }
                }
                "import_from_statement" => {
                    let Some(module) = node.field("module_name") else {
                        continue;
                    };
                    let module = squash(&module.text());
                    for name in node.field_children("name") {
                        let (orig, local) = if name.kind() == "aliased_import" {
                            match (name.field("name"), name.field("alias")) {
                                (Some(n), Some(a)) => (squash(&n.text()), a.text().to_string()),
                                _ => continue,
                            }
                        } else {
                            let n = squash(&name.text());
                            (n.clone(), n)
                        };
                        map.insert(local, format!("{module}.{orig}"));
                    }
                }
                _ => {}
            }
        }
        Imports { map }
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
