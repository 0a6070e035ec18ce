//! Sync database drivers: the clients of psycopg2/psycopg, PyMySQL, pymongo and redis-py's sync client a file
//! makes (resolved through its imports), the names bound to them, and the calls on them that talk to the server.

use super::imports::Imports;
use super::scopes::is_module_level;
use super::scopes::{OwnNodes, own_nodes};
use super::syntax::{dotted, is_awaited};
use super::text::{Cut, shorten};
use crate::analysis::nodes::PyNode;
use std::collections::HashMap;

/// What a name holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A DB-API connection of the named driver.
    SqlConn(&'static str),
    SqlCursor(&'static str),
    SqlPool(&'static str),
    Redis,
    RedisPipeline,
    RedisPubSub,
    /// A pymongo client, database or collection.
    Mongo,
}

/// The client a resolved constructor name makes.
fn constructor_kind(resolved: &str) -> Option<Kind> {
    Some(match resolved {
        "psycopg2.connect" => Kind::SqlConn("psycopg2"),
        "psycopg.connect" | "psycopg.Connection.connect" => Kind::SqlConn("psycopg"),
        "pymysql.connect" | "pymysql.Connect" | "pymysql.connections.Connection" => {
            Kind::SqlConn("PyMySQL")
        }
        "psycopg2.pool.SimpleConnectionPool" | "psycopg2.pool.ThreadedConnectionPool" => {
            Kind::SqlPool("psycopg2")
        }
        "pymongo.MongoClient" | "pymongo.mongo_client.MongoClient" => Kind::Mongo,
        "redis.Redis"
        | "redis.StrictRedis"
        | "redis.client.Redis"
        | "redis.client.StrictRedis"
        | "redis.from_url"
        | "redis.Redis.from_url"
        | "redis.StrictRedis.from_url"
        | "redis.RedisCluster"
        | "redis.cluster.RedisCluster"
        | "redis.RedisCluster.from_url" => Kind::Redis,
        _ => return None,
    })
}

/// The client a resolved annotation names.
fn annotation_kind(resolved: &str) -> Option<Kind> {
    Some(match resolved {
        "psycopg2.extensions.connection" => Kind::SqlConn("psycopg2"),
        "psycopg2.extensions.cursor" => Kind::SqlCursor("psycopg2"),
        "psycopg.Connection" => Kind::SqlConn("psycopg"),
        "psycopg.Cursor" => Kind::SqlCursor("psycopg"),
        "pymongo.MongoClient"
        | "pymongo.mongo_client.MongoClient"
        | "pymongo.database.Database"
        | "pymongo.collection.Collection" => Kind::Mongo,
        "redis.Redis" | "redis.StrictRedis" | "redis.client.Redis" | "redis.RedisCluster" => {
            Kind::Redis
        }
        _ => return None,
    })
}

/// Does calling method `m` on a `kind` talk to the server?
fn is_io_method(kind: Kind, m: &str) -> bool {
    match kind {
        Kind::SqlConn(_) => matches!(
            m,
            "execute" | "executemany" | "commit" | "rollback" | "callproc"
        ),
        Kind::SqlCursor(_) => matches!(
            m,
            "execute"
                | "executemany"
                | "callproc"
                | "copy_expert"
                | "copy_from"
                | "copy_to"
                | "copy"
        ),
        Kind::SqlPool(_) => m == "getconn",
        Kind::Redis => !matches!(
            m,
            "pipeline"
                | "pubsub"
                | "lock"
                | "register_script"
                | "get_encoder"
                | "get_connection_kwargs"
                | "set_response_callback"
                | "close"
                | "from_url"
                | "monitor"
        ),
        Kind::RedisPipeline => matches!(m, "execute" | "watch"),
        Kind::RedisPubSub => matches!(
            m,
            "subscribe"
                | "psubscribe"
                | "unsubscribe"
                | "punsubscribe"
                | "get_message"
                | "listen"
                | "ping"
        ),
        Kind::Mongo => matches!(
            m,
            "find"
                | "find_one"
                | "find_one_and_update"
                | "find_one_and_delete"
                | "find_one_and_replace"
                | "insert_one"
                | "insert_many"
                | "update_one"
                | "update_many"
                | "replace_one"
                | "delete_one"
                | "delete_many"
                | "aggregate"
                | "count_documents"
                | "estimated_document_count"
                | "distinct"
                | "bulk_write"
                | "create_index"
                | "create_indexes"
                | "drop_index"
                | "drop"
                | "list_collection_names"
                | "list_database_names"
                | "list_indexes"
                | "command"
                | "server_info"
                | "watch"
                | "drop_database"
                | "drop_collection"
                | "create_collection"
        ),
    }
}

/// What calling `m` on a `kind` returns, when that is a client object too.
fn derived_kind(kind: Kind, m: &str) -> Option<Kind> {
    match (kind, m) {
        (Kind::SqlConn(d), "cursor") => Some(Kind::SqlCursor(d)),
        (Kind::SqlConn(d), "execute") => Some(Kind::SqlCursor(d)),
        (Kind::SqlPool(d), "getconn") => Some(Kind::SqlConn(d)),
        (Kind::Redis, "pipeline") => Some(Kind::RedisPipeline),
        (Kind::Redis, "pubsub") => Some(Kind::RedisPubSub),
        (
            Kind::Mongo,
            "get_database" | "get_collection" | "get_default_database" | "with_options",
        ) => Some(Kind::Mongo),
        _ => None,
    }
}

fn describe(kind: Kind) -> String {
    match kind {
        Kind::SqlConn(d) | Kind::SqlCursor(d) | Kind::SqlPool(d) => {
            format!("talks to the database through {d}, a synchronous driver,")
        }
        Kind::Redis | Kind::RedisPipeline | Kind::RedisPubSub => {
            "is a command on a synchronous redis-py client (not `redis.asyncio`)".into()
        }
        Kind::Mongo => "queries MongoDB through synchronous pymongo".into(),
    }
}

fn advice(kind: Kind) -> &'static str {
    match kind {
        Kind::SqlConn(_) | Kind::SqlCursor(_) | Kind::SqlPool(_) => {
            "use an async driver (asyncpg, psycopg's `AsyncConnection`, SQLAlchemy `AsyncSession`) and `await` it"
        }
        Kind::Redis | Kind::RedisPipeline | Kind::RedisPubSub => {
            "use `redis.asyncio.Redis` and `await` the command"
        }
        Kind::Mongo => "use `pymongo.AsyncMongoClient` (or Motor) and `await` the call",
    }
}

/// Strip `Optional[...]`, `Annotated[X, ...]`, `X | None` and generic arguments from an annotation.
fn annotation_core(text: &str) -> String {
    let mut t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    loop {
        let before = t.clone();
        for wrapper in [
            "Annotated[",
            "Optional[",
            "typing.Optional[",
            "typing.Annotated[",
        ] {
            if let Some(rest) = t.strip_prefix(wrapper) {
                t = rest.to_string();
                if t.ends_with(']') {
                    t.pop();
                }
            }
        }
        if let Some(first) = t.split([',', '|']).next() {
            t = first.to_string();
        }
        if t == before {
            break;
        }
    }
    match t.find('[') {
        Some(i) => t[..i].to_string(),
        None => t,
    }
}

/// Follows names bound to sync database clients in one file.
pub struct DriverTracker<'a> {
    imports: &'a Imports,
    /// Bindings visible everywhere: module-level names and `self.<attr>`.
    global: HashMap<String, Kind>,
}

