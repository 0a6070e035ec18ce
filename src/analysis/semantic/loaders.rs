//! Data-access functions of other modules that load, update or delete a row of a tenant- or owner-scoped model by
//! an id parameter alone: `def get_chat(db, chat_id): return db.get(Chat, chat_id)`. A route that hands such a
//! function an id from the request, and never checks the row against the caller, gives any signed-in user any
//! tenant's row (the ownership check of I1 follows calls into them).
//!
//! Read as text, like [`super::tenancy`]: a `def` line, its parameters, and its indented body (bounded). A function
//! counts only when its body names a scoped model in a by-id load and mentions none of that model's tenant/owner
//! columns, nor the words `owner`/`tenant`; one taking the caller (`user`, `owner`, `tenant`, `org`, …) may scope
//! by it and does not count. A name that is also defined elsewhere as something else is ambiguous and dropped.

use super::python::text::{has_word, header_of};
use super::tenancy::{MODEL_FILE_GLOBS, TenantModels, python_texts_matching};
use std::collections::HashMap;

/// Files that may hold data-access functions: repositories, CRUD modules, DAOs and services.
pub const LOADER_FILE_GLOBS: &[&str] = &[
    "**/crud.py",
    "**/crud_*.py",
    "**/*_crud.py",
    "**/crud/**/*.py",
    "**/repository.py",
    "**/repositories.py",
    "**/*_repository.py",
    "**/repository/**/*.py",
    "**/repositories/**/*.py",
    "**/dao.py",
    "**/*_dao.py",
    "**/dao/**/*.py",
    "**/service.py",
    "**/services.py",
    "**/*_service.py",
    "**/services/**/*.py",
    // One data-access function per module, grouped by what they do (`users/methods/get_user.py`), and stores,
    // managers and query modules.
    "**/methods/**/*.py",
    "**/queries/**/*.py",
    "**/queries.py",
    "**/store.py",
    "**/*_store.py",
    "**/stores/**/*.py",
    "**/managers/**/*.py",
    "**/*_manager.py",
];

/// What the ownership check reads: the model files and the data-access files.
pub fn ownership_file_globs() -> &'static [&'static str] {
    static ALL: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Vec<&'static str> = MODEL_FILE_GLOBS.to_vec();
        all.extend(LOADER_FILE_GLOBS.iter().copied());
        all
    })
}

/// The texts of the files the ownership check reads (model and data-access files), each once.
pub fn ownership_file_texts(files: &HashMap<String, String>) -> impl Iterator<Item = &str> {
    static GLOBS: std::sync::OnceLock<Option<globset::GlobSet>> = std::sync::OnceLock::new();
    python_texts_matching(files, &GLOBS, ownership_file_globs())
}

/// Lines of a `def` header joined to read its parameters.
const MAX_HEADER_LINES: usize = 12;
/// Lines of a function body read.
const MAX_BODY_LINES: usize = 400;
/// Functions recorded per repository.
const MAX_FUNCTIONS: usize = 200_000;
/// Calls followed from a function to the loader that does its load (service -> repository -> model helper).
const MAX_THROUGH_DEPTH: usize = 3;
/// Bytes of a call's arguments read.
const MAX_ARGS_BYTES: usize = 2_000;

/// Parameter words that carry the caller or a scope: a function taking one may filter by it.
const SCOPE_WORDS: &[&str] = &[
    "user",
    "owner",
    "tenant",
    "org",
    "workspace",
    "account",
    "member",
    "principal",
    "caller",
    "team",
    "auth",
    "token",
    "group",
    "project",
    "app",
];

/// One data-access function that loads a scoped model by an id alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdLoader {
    pub model: String,
    /// Its parameters that carry the id.
    pub id_params: Vec<String>,
    /// It takes the caller (or a scope) and never reads it: handing the caller to it checks nothing.
    pub ignores_caller: bool,
}

/// The repository's by-id loaders, by function name.
#[derive(Debug, Default, Clone)]
pub struct IdLoaders {
    /// `None`: the name is also defined as something else (ambiguous).
    by_name: HashMap<String, Option<IdLoader>>,
}

