//! A small YAML model built from tree-sitter-yaml trees, for the Compose, Kubernetes and Helm checks.
//!
//! * Every node keeps its byte range, and every mapping entry the range of its key, so findings point at the
//!   offending key's line.
//! * Multi-document streams (`---`) give one [`YamlDoc`] each; anchors are recorded per document and aliases
//!   (`*defaults`) and merge keys (`<<: *defaults`, `<<: [*a, *b]`) are resolved on look-up.
//! * Parts the parser could not read (ERROR nodes) become [`YKind::Unknown`]: checks report nothing from inside
//!   them and treat a mapping that contains one as incomplete (a key may be hidden there).
//! * Helm templates: every `{{ … }}` action is blanked to filler of the same length before parsing (a line that
//!   holds only actions becomes a comment), so byte offsets stay those of the original text.
//!   [`YamlFile::templated`] tells checks that the file had actions: absence-based checks stay quiet there.

pub mod compose;

use crate::analysis::language::Lang;
use crate::analysis::nodes::PyNode;
use ast_grep_core::tree_sitter::LanguageExt;
use std::collections::HashMap;
use std::ops::Range;

/// A YAML node.
#[derive(Debug, Clone)]
pub struct YNode {
    pub kind: YKind,
    pub range: Range<usize>,
    /// The node or something inside it could not be parsed.
    pub error: bool,
    /// The node overlaps a blanked Helm template action.
    pub templated: bool,
}

#[derive(Debug, Clone)]
pub enum YKind {
    Map(Vec<Entry>),
    Seq(Vec<YNode>),
    /// A scalar's value: quotes removed; block scalars keep their text.
    Scalar(String),
    Alias(String),
    Null,
    Unknown,
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_range: Range<usize>,
    pub value: YNode,
}

/// One document of a stream.
#[derive(Debug, Clone)]
pub struct YamlDoc {
    pub root: YNode,
    pub anchors: HashMap<String, YNode>,
}

/// A parsed YAML file.
#[derive(Debug)]
pub struct YamlFile {
    pub docs: Vec<YamlDoc>,
    /// The file holds Helm/Go template actions (`{{ … }}`).
    pub templated: bool,
    /// Byte offset of the first part the parser could not read.
    pub first_error: Option<usize>,
}

const NULL: YNode = YNode {
    kind: YKind::Null,
    range: 0..0,
    error: false,
    templated: false,
};

impl YamlDoc {
    /// Follow aliases to the anchored node.
    pub fn resolve<'a>(&'a self, node: &'a YNode) -> &'a YNode {
        let mut cur = node;
        for _ in 0..16 {
            match &cur.kind {
                YKind::Alias(name) => match self.anchors.get(name) {
                    Some(n) => cur = n,
                    None => return cur,
                },
                _ => return cur,
            }
        }
        cur
    }

    /// The entries of a mapping, merged keys (`<<`) included after the node's own (own keys win).
    pub fn entries<'a>(&'a self, node: &'a YNode) -> Vec<&'a Entry> {
        let mut out: Vec<&'a Entry> = Vec::new();
        self.collect_entries(node, &mut out, 0);
        out
    }