impl<'a> DriverTracker<'a> {
    pub fn new(root: &PyNode<'_>, imports: &'a Imports) -> Self {
        let mut t = DriverTracker {
            imports,
            global: HashMap::new(),
        };
        if !imports.uses_any(&["psycopg2", "psycopg", "pymysql", "pymongo", "redis"]) {
            return t;
        }
        // Two passes, so that `db = client.app` after `client = MongoClient()` is seen in either order.
        for _ in 0..2 {
            for node in root.dfs().filter(|n| n.kind() == "assignment") {
                let Some(left) = node.field("left") else {
                    continue;
                };
                let Some(name) = dotted(&left) else { continue };
                let global = is_module_level(&node) || name.starts_with("self.");
                if !global {
                    continue;
                }
                if let Some(right) = node.field("right")
                    && let Some(k) = t.kind_of(&right, &t.global)
                {
                    t.global.insert(name, k);
                }
            }
        }
        t
    }

    pub fn active(&self) -> bool {
        self.imports
            .uses_any(&["psycopg2", "psycopg", "pymysql", "pymongo", "redis"])
    }

    /// The client kind of an expression, given the bindings in scope.
    fn kind_of(&self, expr: &PyNode<'_>, scope: &HashMap<String, Kind>) -> Option<Kind> {
        self.kind_at(expr, scope, 0)
    }