impl IdLoaders {
    /// Build from the data-access files' texts, for the scoped models of `models`.
    pub fn build<'a>(texts: impl IntoIterator<Item = &'a str>, models: &TenantModels) -> Self {
        let mut by_name: HashMap<String, Option<IdLoader>> = HashMap::new();
        if models.is_empty() {
            return IdLoaders { by_name };
        }
        // How often each name is defined, and the functions that may load through another one (they take an id
        // and are not loaders by their own body): a service method handing its id to a repository's loader.
        let mut defined: HashMap<String, usize> = HashMap::new();
        // (names, parameters, code without comments and docstrings), the code stripped once.
        let mut maybe_through: Vec<(Vec<String>, Vec<String>, String)> = Vec::new();
        for text in texts {
            for (names, params, body) in functions(text) {
                if by_name.len() >= MAX_FUNCTIONS {
                    break;
                }
                let found = loader(&params, &body, models);
                for name in &names {
                    *defined.entry(name.clone()).or_default() += 1;
                }
                let candidate = found.is_none()
                    && params.iter().any(|p| is_id_name(p))
                    && maybe_through.len() < MAX_FUNCTIONS;
                let kept_names = candidate.then(|| names.clone());
                for name in names {
                    match (by_name.get(&name), &found) {
                        (None, found) => {
                            by_name.insert(name, found.clone());
                        }
                        (Some(Some(known)), Some(found)) if known == found => {}
                        _ => {
                            by_name.insert(name, None);
                        }
                    }
                }
                if let Some(names) = kept_names {
                    maybe_through.push((names, params, code_only(&body)));
                }
            }
        }
        // Loaders through loaders, a few calls deep (route -> service -> repository): each round adds the
        // functions whose only load is a call handing their id to a loader found before.
        for _ in 0..MAX_THROUGH_DEPTH {
            let mut added: Vec<(Vec<String>, IdLoader)> = Vec::new();
            for (names, params, code) in &maybe_through {
                // Only a name defined once, and not already a loader.
                if names.iter().any(|n| {
                    defined.get(n).copied().unwrap_or(0) != 1
                        || by_name.get(n).is_some_and(Option::is_some)
                }) {
                    continue;
                }
                if let Some(l) = loader_through(params, code, models, &by_name) {
                    added.push((names.clone(), l));
                }
            }
            if added.is_empty() {
                break;
            }
            for (names, l) in added {
                for n in names {
                    by_name.insert(n, Some(l.clone()));
                }
            }
        }
        IdLoaders { by_name }
    }

    /// How many names are by-id loaders.
    pub fn len(&self) -> usize {
        self.by_name.values().filter(|l| l.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The by-id loader named `name`, when the repository defines exactly that.
    pub fn get(&self, name: &str) -> Option<&IdLoader> {
        self.by_name.get(name).and_then(Option::as_ref)
    }
}

/// A name that carries an id (`chat_id`, `id`, `doc_uuid`, `org_pk`, `orgId`): one definition for the ownership
/// checks and the data-access functions.
pub fn is_id_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "id"
        || lower.ends_with("_id")
        || lower.ends_with("_uuid")
        || lower.ends_with("_pk")
        || (name.len() > 2 && name.ends_with("Id"))
}

/// The functions of a file: name, parameter names (without `self`/`cls`) and body text.
/// A method of a top-level class is given as `Class.method` (how a classmethod is called: `ApiKey.get_by_id(…)`)
/// and as `method` (how an instance calls it).
fn functions(text: &str) -> Vec<(Vec<String>, Vec<String>, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut class: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent == 0 && !trimmed.is_empty() && !trimmed.starts_with(['#', '@']) {
            class = trimmed.strip_prefix("class ").map(|r| {
                r.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            });
        }
        let rest = trimmed
            .strip_prefix("async def ")
            .or_else(|| trimmed.strip_prefix("def "));
        let Some(rest) = rest else { continue };
        // The header, possibly over several lines, up to the `:` that ends it.
        // Complete at the `:` that ends it, a trailing comment aside (`def f(db, user):  # noqa: ARG001`).
        let Some((name, header)) = header_of(rest, &lines, &mut i, MAX_HEADER_LINES, |h| {
            let h = h.trim_end();
            h.ends_with(':')
                || h.rsplit_once('#')
                    .is_some_and(|(code, _)| code.trim_end().ends_with(':'))
        }) else {
            continue;
        };
        let inside = header
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map_or("", |(p, _)| p);
        let params: Vec<String> = inside
            .split(',')
            .filter_map(|p| {
                let p = p.trim().trim_start_matches('*');
                let n: String = p
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                (!n.is_empty() && n != "self" && n != "cls").then_some(n)
            })
            .collect();
        let mut body = String::new();
        let mut taken = 0;
        while i < lines.len() && taken < MAX_BODY_LINES {
            let l = lines[i];
            let t = l.trim_start();
            if !t.is_empty() && l.len() - t.len() <= indent {
                break;
            }
            body.push_str(l);
            body.push('\n');
            i += 1;
            taken += 1;
        }
        let names = match &class {
            Some(c) if indent > 0 && !c.is_empty() => vec![format!("{c}.{name}"), name],
            _ => vec![name],
        };
        out.push((names, params, body));
    }
    out
}