    fn collect_entries<'a>(&'a self, node: &'a YNode, out: &mut Vec<&'a Entry>, depth: usize) {
        if depth > 8 {
            return;
        }
        let YKind::Map(entries) = &self.resolve(node).kind else {
            return;
        };
        let mut merges = Vec::new();
        for e in entries {
            if e.key == "<<" {
                merges.push(&e.value);
            } else if !out.iter().any(|o| o.key == e.key) {
                out.push(e);
            }
        }
        for m in merges {
            match &self.resolve(m).kind {
                YKind::Seq(items) => {
                    for i in items {
                        self.collect_entries(i, out, depth + 1);
                    }
                }
                _ => self.collect_entries(m, out, depth + 1),
            }
        }
    }

    /// The entry for `key` in a mapping (merges and aliases followed).
    pub fn entry<'a>(&'a self, node: &'a YNode, key: &str) -> Option<&'a Entry> {
        self.entries(node).into_iter().find(|e| e.key == key)
    }

    /// The value for `key` in a mapping, aliases resolved.
    pub fn get<'a>(&'a self, node: &'a YNode, key: &str) -> Option<&'a YNode> {
        self.entry(node, key).map(|e| self.resolve(&e.value))
    }

    /// Follow a path of keys.
    pub fn path<'a>(&'a self, node: &'a YNode, keys: &[&str]) -> Option<&'a YNode> {
        let mut cur = self.resolve(node);
        for k in keys {
            cur = self.get(cur, k)?;
        }
        Some(cur)
    }

    /// A scalar value's text (aliases resolved).
    pub fn str<'a>(&'a self, node: &'a YNode) -> Option<&'a str> {
        match &self.resolve(node).kind {
            YKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The items of a sequence (aliases resolved).
    pub fn items<'a>(&'a self, node: &'a YNode) -> Vec<&'a YNode> {
        match &self.resolve(node).kind {
            YKind::Seq(items) => items.iter().map(|i| self.resolve(i)).collect(),
            _ => Vec::new(),
        }
    }

    /// Is this mapping possibly incomplete: parse errors inside, or merged from an anchor we cannot see?
    pub fn incomplete(&self, node: &YNode) -> bool {
        let node = self.resolve(node);
        if node.error || matches!(node.kind, YKind::Unknown) {
            return true;
        }
        if let YKind::Map(entries) = &node.kind {
            return entries.iter().any(|e| {
                e.key == "<<"
                    && match &e.value.kind {
                        YKind::Alias(a) => !self.anchors.contains_key(a),
                        YKind::Seq(items) => items.iter().any(|i| match &i.kind {
                            YKind::Alias(a) => !self.anchors.contains_key(a),
                            _ => false,
                        }),
                        _ => false,
                    }
            });
        }
        false
    }
}

impl YNode {
    pub fn is_map(&self) -> bool {
        matches!(self.kind, YKind::Map(_))
    }

    /// An empty value: `key:`, `key: null`, `key: ~`, `key: {}` or `key: []`.
    pub fn is_empty(&self) -> bool {
        match &self.kind {
            YKind::Null => true,
            YKind::Map(e) => e.is_empty(),
            YKind::Seq(i) => i.is_empty(),
            YKind::Scalar(s) => matches!(s.as_str(), "null" | "~" | "Null" | "NULL"),
            _ => false,
        }
    }
}

/// Blank the `{{ … }}` actions of a Helm template, keeping byte offsets: lines that hold only actions become
/// comments; actions inside a line become `_` filler. Returns the new text and the blanked ranges.
pub fn blank_templates(text: &str) -> (String, Vec<Range<usize>>) {
    let mut out = text.as_bytes().to_vec();
    let mut ranges = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'{' && bytes[i + 1] == b'{' {
            let end = text[i + 2..]
                .find("}}")
                .map_or(bytes.len(), |e| i + 2 + e + 2);
            ranges.push(i..end);
            i = end;
        } else {
            i += 1;
        }
    }
    for r in &ranges {
        // An unquoted action that ends its line (`labels: {{- include … | nindent 4 }}`) usually expands to
        // a nested block: blank it to nothing, so the indented lines after it still parse as its value.
        let line_rest = text[r.end..].split('\n').next().unwrap_or("");
        let line_start = text[..r.start].rfind('\n').map_or(0, |i| i + 1);
        let prefix = &text[line_start..r.start];
        let before = prefix.trim();
        // `key: {{ … }}` or `- {{ … }}`, not `image: repo:{{ … }}`
        let spaced = prefix.len() > prefix.trim_end().len();
        let whole_value =
            before.is_empty() || (spaced && (before.ends_with(':') || before.ends_with('-')));
        let fill = if line_rest.trim().is_empty() && whole_value {
            b' '
        } else {
            b'_'
        };
        // Whitespace stays, so the lines a multi-line action spans keep their indentation.
        for b in &mut out[r.clone()] {
            if !b.is_ascii_whitespace() {
                *b = fill;
            }
        }
    }
    // Lines holding only actions (and whitespace) become comments.
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        let trimmed = line.trim();
        let covered = !trimmed.is_empty()
            && ranges.iter().any(|r| r.start < end && r.end > start)
            && line
                .char_indices()
                .all(|(k, c)| c.is_whitespace() || ranges.iter().any(|r| r.contains(&(start + k))));
        if covered {
            let first = line
                .char_indices()
                .find(|(_, c)| !c.is_whitespace())
                .map_or(0, |(k, _)| k);
            out[start + first] = b'#';
        }
        start = end;
    }
    // Only ASCII bytes were written over ASCII bytes of the actions and whitespace runs stay, so this holds.
    let s = String::from_utf8(out).unwrap_or_else(|_| text.to_string());
    (s, ranges)
}

