//! Sync database drivers and service SDK clients: the clients of psycopg2/psycopg, PyMySQL, pymongo and
//! redis-py's sync client, and the synchronous clients of Supabase, Qdrant and boto3 (AWS), a file makes (resolved
//! through its imports), the names bound to them, and the calls on them that talk to the server.

use super::imports::Imports;
use super::scopes::{OwnNodes, Owner, def_owner, is_module_level, own_nodes};
use super::syntax::{decorators, dotted, function_name, is_async_def, is_awaited};
use super::text::{Cut, shorten};
use crate::analysis::context::FileContext;
use crate::analysis::nodes::PyNode;
use std::collections::HashMap;
use std::rc::Rc;

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
    /// A synchronous Supabase client (`create_client`, `Client`), and what it hands out: a query builder
    /// (`table(…)`, `rpc(…)`, run by `execute()`), its auth API, its storage API and a storage bucket.
    Supabase,
    SupabaseQuery,
    SupabaseAuth,
    SupabaseStorage,
    SupabaseBucket,
    /// A synchronous `QdrantClient`.
    Qdrant,
    /// A boto3 session, low-level client, resource, and a resource's object (`s3.Bucket(…)`, `ddb.Table(…)`).
    Boto3Session,
    Boto3Client,
    Boto3Resource,
    Boto3Object,
}

/// Which detector a client belongs to: database drivers, or the SDK clients of hosted services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Database,
    Sdk,
}

impl Kind {
    fn family(self) -> Family {
        match self {
            Kind::SqlConn(_)
            | Kind::SqlCursor(_)
            | Kind::SqlPool(_)
            | Kind::Redis
            | Kind::RedisPipeline
            | Kind::RedisPubSub
            | Kind::Mongo => Family::Database,
            _ => Family::Sdk,
        }
    }
}

/// The modules whose clients are followed, by family.
fn family_modules(family: Family) -> &'static [&'static str] {
    match family {
        Family::Database => &["psycopg2", "psycopg", "pymysql", "pymongo", "redis"],
        Family::Sdk => &["supabase", "qdrant_client", "boto3", "mypy_boto3"],
    }
}

/// The synchronous Supabase client's class, by every name it is imported under.
const SUPABASE_CLIENT_CLASSES: &[&str] = &[
    "supabase.Client",
    "supabase.SyncClient",
    "supabase.client.Client",
    "supabase.client.SyncClient",
    "supabase._sync.client.SyncClient",
];

/// The synchronous Qdrant client's class.
const QDRANT_CLIENT_CLASSES: &[&str] = &[
    "qdrant_client.QdrantClient",
    "qdrant_client.qdrant_client.QdrantClient",
];

/// The SDK client classes a name made by a constructor or written as a type may be (shared by both).
fn sdk_class_kind(resolved: &str) -> Option<Kind> {
    if SUPABASE_CLIENT_CLASSES.contains(&resolved) {
        Some(Kind::Supabase)
    } else if QDRANT_CLIENT_CLASSES.contains(&resolved) {
        Some(Kind::Qdrant)
    } else if resolved == "boto3.client" {
        Some(Kind::Boto3Client)
    } else {
        None
    }
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
        "supabase.create_client"
        | "supabase.client.create_client"
        | "supabase._sync.client.create_client" => Kind::Supabase,
        "boto3.resource" => Kind::Boto3Resource,
        "boto3.Session" | "boto3.session.Session" => Kind::Boto3Session,
        other => return sdk_class_kind(other),
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
        // The type stubs of boto3 clients (`mypy_boto3_s3.S3Client`, `mypy_boto3_s3.client.S3Client`).
        t if t.starts_with("mypy_boto3_") && t.ends_with("Client") => Kind::Boto3Client,
        // Supabase's and Qdrant's client classes, and `boto3.client` written as a type.
        other => return sdk_class_kind(other),
    })
}

