//! O1: a pre-signed / signed URL written to the log.
//!
//! A pre-signed S3 URL (or a GCS signed URL, an Azure SAS URL) is a bearer credential: whoever has the string can
//! read or write the object until it expires, without any other authentication. Logged, it is readable by everyone
//! with access to the log pipeline for as long as the logs are kept.
//!
//! Reported: logging calls whose arguments contain the result of `generate_presigned_url(...)` and friends, either
//! directly or through a name assigned from such a call in the same function (or module), or a name that says it
//! is one (`presigned_url`, `signed_url`, `sas_url`). Values wrapped in another call (`len(urls)`,
//! `urlparse(url).path`, `redact(url)`) are not.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::syntax::callee;
use crate::analysis::semantic::python::text::{Cut, shorten};
use regex::Regex;
use std::collections::HashSet;
use std::sync::OnceLock;

pub struct SignedUrlInLog;

fn signing_call_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(^|\.)(generate_presigned_url|generate_presigned_post|generate_signed_url|generate_blob_sas|generate_container_sas|generate_account_sas|create_signed_url|create_signed_urls|presigned_get_object|presigned_put_object|get_presigned_url|presign)$")
            .expect("valid regex")
    })
}

fn signed_name_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)^_*(\w+_)?(pre_?signed|signed|sas)_?(url|uri|link)s?$")
            .expect("valid regex")
    })
}

fn logger_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^((self|cls|app|current_app)\.)?_*(logger|log|LOGGER|LOG|logging)\.(debug|info|warning|warn|error|exception|critical|fatal|log)$")
            .expect("valid regex")
    })
}

fn is_signing_call(node: &PyNode<'_>) -> bool {
    let call = if node.kind() == "await" {
        match node.children().find(|c| c.kind() == "call") {
            Some(c) => c,
            None => return false,
        }
    } else {
        node.clone()
    };
    call.kind() == "call" && callee(&call).is_some_and(|f| signing_call_re().is_match(&f))
}

/// The scope whose assignments a name in `node` refers to: the nearest function, else the module.
fn scope_of<'r>(node: &PyNode<'r>) -> Option<PyNode<'r>> {
    node.ancestors()
        .find(|a| matches!(a.kind().as_ref(), "function_definition" | "module"))
}

/// Names assigned (directly) from a signing call within `scope`, not descending into nested functions.
fn signed_names(scope: &PyNode<'_>) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut stack: Vec<PyNode<'_>> = scope.children().collect();
    while let Some(n) = stack.pop() {
        if n.kind() == "function_definition"
            || n.kind() == "class_definition"
            || n.kind() == "lambda"
        {
            continue;
        }
        if n.kind() == "assignment"
            && let (Some(left), Some(right)) = (n.field("left"), n.field("right"))
            && left.kind() == "identifier"
            && is_signing_call(&right)
        {
            names.insert(left.text().to_string());
        }
        stack.extend(n.children());
    }
    names
}

/// The signed-URL value among a logging call's arguments, if any.
fn leaked<'r>(arg: &PyNode<'r>, names: &HashSet<String>) -> Option<PyNode<'r>> {
    match arg.kind().as_ref() {
        "identifier" => {
            let t = arg.text();
            (names.contains(t.as_ref()) || signed_name_re().is_match(&t)).then(|| arg.clone())
        }
        "attribute" => {
            let a = arg.field("attribute")?;
            signed_name_re().is_match(&a.text()).then(|| arg.clone())
        }
        "call" | "await" => {
            if is_signing_call(arg) {
                return Some(arg.clone());
            }
            // `"...".format(url)` and `str(url)` pass the value through; other calls transform it.
            let f = callee(arg).unwrap_or_default();
            if f.ends_with(".format") || f == "str" || f == "repr" {
                let args = arg.field("arguments")?;
                return args.children().find_map(|a| leaked(&a, names));
            }
            None
        }
        "keyword_argument" => leaked(&arg.field("value")?, names),
        "string" => arg
            .children()
            .filter(|c| c.kind() == "interpolation")
            .find_map(|i| i.field("expression").and_then(|e| leaked(&e, names))),
        "binary_operator" | "tuple" | "parenthesized_expression" | "concatenated_string" => {
            arg.children().find_map(|c| leaked(&c, names))
        }
        "dictionary" => arg
            .children()
            .filter(|p| p.kind() == "pair")
            .find_map(|p| p.field("value").and_then(|v| leaked(&v, names))),
        _ => None,
    }
}

impl Check for SignedUrlInLog {
    fn id(&self) -> &'static str {
        "signed-url-in-log"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &[
            "presign",
            "signed_url",
            "sas",
            "SAS",
            "signed_link",
            "create_signed",
        ]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for call in ctx.of_kind(root, "call").iter() {
            let Some(f) = callee(call) else { continue };
            if !logger_re().is_match(&f) {
                continue;
            }
            let Some(args) = call.field("arguments") else {
                continue;
            };
            let names = scope_of(call).map(|s| signed_names(&s)).unwrap_or_default();
            if let Some(value) = args.children().find_map(|a| leaked(&a, &names)) {
                out.push(CheckMatch {
                    fix: None,
                    range: call.range(),
                    message: Some(format!(
                        "`{f}(…)` logs the signed URL `{}`: it is a bearer credential for the object until it expires, now readable by anyone with access to the logs",
                        shorten(&value.text(), Cut::EXPRESSION)
                    )),
                });
            }
        }
    }
}