/// Parse YAML text into documents. Helm template actions are blanked first (see the module docs).
pub fn parse(text: &str) -> YamlFile {
    let templated = text.contains("{{");
    let (src, ranges) = if templated {
        blank_templates(text)
    } else {
        (text.to_string(), Vec::new())
    };
    let grep = Lang::Yaml.ast_grep(&src);
    let root = grep.root();
    let first_error = if root.get_inner_node().has_error() {
        root.dfs()
            .find(|n| n.is_error() || n.is_missing())
            .map(|n| n.range().start)
    } else {
        None
    };
    let mut docs = Vec::new();
    let mut builder = Builder {
        src: &src,
        ranges: &ranges,
        anchors: HashMap::new(),
        depth: 0,
    };
    for doc in root.children().filter(|c| c.kind() == "document") {
        builder.anchors = HashMap::new();
        let content = doc
            .children()
            .find(|c| matches!(c.kind().as_ref(), "block_node" | "flow_node"));
        let node = match content {
            Some(c) => builder.build(&c),
            None => YNode {
                range: doc.range(),
                error: doc.get_inner_node().has_error(),
                ..NULL
            },
        };
        docs.push(YamlDoc {
            root: node,
            anchors: std::mem::take(&mut builder.anchors),
        });
    }
    YamlFile {
        docs,
        templated,
        first_error,
    }
}

/// Why a YAML file cannot be analysed: no document has any structure the parser could read.
pub fn unparseable(text: &str) -> Option<String> {
    unparseable_model(&parse(text), text)
}

/// Why a parsed YAML file (`f`, the model of `text`) cannot be analysed (see [`unparseable`]).
pub fn unparseable_model(f: &YamlFile, text: &str) -> Option<String> {
    let at = f.first_error?;
    let usable = f.docs.iter().any(|d| match &d.root.kind {
        YKind::Map(e) => !e.is_empty(),
        YKind::Seq(i) => !i.is_empty(),
        _ => false,
    });
    if usable {
        return None;
    }
    // Byte-wise: the offset comes from the blanked text and may fall inside a multi-byte character.
    let line = text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    Some(format!(
        "cannot be parsed as YAML (syntax error at line {line}); fix the file or exclude it in .github/prodaudit.yml"
    ))
}

struct Builder<'a> {
    src: &'a str,
    ranges: &'a [Range<usize>],
    anchors: HashMap<String, YNode>,
    /// Nodes being built around the current one: the model is built by recursion, so it stops at
    /// [`MAX_BUILD_DEPTH`] (deeper parts become [`YKind::Unknown`]) rather than overflow the stack.
    depth: usize,
}

/// Tree levels the model builder descends (a YAML nesting level is about two): well past what
/// [`crate::analysis::limits::MAX_YAML_NESTING`] lets through to the parser.
const MAX_BUILD_DEPTH: usize = 4 * crate::analysis::limits::MAX_YAML_NESTING + 16;

