//! The example of README's "Writing a Rust check", compiled and tested here (not registered: it exists so that
//! the README's code cannot rot). The test below also checks that the README shows exactly this code.

// README-BEGIN
use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::roles::is_route_handler;
use crate::analysis::semantic::python::scopes::{OwnNodes, own_nodes};
use crate::analysis::semantic::python::syntax::{dotted, has_error};

/// `time.sleep(…)`, under any import alias, in the body of a FastAPI route handler.
pub struct SleepInRoute;

impl Check for SleepInRoute {
    fn id(&self) -> &'static str {
        "example-sleep-in-route"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["sleep"] // files without this text are never parsed for this check
    }
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let imports = ctx.imports(root); // memoised: read once per file
        for func in ctx.of_kind(root, "function_definition").iter() {
            if has_error(func) || !is_route_handler(func) {
                continue;
            }
            for call in own_nodes(func, OwnNodes::BodyNamed) {
                if call.kind() != "call" {
                    continue;
                }
                let name = call.field("function").and_then(|f| dotted(&f));
                if name.is_some_and(|n| imports.resolve(&n) == "time.sleep") {
                    out.push(CheckMatch {
                        range: call.range(),
                        message: None, // None: the rule file's message
                        fix: None,
                    });
                }
            }
        }
    }
}
// README-END

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    #[test]
    fn finds_aliased_sleep_in_routes_only() {
        let src = "import time as t\nfrom fastapi import APIRouter\nrouter = APIRouter()\n\n@router.get('/x')\nasync def x():\n    t.sleep(1)\n\ndef helper():\n    t.sleep(1)\n";
        let doc = Lang::Python.ast_grep(src);
        let mut out = Vec::new();
        SleepInRoute.run(&doc.root(), &FileContext::detached(), &mut out);
        let lines: Vec<usize> = out
            .iter()
            .map(|m| src[..m.range.start].matches('\n').count() + 1)
            .collect();
        assert_eq!(lines, vec![7], "the route's call only, not the helper's");
    }

    #[test]
    fn readme_shows_this_code() {
        let here = include_str!("example_check.rs");
        let code = here
            .split("// README-BEGIN\n")
            .nth(1)
            .and_then(|rest| rest.split("// README-END").next())
            .unwrap_or_default();
        assert!(code.len() > 500, "the example's markers were not found");
        let readme = include_str!("../../../../README.md");
        assert!(
            readme.contains(code),
            "README's \"Writing a Rust check\" example differs from src/analysis/checks/python/example_check.rs"
        );
    }
}