    /// [`Self::kind_of`] `depth` links down a chain (`a.b().c()[0]…`): chains longer than any real code give up
    /// rather than recurse without bound.
    fn kind_at(
        &self,
        expr: &PyNode<'_>,
        scope: &HashMap<String, Kind>,
        depth: usize,
    ) -> Option<Kind> {
        if depth > super::MAX_CHAIN {
            return None;
        }
        match expr.kind().as_ref() {
            "identifier" | "attribute" => {
                if let Some(name) = dotted(expr)
                    && let Some(k) = scope.get(&name)
                {
                    return Some(*k);
                }
                if expr.kind() == "attribute" {
                    let obj = expr.field("object")?;
                    if self.kind_at(&obj, scope, depth + 1) == Some(Kind::Mongo) {
                        return Some(Kind::Mongo);
                    }
                }
                None
            }
            "subscript" => {
                let value = expr.field("value")?;
                (self.kind_at(&value, scope, depth + 1) == Some(Kind::Mongo)).then_some(Kind::Mongo)
            }
            "call" => {
                if is_awaited(expr) {
                    return None;
                }
                let func = expr.field("function")?;
                if let Some(name) = dotted(&func) {
                    let first = name.split('.').next().unwrap_or("");
                    if self.imports.binds(first)
                        && let Some(k) = constructor_kind(&self.imports.resolve(&name))
                    {
                        return Some(k);
                    }
                }
                if func.kind() == "attribute" {
                    let obj = func.field("object")?;
                    let m = func.field("attribute")?.text().to_string();
                    let k = self.kind_at(&obj, scope, depth + 1)?;
                    return derived_kind(k, &m);
                }
                None
            }
            "parenthesized_expression" => self.kind_at(&expr.child(1)?, scope, depth + 1),
            _ => None,
        }
    }

    /// The bindings in scope inside `func`: the global ones, shadowed or extended by its parameters and its
    /// own assignments and `with ... as` targets.
    fn scope_of(&self, func: &PyNode<'_>) -> HashMap<String, Kind> {
        let mut scope = self.global.clone();
        if let Some(params) = func.field("parameters") {
            for p in params.children() {
                let (name, ty) = match p.kind().as_ref() {
                    "typed_parameter" => (p.child(0), p.field("type")),
                    "typed_default_parameter" => (p.field("name"), p.field("type")),
                    "identifier" => (Some(p.clone()), None),
                    "default_parameter" => (p.field("name"), None),
                    _ => (None, None),
                };
                let Some(name) = name else { continue };
                let name = name.text().to_string();
                let kind = ty.and_then(|ty| {
                    let core = annotation_core(&ty.text());
                    let first = core.split('.').next().unwrap_or("");
                    if !self.imports.binds(first) {
                        return None;
                    }
                    annotation_kind(&self.imports.resolve(&core))
                });
                match kind {
                    Some(k) => scope.insert(name, k),
                    None => scope.remove(&name),
                };
            }
        }
        let nodes = own_nodes(func, OwnNodes::BodyNamed);
        // Flow-insensitive: a name assigned a client anywhere in the function holds it; a global name only
        // ever assigned something else here is shadowed.
        let mut shadowed: Vec<String> = Vec::new();
        for pass in 0..2 {
            for node in &nodes {
                let (target, value) = match node.kind().as_ref() {
                    "assignment" => (node.field("left"), node.field("right")),
                    "as_pattern" => (node.field("alias"), node.child(0)),
                    "for_statement" => (node.field("left"), None),
                    _ => continue,
                };
                let Some(target) = target else { continue };
                let name = if target.kind() == "as_pattern_target" {
                    target.child(0).and_then(|c| dotted(&c))
                } else {
                    dotted(&target)
                };
                let Some(name) = name else { continue };
                match value.and_then(|v| self.kind_of(&v, &scope)) {
                    Some(k) => {
                        scope.insert(name, k);
                    }
                    None if pass == 0 => shadowed.push(name),
                    None => {}
                }
            }
            if pass == 0 {
                for name in &shadowed {
                    if scope.get(name) == self.global.get(name) {
                        scope.remove(name);
                    }
                }
            }
        }
        scope
    }