impl Builder<'_> {
    fn templated(&self, r: &Range<usize>) -> bool {
        self.ranges
            .iter()
            .any(|t| t.start < r.end && t.end > r.start)
    }

    fn unknown(&self, n: &PyNode<'_>) -> YNode {
        YNode {
            kind: YKind::Unknown,
            range: n.range(),
            error: true,
            templated: self.templated(&n.range()),
        }
    }

    fn build(&mut self, n: &PyNode<'_>) -> YNode {
        if self.depth >= MAX_BUILD_DEPTH {
            return self.unknown(n);
        }
        self.depth += 1;
        let node = self.build_node(n);
        self.depth -= 1;
        node
    }

    fn build_node(&mut self, n: &PyNode<'_>) -> YNode {
        let range = n.range();
        let templated = self.templated(&range);
        let error = n.get_inner_node().has_error();
        match n.kind().as_ref() {
            "block_node" | "flow_node" => {
                let mut anchor = None;
                let mut content = None;
                for c in n.children() {
                    match c.kind().as_ref() {
                        "anchor" => {
                            anchor = c
                                .children()
                                .find(|k| k.kind() == "anchor_name")
                                .map(|k| k.text().to_string())
                        }
                        "tag" | "comment" => {}
                        _ if c.is_named() || c.kind() == "ERROR" => content = Some(c),
                        _ => {}
                    }
                }
                let mut node = match content {
                    Some(c) => self.build(&c),
                    None => YNode {
                        kind: YKind::Null,
                        range: range.clone(),
                        error,
                        templated,
                    },
                };
                node.error |= error;
                if let Some(a) = anchor {
                    self.anchors.insert(a, node.clone());
                }
                node
            }
            "block_mapping" | "flow_mapping" => {
                let mut entries = Vec::new();
                let mut err = error;
                for p in n.children() {
                    match p.kind().as_ref() {
                        "block_mapping_pair" | "flow_pair" => {
                            if p.get_inner_node().has_error() {
                                err = true;
                            }
                            let Some(k) = p.field("key") else {
                                continue;
                            };
                            let key = self.build(&k);
                            let YKind::Scalar(name) = &key.kind else {
                                err = true;
                                continue;
                            };
                            let value = match p.field("value") {
                                Some(v) => self.build(&v),
                                None => {
                                    // `key: {{ … }}` blanked to nothing: the value came from a template.
                                    let end = k.range().end;
                                    let line_end = self
                                        .src
                                        .get(end..)
                                        .and_then(|r| r.find('\n'))
                                        .map_or(self.src.len(), |i| end + i);
                                    YNode {
                                        kind: YKind::Null,
                                        range: end..end,
                                        error: false,
                                        templated: self.templated(&(end..line_end)),
                                    }
                                }
                            };
                            entries.push(Entry {
                                key: name.clone(),
                                key_range: k.range(),
                                value,
                            });
                        }
                        // `{a, b}`: a key without value
                        "flow_node" => {
                            let key = self.build(&p);
                            if let YKind::Scalar(name) = &key.kind {
                                entries.push(Entry {
                                    key: name.clone(),
                                    key_range: p.range(),
                                    value: YNode {
                                        range: p.range().end..p.range().end,
                                        ..NULL
                                    },
                                });
                            }
                        }
                        "ERROR" => err = true,
                        _ => {}
                    }
                }
                YNode {
                    kind: YKind::Map(entries),
                    range,
                    error: err,
                    templated,
                }
            }
            "block_sequence" | "flow_sequence" => {
                let mut items = Vec::new();
                let mut err = error;
                for c in n.children() {
                    match c.kind().as_ref() {
                        "block_sequence_item" => {
                            let inner = c.children().find(|k| {
                                matches!(k.kind().as_ref(), "block_node" | "flow_node" | "ERROR")
                            });
                            items.push(match inner {
                                Some(k) => self.build(&k),
                                None => YNode {
                                    range: c.range(),
                                    ..NULL
                                },
                            });
                        }
                        "flow_node" => items.push(self.build(&c)),
                        "flow_pair" => {
                            // `[a: b]`: a single-pair mapping
                            let m = YNode {
                                kind: YKind::Unknown,
                                range: c.range(),
                                error: false,
                                templated: self.templated(&c.range()),
                            };
                            items.push(m);
                        }
                        "ERROR" => err = true,
                        _ => {}
                    }
                }
                YNode {
                    kind: YKind::Seq(items),
                    range,
                    error: err,
                    templated,
                }
            }
            "plain_scalar" | "double_quote_scalar" | "single_quote_scalar" | "block_scalar" => {
                let t = n.text();
                let v = match n.kind().as_ref() {
                    "double_quote_scalar" => t
                        .strip_prefix('"')
                        .and_then(|s| s.strip_suffix('"'))
                        .unwrap_or(&t)
                        .to_string(),
                    "single_quote_scalar" => t
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .unwrap_or(&t)
                        .replace("''", "'"),
                    _ => t.trim().to_string(),
                };
                if error {
                    return self.unknown(n);
                }
                YNode {
                    kind: YKind::Scalar(v),
                    range,
                    error,
                    templated,
                }
            }
            "alias" => {
                let name = n
                    .children()
                    .find(|k| k.kind() == "alias_name")
                    .map(|k| k.text().to_string())
                    .unwrap_or_default();
                YNode {
                    kind: YKind::Alias(name),
                    range,
                    error,
                    templated,
                }
            }
            _ => self.unknown(n),
        }
    }
}