/// What reading attribute `a` of a `kind` gives, when that is a client object too (`client.db.users`,
/// `supabase.auth`, `supabase.storage`, `supabase.auth.admin`).
fn attribute_kind(kind: Kind, a: &str) -> Option<Kind> {
    match (kind, a) {
        (Kind::Mongo, _) => Some(Kind::Mongo),
        (Kind::Supabase, "auth") | (Kind::SupabaseAuth, "admin") => Some(Kind::SupabaseAuth),
        (Kind::Supabase, "storage") => Some(Kind::SupabaseStorage),
        _ => None,
    }
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
        // The builder only sends the request when it is executed.
        Kind::SupabaseQuery => m == "execute",
        Kind::SupabaseAuth => matches!(
            m,
            "sign_up"
                | "sign_in_with_password"
                | "sign_in_with_otp"
                | "sign_in_with_id_token"
                | "sign_in_anonymously"
                | "sign_out"
                | "get_user"
                | "get_claims"
                | "update_user"
                | "refresh_session"
                | "set_session"
                | "exchange_code_for_session"
                | "verify_otp"
                | "resend"
                | "reset_password_email"
                | "reset_password_for_email"
                | "create_user"
                | "delete_user"
                | "get_user_by_id"
                | "list_users"
                | "update_user_by_id"
                | "invite_user_by_email"
                | "generate_link"
        ),
        Kind::SupabaseStorage => matches!(
            m,
            "list_buckets"
                | "get_bucket"
                | "create_bucket"
                | "update_bucket"
                | "delete_bucket"
                | "empty_bucket"
        ),
        Kind::SupabaseBucket => matches!(
            m,
            "upload"
                | "update"
                | "download"
                | "remove"
                | "list"
                | "move"
                | "copy"
                | "info"
                | "exists"
                | "create_signed_url"
                | "create_signed_urls"
                | "create_signed_upload_url"
                | "upload_to_signed_url"
        ),
        Kind::Qdrant => matches!(
            m,
            "search"
                | "search_batch"
                | "search_groups"
                | "query"
                | "query_batch"
                | "query_points"
                | "query_batch_points"
                | "query_points_groups"
                | "recommend"
                | "recommend_batch"
                | "recommend_groups"
                | "discover"
                | "discover_batch"
                | "scroll"
                | "count"
                | "facet"
                | "retrieve"
                | "upsert"
                | "add"
                | "delete"
                | "update_vectors"
                | "delete_vectors"
                | "set_payload"
                | "overwrite_payload"
                | "delete_payload"
                | "clear_payload"
                | "batch_update_points"
                | "upload_points"
                | "upload_records"
                | "upload_collection"
                | "get_collection"
                | "get_collections"
                | "collection_exists"
                | "create_collection"
                | "recreate_collection"
                | "update_collection"
                | "delete_collection"
                | "get_aliases"
                | "get_collection_aliases"
                | "update_collection_aliases"
                | "create_payload_index"
                | "delete_payload_index"
                | "create_snapshot"
                | "list_snapshots"
                | "delete_snapshot"
                | "recover_snapshot"
        ),
        // Every operation of a low-level client is a request, but for what only builds or signs locally.
        Kind::Boto3Client => !matches!(
            m,
            "get_paginator"
                | "get_waiter"
                | "can_paginate"
                | "close"
                | "generate_presigned_url"
                | "generate_presigned_post"
        ),
        Kind::Boto3Session | Kind::Boto3Resource | Kind::Supabase => false,
        Kind::Boto3Object => matches!(
            m,
            "put"
                | "get"
                | "delete"
                | "load"
                | "reload"
                | "copy"
                | "copy_from"
                | "upload_file"
                | "upload_fileobj"
                | "download_file"
                | "download_fileobj"
                | "delete_objects"
                | "put_item"
                | "get_item"
                | "update_item"
                | "delete_item"
                | "query"
                | "scan"
                | "send_message"
                | "send_messages"
                | "receive_messages"
                | "publish"
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
        (Kind::Supabase, "table" | "from_" | "rpc") => Some(Kind::SupabaseQuery),
        (Kind::Supabase, "schema") => Some(Kind::Supabase),
        // Every builder step (`select`, `eq`, `order`, `single`, …) returns the builder.
        (Kind::SupabaseQuery, m) if m != "execute" => Some(Kind::SupabaseQuery),
        (Kind::SupabaseStorage, "from_") => Some(Kind::SupabaseBucket),
        (Kind::Boto3Session, "client") => Some(Kind::Boto3Client),
        (Kind::Boto3Session, "resource") => Some(Kind::Boto3Resource),
        // `s3.Bucket(name)`, `bucket.Object(key)`, `dynamodb.Table(name)`: local handles, their methods send.
        (Kind::Boto3Resource | Kind::Boto3Object, m) if m.starts_with(char::is_uppercase) => {
            Some(Kind::Boto3Object)
        }
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
        Kind::Supabase
        | Kind::SupabaseQuery
        | Kind::SupabaseAuth
        | Kind::SupabaseStorage
        | Kind::SupabaseBucket => {
            "is an HTTP request of the synchronous Supabase client (`create_client`, not `acreate_client`)".into()
        }
        Kind::Qdrant => {
            "is a request of the synchronous `QdrantClient` (not `AsyncQdrantClient`)".into()
        }
        Kind::Boto3Session | Kind::Boto3Client | Kind::Boto3Resource | Kind::Boto3Object => {
            "is a blocking AWS API request through boto3".into()
        }
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
        Kind::Supabase
        | Kind::SupabaseQuery
        | Kind::SupabaseAuth
        | Kind::SupabaseStorage
        | Kind::SupabaseBucket => {
            "use the async client (`await acreate_client(…)`) and `await` the call, or run it with `await asyncio.to_thread(…)`"
        }
        Kind::Qdrant => "use `AsyncQdrantClient` and `await` the call",
        Kind::Boto3Session | Kind::Boto3Client | Kind::Boto3Resource | Kind::Boto3Object => {
            "run it with `await asyncio.to_thread(…)` (or use aioboto3)"
        }
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

/// Follows names bound to sync database and SDK clients in one file; built once per file
/// ([`DriverTracker::of_file`]) and read by every C5 check that needs it.
pub struct DriverTracker {
    imports: Rc<Imports>,
    /// Bindings visible everywhere: module-level names and `self.<attr>` (assigned, annotated in the class
    /// body, or a property that returns a client).
    global: HashMap<String, Kind>,
    /// Functions of the file that hand out an SDK client (`def get_s3() -> boto3.client`, `return
    /// create_client(…)`): module-level ones by name, methods as `self.<name>`.
    factories: HashMap<String, Kind>,
}

/// Is `node` (an assignment) a statement of a class body (`client: boto3.client`)?
fn in_class_body(node: &PyNode<'_>) -> bool {
    node.parent()
        .filter(|p| p.kind() == "expression_statement")
        .and_then(|p| p.parent())
        .filter(|b| b.kind() == "block")
        .and_then(|b| b.parent())
        .is_some_and(|c| c.kind() == "class_definition")
}

/// The key a function is called by: its name at module level, `self.<name>` for a method; `None` for a nested
/// function. Also whether it is a property (read as an attribute).
fn function_key(func: &PyNode<'_>) -> Option<(String, bool)> {
    let name = function_name(func)?;
    match def_owner(func) {
        Owner::Module => Some((name, false)),
        Owner::Class(_) => {
            let property = decorators(func)
                .iter()
                .any(|d| d.text().contains("property"));
            Some((format!("self.{name}"), property))
        }
        Owner::Function => None,
    }
}

impl DriverTracker {
    /// The file's tracker, built on first use and shared by the checks that read it.
    pub fn of_file<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> Rc<Self> {
        ctx.memo(root, || DriverTracker::new(root, ctx.imports(root)))
    }

    pub fn new(root: &PyNode<'_>, imports: Rc<Imports>) -> Self {
        let mut t = DriverTracker {
            imports,
            global: HashMap::new(),
            factories: HashMap::new(),
        };
        if !t.active() {
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
        // Class-level annotations (`client: boto3.client`, a dataclass field) type `self.<name>`.
        for node in root.dfs().filter(|n| n.kind() == "assignment") {
            let (Some(left), Some(ty)) = (node.field("left"), node.field("type")) else {
                continue;
            };
            if !in_class_body(&node) {
                continue;
            }
            if let (Some(name), Some(k)) = (dotted(&left), t.annotated(&ty)) {
                t.global.entry(format!("self.{name}")).or_insert(k);
            }
        }
        // Factories: a sync function whose return annotation is an SDK client, or that returns one (a local, a
        // global it initialises lazily, a constructor). Two passes: a factory may return another's result. Only
        // in files that import an SDK (the pass reads every function's scope).
        let passes = if t.active_for(Family::Sdk) { 2 } else { 0 };
        for _ in 0..passes {
            for func in root.dfs().filter(|n| n.kind() == "function_definition") {
                if is_async_def(&func) {
                    continue;
                }
                let Some((key, property)) = function_key(&func) else {
                    continue;
                };
                if t.factories.contains_key(&key) {
                    continue;
                }
                let kind = func
                    .field("return_type")
                    .and_then(|ty| t.annotated(&ty))
                    .or_else(|| {
                        let scope = t.scope_of(&func);
                        own_nodes(&func, OwnNodes::BodyNamed)
                            .iter()
                            .filter(|n| n.kind() == "return_statement")
                            .find_map(|r| {
                                r.children()
                                    .find(|c| c.kind() != "return")
                                    .and_then(|v| t.kind_of(&v, &scope))
                            })
                    });
                // SDK clients only: redis clients handed out by a factory were, at first contact (calibration,
                // session 18), one-command heartbeats and cache reads on worker loops — 1 of 14 judged right.
                if let Some(k) = kind.filter(|k| k.family() == Family::Sdk) {
                    if property {
                        t.global.entry(key.clone()).or_insert(k);
                    }
                    t.factories.insert(key, k);
                }
            }
        }
        t
    }

    /// The client an annotation names (`boto3.client`, `Optional[QdrantClient]`), resolved through the imports.
    fn annotated(&self, ty: &PyNode<'_>) -> Option<Kind> {
        let core = annotation_core(&ty.text());
        let first = core.split('.').next().unwrap_or("");
        if !self.imports.binds(first) {
            return None;
        }
        annotation_kind(&self.imports.resolve(&core))
    }

    /// Does the file import any module whose clients are followed?
    pub fn active(&self) -> bool {
        self.active_for(Family::Database) || self.active_for(Family::Sdk)
    }

    /// Does the file import a module of this family?
    pub fn active_for(&self, family: Family) -> bool {
        self.imports.uses_any(family_modules(family))
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
                    let a = expr.field("attribute")?.text().to_string();
                    return attribute_kind(self.kind_at(&obj, scope, depth + 1)?, &a);
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
                    if let Some(k) = self.factories.get(&name) {
                        return Some(*k);
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
                let kind = ty.and_then(|ty| self.annotated(&ty));
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
                family: kind.family(),
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
            // Making an SDK client sends nothing; its requests are what block.
            if (!connects && !with_constructors) || kind.family() == Family::Sdk {
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
                family: kind.family(),
                call: call.clone(),
                what: name,
                message: msg,
            });
        }
        out
    }
}

/// A call on a sync database or SDK client.
pub struct DriverUse<'r> {
    /// Database driver or service SDK: they are reported by different detectors.
    pub family: Family,
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
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    /// The callees of the blocking uses the tracker finds in each `async def` of `code`, by family.
    fn uses_in(code: &str) -> Vec<(Family, String)> {
        let doc = Lang::Python.ast_grep(code);
        let root = doc.root();
        let tracker = DriverTracker::of_file(&FileContext::detached(), &root);
        root.dfs()
            .filter(|n| n.kind() == "function_definition" && is_async_def(n))
            .flat_map(|f| {
                tracker
                    .blocking_uses(&f, true)
                    .into_iter()
                    .map(|u| (u.family, u.what))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn sdk_clients_from_factories_properties_and_class_annotations() {
        let code = "\
import boto3
import redis
from dataclasses import dataclass
from supabase import Client

_sb = None

def get_supabase():
    global _sb
    if _sb is None:
        _sb = Client(URL, KEY)
    return _sb

def get_s3() -> boto3.client:
    return make()

def get_redis():
    return redis.Redis.from_url(URL)

async def get_async_s3():
    return boto3.client('s3')

@dataclass
class Upload:
    client: boto3.client

    async def send(self, body):
        self.client.upload_fileobj(body, 'b', 'k')
        self.client.generate_presigned_url('get_object')

class Store:
    @property
    def bucket(self):
        return boto3.resource('s3').Bucket('b')

    async def put(self, key, body):
        self.bucket.Object(key).put(Body=body)

async def route(email, password):
    get_supabase().auth.sign_in_with_password({'email': email, 'password': password})
    get_supabase().table('t').select('*').eq('id', 1).execute()
    get_supabase().storage.from_('b').get_public_url('k')
    get_s3().put_object(Bucket='b', Key='k')
    get_redis().get('k')
    (await get_async_s3()).put_object(Bucket='b', Key='k')
";
        let found = uses_in(code);
        let mut sdk: Vec<&str> = found
            .iter()
            .filter(|(f, _)| *f == Family::Sdk)
            .map(|(_, w)| w.as_str())
            .collect();
        sdk.sort_unstable();
        assert_eq!(
            sdk,
            [
                "get_s3().put_object",
                "get_supabase().auth.sign_in_with_password",
                "get_supabase().table('t').select('*').e….execute",
                "self.bucket.Object(key).put",
                "self.client.upload_fileobj",
            ],
            "{found:?}"
        );
        // A redis client handed out by a factory is not followed (one-command heartbeats at first contact).
        assert!(found.iter().all(|(f, _)| *f == Family::Sdk), "{found:?}");
    }

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
