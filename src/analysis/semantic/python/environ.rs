//! Reads of the process environment, by qualified name: the one definition the checks that follow settings
//! (`.env.example` coverage, hard-coded fallbacks for secrets, secrets returned to clients) share.

use super::imports::Imports;
use super::syntax;
use crate::analysis::nodes::PyNode;

/// Is `call` a read of one environment variable that may fall back to a default: `os.getenv(…)` or
/// `os.environ.get(…)`, also written `getenv(…)` / `environ.get(…)` after `from os import getenv, environ`, or
/// through an alias (`import os as _os`, `from os import getenv as env`)?
pub fn is_env_get(call: &PyNode<'_>, imports: &Imports) -> bool {
    call.kind() == "call"
        && syntax::callee(call).is_some_and(|written| {
            matches!(
                imports.resolve(&written).as_str(),
                "os.getenv" | "os.environ.get"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::context::FileContext;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    fn reads(src: &str) -> Vec<bool> {
        let doc = Lang::Python.ast_grep(src);
        let root = doc.root();
        let imports = Imports::of_file(&FileContext::detached(), &root);
        root.dfs()
            .filter(|n| n.kind() == "call")
            .map(|c| is_env_get(&c, &imports))
            .collect()
    }

    #[test]
    fn environment_reads_by_qualified_name() {
        assert_eq!(
            reads("import os\nos.getenv('A')\nos.environ.get('B')\nos.path.join(a)\n"),
            vec![true, true, false]
        );
        assert_eq!(
            reads("from os import getenv as env, environ\nenv('A')\nenviron.get('B')\n"),
            vec![true, true]
        );
        assert_eq!(reads("import os as _os\n_os.getenv('A')\n"), vec![true]);
        // A `getenv` of another module, or one no import binds, is not the process environment.
        assert_eq!(
            reads("from app.config import getenv\ngetenv('A')\nconfig.get('B')\n"),
            vec![false, false]
        );
    }
}