/// A body without its comments and docstrings (a parameter named there is not read). Line-based: a `#` inside a
/// string cuts the line short, which can only hide a read, never invent one.
fn code_only(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut in_doc: Option<&str> = None;
    for line in body.lines() {
        let t = line.trim();
        if let Some(q) = in_doc {
            if t.contains(q) {
                in_doc = None;
            }
            continue;
        }
        if let Some(q) = ["\"\"\"", "'''"].into_iter().find(|q| t.starts_with(q)) {
            if !t[3..].contains(q) {
                in_doc = Some(q);
            }
            continue;
        }
        out.push_str(line.split('#').next().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// How a function stands with the caller: `None` when it reads a caller or scope parameter (it may scope its load
/// by it), else whether it takes one and never reads it.
fn caller_unread(params: &[String], code: &str) -> Option<bool> {
    // A caller or scope parameter the code never reads (`user: User,  # noqa: ARG001`) cannot scope the load:
    // the function still loads by the id alone, whatever its callers hand it.
    let scoping = |p: &String| {
        let lower = p.to_ascii_lowercase();
        (!is_id_name(&lower) && SCOPE_WORDS.iter().any(|w| lower.contains(w)))
            || (is_id_name(&lower) && SCOPE_WORDS.iter().any(|w| lower.starts_with(w)))
    };
    let mut ignores_caller = false;
    for p in params.iter().filter(|p| scoping(p)) {
        if has_word(code, p) {
            return None;
        }
        ignores_caller = true;
    }
    Some(ignores_caller)
}

/// A function whose load is a call handing one of its id parameters to a loader found before
/// (`async def fetch_chat(self, chat_id): return await self.repo.get_by_id(chat_id)`; `code` without comments
/// or docstrings), and which neither reads
/// the caller nor names the model's tenant/owner columns.
fn loader_through(
    params: &[String],
    code: &str,
    models: &TenantModels,
    known: &HashMap<String, Option<IdLoader>>,
) -> Option<IdLoader> {
    let ignores_caller = caller_unread(params, code)?;
    let ids: Vec<String> = params.iter().filter(|p| is_id_name(p)).cloned().collect();
    let lower = code.to_ascii_lowercase();
    if ids.is_empty()
        || lower.contains("owner")
        || lower.contains("tenant")
        || scopes_by_object_state(code)
    {
        return None;
    }
    for (callee, args) in calls(code) {
        let Some(inner) = callee_keys(&callee).find_map(|k| known.get(&k).and_then(Option::as_ref))
        else {
            continue;
        };
        if !ids.iter().any(|id| has_word(args, id)) {
            continue;
        }
        let Some(owner) = models.owner(&inner.model) else {
            continue;
        };
        if owner.columns().iter().any(|c| has_word(code, c)) {
            return None;
        }
        return Some(IdLoader {
            model: inner.model.clone(),
            id_params: ids,
            ignores_caller,
        });
    }
    None
}

/// The names a written callee may be known by: `self.repo.get_by_id` is `repo.get_by_id` (as `Class.method`)
/// and `get_by_id`.
fn callee_keys(callee: &str) -> impl Iterator<Item = String> + '_ {
    let mut parts = callee.rsplit('.');
    let tail = parts.next().unwrap_or(callee);
    let class = parts.next();
    class
        .map(|c| format!("{c}.{tail}"))
        .into_iter()
        .chain(std::iter::once(tail.to_string()))
}

/// The calls written in code: the dotted callee before each `(` and the text of its arguments (bounded).
fn calls(code: &str) -> Vec<(String, &str)> {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.';
    let mut out = Vec::new();
    for (at, _) in code.match_indices('(') {
        let mut start = at;
        while start > 0 && ident(bytes[start - 1]) {
            start -= 1;
        }
        let callee = code[start..at].trim_start_matches('.');
        if callee.is_empty() || callee.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        // The arguments: up to the matching `)`, within the bound.
        let mut depth = 0usize;
        let mut end = at;
        for (i, b) in bytes[at..].iter().enumerate().take(MAX_ARGS_BYTES) {
            match b {
                b'(' => depth += 1,
                b')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = at + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        if end > at {
            out.push((callee.to_string(), &code[at + 1..end]));
        }
    }
    out
}

/// Does the code filter by something its object holds (`Task.api_client_id == self.api_client.id`,
/// `filter_by(org_id=self.org_id)`) or add conditions the object computes (`.where(Doc.id == doc_id,
/// *self._scope_filters())`)? The object may hold the caller's scope (a repository built per request): the load is
/// not shown to be by the id alone.
fn scopes_by_object_state(code: &str) -> bool {
    code.contains("== self.")
        || code.contains("*self.")
        || code.contains(".in_(self.")
        || code.match_indices("=self.").any(|(at, _)| {
            // A keyword argument (`filter_by(org_id=self.org_id)`), not an assignment (`x =self.y` is rare).
            code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && code[..at]
                    .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .is_some_and(|k| k.ends_with("_id") || k == "id")
        })
}

/// The by-id load of a scoped model in a function body, when the function is one.
fn loader(params: &[String], body: &str, models: &TenantModels) -> Option<IdLoader> {
    let code = code_only(body);
    let ignores_caller = caller_unread(params, &code)?;
    let ids: Vec<String> = params.iter().filter(|p| is_id_name(p)).cloned().collect();
    if ids.is_empty() {
        return None;
    }
    let body_lower = body.to_ascii_lowercase();
    if body_lower.contains("owner")
        || body_lower.contains("tenant")
        || scopes_by_object_state(&code)
    {
        return None;
    }
    let uses_id = ids.iter().any(|id| has_word(body, id));
    if !uses_id {
        return None;
    }
    for (model, columns) in models.owned() {
        if !has_word(body, model) || columns.iter().any(|c| has_word(body, c)) {
            continue;
        }
        let get =
            body.contains(&format!(".get({model},")) || body.contains(&format!(".get({model} ,"));
        let statement = ["query(", "select(", "delete(", "update("].iter().any(|s| {
            body.contains(&format!("{s}{model})")) || body.contains(&format!("{s}{model})."))
        });
        let by_id = body.contains(&format!("{model}.id"))
            || body.contains("filter_by(id=")
            || body.contains(".get(");
        if get || (statement && by_id) {
            return Some(IdLoader {
                model: model.to_string(),
                id_params: ids,
                ignores_caller,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_on_the_objects_state_is_no_load_by_the_id_alone() {
        let m = models();
        let scoped = "def fetch_chat(self, chat_id):\n    return self.db.query(Chat).filter(Chat.id == chat_id, Chat.api_client_id == self.api_client.id).one()\n";
        let splat = "def fetch_chat(self, chat_id):\n    return self.db.execute(select(Chat).where(Chat.id == chat_id, *self._filters())).one()\n";
        let keyword = "def fetch_chat(self, chat_id):\n    return self.db.query(Chat).filter_by(id=chat_id, org_id=self.org_id).one()\n";
        let bare = "def fetch_chat(self, chat_id):\n    return self.db.query(Chat).filter(Chat.id == chat_id).one()\n";
        for text in [scoped, splat, keyword] {
            assert!(
                IdLoaders::build([text], &m).get("fetch_chat").is_none(),
                "{text}"
            );
        }
        assert!(IdLoaders::build([bare], &m).get("fetch_chat").is_some());
    }

    fn models() -> TenantModels {
        TenantModels::build(
            ["class Chat(Base):\n    __tablename__ = \"chats\"\n    user_id = Column(Integer)\n"],
            &[],
        )
    }

    #[test]
    fn by_id_loaders_of_scoped_models() {
        let crud = "\
async def get_chat(db: AsyncSession, chat_id: int) -> Chat | None:
    return await db.get(Chat, chat_id)

def delete_chat(db, chat_id):
    db.query(Chat).filter(Chat.id == chat_id).delete()

def get_user_chat(db, chat_id, user_id):
    return db.query(Chat).filter(Chat.id == chat_id, Chat.user_id == user_id).first()

def get_chat_for(db, chat_id, user):  # noqa: ARG001
    \"\"\"``user`` is for callers that check access.\"\"\"
    return db.get(Chat, chat_id)

def get_chat_as(db, chat_id, user):
    return db.get(Chat, chat_id) if user.can_read(chat_id) else None

def count_chats(db):
    return db.query(Chat).count()

class ChatRepository:
    async def fetch(self, chat_id: str):
        stmt = select(Chat).where(Chat.id == chat_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()
";
        let loaders = IdLoaders::build([crud], &models());
        let chat = |ids: &[&str]| IdLoader {
            model: "Chat".into(),
            id_params: ids.iter().map(|s| s.to_string()).collect(),
            ignores_caller: false,
        };
        assert_eq!(loaders.get("get_chat"), Some(&chat(&["chat_id"])));
        assert_eq!(loaders.get("delete_chat"), Some(&chat(&["chat_id"])));
        assert_eq!(loaders.get("fetch"), Some(&chat(&["chat_id"])));
        // Takes the caller and never reads it (a docstring or a comment naming it is no read): still by the id alone.
        assert_eq!(
            loaders.get("get_chat_for"),
            Some(&IdLoader {
                ignores_caller: true,
                ..chat(&["chat_id"])
            })
        );
        // Filters by the owner, reads the caller, or loads nothing by id: not a by-id loader.
        assert_eq!(loaders.get("get_user_chat"), None);
        assert_eq!(loaders.get("get_chat_as"), None);
        assert_eq!(loaders.get("count_chats"), None);
        // A classmethod of a model file, by `Class.method`; the plain name is ambiguous across classes.
        let dao = "\
class Chat(Base):
    __tablename__ = \"chats\"
    user_id = Column(Integer)

    @classmethod
    def get_by_id(cls, session, id: int):
        return session.query(Chat).filter(Chat.id == id).first()

class Note(Base):
    @classmethod
    def get_by_id(cls, session, id: int):
        return session.query(Note).filter(Note.id == id).first()

def get_by_id(x):
    return x
";
        let loaders = IdLoaders::build([dao], &models());
        assert_eq!(loaders.get("Chat.get_by_id"), Some(&chat(&["id"])));
        assert_eq!(loaders.get("Note.get_by_id"), None);
        assert_eq!(loaders.get("get_by_id"), None);
        // A name defined twice, once as something else: ambiguous.
        let other = "def get_chat(db, chat_id, user_id):\n    return db.query(Chat).filter_by(id=chat_id, user_id=user_id).first()\n";
        let loaders = IdLoaders::build([crud, other], &models());
        assert_eq!(loaders.get("get_chat"), None);
        assert_eq!(loaders.get("delete_chat"), Some(&chat(&["chat_id"])));
    }

    #[test]
    fn loaders_through_a_service_layer() {
        let repo = "\
class ChatRepository:
    async def get_by_id(self, chat_id: int):
        return (await self.session.execute(select(Chat).where(Chat.id == chat_id))).scalar_one_or_none()
";
        let service = "\
class ChatService:
    async def fetch_chat(self, chat_id: int):
        return await self.repo.get_by_id(chat_id)

    async def fetch_chat_checked(self, chat_id: int, user):
        chat = await self.repo.get_by_id(chat_id)
        if chat.user_id != user.id:
            raise Forbidden()
        return chat

    async def fetch_own(self, chat_id: int):
        chat = await self.repo.get_by_id(chat_id)
        return chat if chat.user_id == self.caller.id else None

    async def fetch_first(self, chat_id: int):
        return await self.repo.get_by_id(1)

async def deep(chat_id):
    return await ChatService().fetch_chat(chat_id)

async def deeper(chat_id):
    return await deep(chat_id)

async def deepest(chat_id):
    return await deeper(chat_id)
";
        let loaders = IdLoaders::build([repo, service], &models());
        let chat = IdLoader {
            model: "Chat".into(),
            id_params: vec!["chat_id".into()],
            ignores_caller: false,
        };
        assert_eq!(loaders.get("get_by_id"), Some(&chat));
        // One call away, by the method's name and by `Class.method`.
        assert_eq!(loaders.get("fetch_chat"), Some(&chat));
        assert_eq!(loaders.get("ChatService.fetch_chat"), Some(&chat));
        // Reads the caller, compares the owner column, or hands over something else than its id: not a loader.
        assert_eq!(loaders.get("fetch_chat_checked"), None);
        assert_eq!(loaders.get("fetch_own"), None);
        assert_eq!(loaders.get("fetch_first"), None);
        // Followed up to the depth bound (three calls beyond the repository), not further.
        assert_eq!(loaders.get("deep"), Some(&chat));
        assert_eq!(loaders.get("deeper"), Some(&chat));
        assert_eq!(loaders.get("deepest"), None);
        // A name defined twice is not followed.
        let twice = "def fetch_chat(x):\n    return x\n";
        let loaders = IdLoaders::build([repo, service, twice], &models());
        assert_eq!(loaders.get("fetch_chat"), None);
        assert_eq!(loaders.get("get_by_id"), Some(&chat));
    }

    #[test]
    fn the_ownership_globs_hold_the_model_globs() {
        for g in MODEL_FILE_GLOBS {
            assert!(ownership_file_globs().contains(g));
        }
    }
}
