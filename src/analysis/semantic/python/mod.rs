//! Facts about Python code, read by the Python checks: syntax helpers, imports and alias resolution, scopes,
//! function roles, persistence (sessions, queries, counter writes, sync drivers), module state and message text.
//! Nothing here imports a check.

pub mod drivers;
pub mod environ;
pub mod imports;
pub mod persistence;
pub mod roles;
pub mod scopes;
pub mod state;
pub mod syntax;
pub mod text;

pub use roles::*;
pub use scopes::*;
pub use syntax::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use crate::analysis::nodes::PyNode;
    use ast_grep_core::tree_sitter::LanguageExt;

    fn first_call<'r>(root: &PyNode<'r>) -> PyNode<'r> {
        match root.dfs().find(|n| n.kind() == "call") {
            Some(c) => c,
            None => panic!("no call in the snippet"),
        }
    }

    #[test]
    fn call_helpers() {
        let doc = Lang::Python.ast_grep("requests.get(url, timeout=None, **extra)\n");
        let root = doc.root();
        let call = first_call(&root);
        assert_eq!(callee(&call).as_deref(), Some("requests.get"));
        assert_eq!(
            keyword_arg(&call, "timeout")
                .map(|v| v.text().to_string())
                .as_deref(),
            Some("None")
        );
        assert!(keyword_arg(&call, "verify").is_none());
        assert!(has_kwargs_splat(&call));
        assert!(is_module_level(&call));
        assert!(!in_main_guard(&call));
    }

    #[test]
    fn main_guard_blocks_by_text() {
        let text = "import x\n\ndef f():\n    if __name__ == '__main__':\n        pass\n\nif __name__ == \"__main__\":  # demo\n    llm = ChatOpenAI()\n\n    # still the block\n    llm.invoke('hi')\nx = 1\nif __name__=='__main__':\n    run()\n";
        let ranges = scopes::main_guard_ranges(text);
        let blocks: Vec<&str> = ranges.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(
            blocks,
            [
                "if __name__ == \"__main__\":  # demo\n    llm = ChatOpenAI()\n\n    # still the block\n    llm.invoke('hi')\n",
                "if __name__=='__main__':\n    run()\n",
            ]
        );
        assert!(scopes::main_guard_ranges("def main():\n    pass\n").is_empty());
    }

    #[test]
    fn scope_helpers() {
        let src = "async def a():\n    f()\n    def b():\n        g()\n    h(lambda: k())\nif __name__ == '__main__':\n    m()\n";
        let doc = Lang::Python.ast_grep(src);
        let root = doc.root();
        let call = |name: &str| match root
            .dfs()
            .find(|n| n.kind() == "call" && callee(n).as_deref() == Some(name))
        {
            Some(c) => c,
            None => panic!("no call {name}"),
        };
        assert!(in_async_context(&call("f")));
        assert!(
            !in_async_context(&call("g")),
            "nested def is not the coroutine"
        );
        assert!(
            !in_async_context(&call("k")),
            "lambda runs wherever it is handed"
        );
        assert!(in_async_context(&call("h")));
        assert!(in_main_guard(&call("m")));
        assert!(!is_module_level(&call("f")));
        assert_eq!(
            enclosing_function(&call("g"))
                .and_then(|f| function_name(&f))
                .as_deref(),
            Some("b")
        );
    }
}