    /// Calls in `func`'s own body that block on a sync client, with a description. With `with_constructors`,
    /// also the constructor calls that matter there (a connect, or a client whose uses are not reported).
    pub fn blocking_uses<'r>(
        &self,
        func: &PyNode<'r>,
        with_constructors: bool,
    ) -> Vec<DriverUse<'r>> {
        let mut out = Vec::new();
        if !self.active() {
            return out;
        }
        let scope = self.scope_of(func);
        let nodes = own_nodes(func, OwnNodes::BodyNamed);
        let mut used_roots: Vec<String> = Vec::new();
        for call in nodes.iter().filter(|n| n.kind() == "call") {
            if is_awaited(call) {
                continue;
            }
            let Some(f) = call.field("function") else {
                continue;
            };
            if f.kind() != "attribute" {
                continue;
            }
            let (Some(obj), Some(m)) = (f.field("object"), f.field("attribute")) else {
                continue;
            };
            let m = m.text().to_string();
            let Some(kind) = self.kind_of(&obj, &scope) else {
                continue;
            };
            if !is_io_method(kind, &m) {
                continue;
            }
            if let Some(root) = dotted(&obj) {
                used_roots.push(root);
            }
            out.push(DriverUse {
                call: call.clone(),
                what: format!("{}.{m}", shorten(&obj.text(), Cut::NAME)),
                message: format!(
                    "`{}.{m}(…)` {} inside `async def`: the event loop waits for the server; {}",
                    shorten(&obj.text(), Cut::NAME),
                    describe(kind),
                    advice(kind)
                ),
            });
        }
        // Constructors: a connect blocks by itself; a lazy client (redis, pymongo) is reported where it is
        // made only when none of its uses in this function was.
        for call in nodes.iter().filter(|n| n.kind() == "call") {
            if is_awaited(call) {
                continue;
            }
            let Some(f) = call.field("function") else {
                continue;
            };
            let Some(name) = dotted(&f) else { continue };
            let first = name.split('.').next().unwrap_or("");
            if !self.imports.binds(first) {
                continue;
            }
            let Some(kind) = constructor_kind(&self.imports.resolve(&name)) else {
                continue;
            };
            let connects = matches!(kind, Kind::SqlConn(_) | Kind::SqlPool(_));
            if !connects && !with_constructors {
                continue;
            }
            if !connects {
                let bound = bound_name(call);
                if bound.is_some_and(|b| used_roots.contains(&b)) {
                    continue;
                }
                // Its result used directly (`redis.Redis().get(k)`) is reported as a use.
                if call.parent().is_some_and(|p| p.kind() == "attribute") {
                    continue;
                }
            }
            let msg = if connects {
                format!(
                    "`{name}(…)` opens a database connection with a synchronous driver inside `async def`: the event loop waits for the connect and every query on it; {}",
                    advice(kind)
                )
            } else {
                format!(
                    "`{name}(…)` creates a synchronous client inside `async def`: every command on it blocks the event loop; {}",
                    advice(kind)
                )
            };
            out.push(DriverUse {
                call: call.clone(),
                what: name,
                message: msg,
            });
        }
        out
    }
}

/// A call on a sync database client.
pub struct DriverUse<'r> {
    pub call: PyNode<'r>,
    /// The callee, e.g. `cache.get`.
    pub what: String,
    /// The finding's message.
    pub message: String,
}

/// The name a call's result is bound to (`x = call()` / `with call() as x`).
fn bound_name(call: &PyNode<'_>) -> Option<String> {
    let p = call.parent()?;
    match p.kind().as_ref() {
        "assignment" => dotted(&p.field("left")?),
        "as_pattern" => dotted(&p.field("alias")?.child(0)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_cores() {
        assert_eq!(annotation_core("Optional[redis.Redis]"), "redis.Redis");
        assert_eq!(annotation_core("Redis | None"), "Redis");
        assert_eq!(
            annotation_core("Annotated[Redis, Depends(get_redis)]"),
            "Redis"
        );
        assert_eq!(annotation_core("Collection[dict]"), "Collection");
    }
}