/// The line (1-based) of a byte offset, for tests.
#[cfg(test)]
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(f: &YamlFile) -> &YamlDoc {
        match f.docs.first() {
            Some(d) => d,
            None => panic!("no document"),
        }
    }

    #[test]
    fn multi_document_streams_give_one_doc_each() {
        let text = "kind: Service\nmetadata: {name: a}\n---\n# comment\nkind: Deployment\nspec:\n  replicas: 1\n---\n";
        let f = parse(text);
        assert!(f.docs.len() >= 2);
        let d = &f.docs[1];
        assert_eq!(
            d.path(&d.root, &["kind"]).and_then(|n| d.str(n)),
            Some("Deployment")
        );
        let r = match d.entry(d.path(&d.root, &["spec"]).unwrap_or(&d.root), "replicas") {
            Some(e) => e,
            None => panic!("no replicas"),
        };
        assert_eq!(line_of(text, r.key_range.start), 7);
        assert_eq!(d.str(&r.value), Some("1"));
        let a = &f.docs[0];
        assert_eq!(
            a.path(&a.root, &["metadata", "name"])
                .and_then(|n| a.str(n)),
            Some("a")
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys_resolve() {
        let text = "x-defaults: &defaults\n  restart: always\n  healthcheck:\n    test: [\"CMD\", \"true\"]\nx-img: &img redis:7\nservices:\n  a:\n    <<: *defaults\n    image: *img\n    restart: \"no\"\n  b:\n    <<: [*defaults]\n";
        let f = parse(text);
        let d = only(&f);
        let a = match d.path(&d.root, &["services", "a"]) {
            Some(a) => a,
            None => panic!("no a"),
        };
        assert!(d.get(a, "healthcheck").is_some(), "merged from the anchor");
        assert_eq!(
            d.get(a, "restart").and_then(|n| d.str(n)),
            Some("no"),
            "own key wins"
        );
        assert_eq!(d.get(a, "image").and_then(|n| d.str(n)), Some("redis:7"));
        let b = match d.path(&d.root, &["services", "b"]) {
            Some(b) => b,
            None => panic!("no b"),
        };
        assert!(d.get(b, "healthcheck").is_some(), "merge list");
        assert!(!d.incomplete(b));
        let unknown = parse("services:\n  c:\n    <<: *elsewhere\n");
        let d = only(&unknown);
        let c = d.path(&d.root, &["services", "c"]).unwrap_or(&d.root);
        assert!(d.incomplete(c), "merge from an unknown anchor hides keys");
    }

    #[test]
    fn helm_templates_are_blanked_keeping_offsets() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ include \"app.fullname\" . }}\n  labels:\n    {{- include \"app.labels\" . | nindent 4 }}\nspec:\n  {{- if not .Values.autoscaling.enabled }}\n  replicas: {{ .Values.replicaCount }}\n  {{- end }}\n  template:\n    spec:\n      containers:\n        - name: app\n          image: \"{{ .Values.image.repository }}:{{ .Values.image.tag }}\"\n          resources:\n            {{- toYaml .Values.resources | nindent 12 }}\n";
        let (blanked, ranges) = blank_templates(text);
        assert_eq!(blanked.len(), text.len());
        assert_eq!(ranges.len(), 8);
        let f = parse(text);
        assert!(f.templated);
        let d = only(&f);
        assert_eq!(
            d.path(&d.root, &["kind"]).and_then(|n| d.str(n)),
            Some("Deployment")
        );
        let containers = d
            .path(&d.root, &["spec", "template", "spec", "containers"])
            .map(|c| d.items(c))
            .unwrap_or_default();
        assert_eq!(containers.len(), 1);
        let image = match d.entry(containers[0], "image") {
            Some(e) => e,
            None => panic!("no image"),
        };
        assert!(image.value.templated);
        assert_eq!(line_of(text, image.key_range.start), 15);
        let replicas = d.path(&d.root, &["spec", "replicas"]);
        assert!(replicas.is_some_and(|r| r.templated));
    }

    #[test]
    fn trailing_actions_blank_to_nothing_only_when_they_are_the_value() {
        let (b, _) = blank_templates("image: repo:{{ .Values.tag }}\n");
        assert_eq!(b, "image: repo:__ ___________ __\n");
        let text = "metadata:\n  labels: {{- include \"x\" . | nindent 4 }}\n    app: api\nscript: |\n  A=\"{{\n  $x := 1 }}\"\n  echo ok\n";
        let f = parse(text);
        assert!(f.first_error.is_none(), "{:?}", blank_templates(text).0);
        let d = only(&f);
        assert_eq!(
            d.path(&d.root, &["metadata", "labels", "app"])
                .and_then(|n| d.str(n)),
            Some("api")
        );
    }

    #[test]
    fn broken_yaml_yields_unknown_not_a_panic() {
        let f = parse("services:\n  a:\n    image: [unclosed\n  b: {\n");
        for d in &f.docs {
            let _ = d.entries(&d.root);
        }
        assert!(f.first_error.is_some());
        for broken in ["]]]\n", "a: b: c\n", "- a\nb: c\n", "\"unterminated\n"] {
            let reason = unparseable(broken);
            assert!(
                reason.as_deref().is_some_and(|r| r.contains("line 1")),
                "{broken:?}: {reason:?}"
            );
        }
        assert_eq!(unparseable("services:\n  a:\n    image: x:1\n"), None);
        assert_eq!(unparseable(""), None);
        let empty = parse("");
        assert!(empty.docs.iter().all(|d| d.entries(&d.root).is_empty()));
    }
}
