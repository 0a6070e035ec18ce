//! C5: a synchronous database driver (psycopg2/psycopg, PyMySQL, pymongo, redis-py's sync client), or the
//! synchronous client of a hosted service's SDK (Supabase, Qdrant, boto3), used inside `async def`.
//!
//! The clients are recognised by how they are made, resolved through the file's imports: `psycopg2.connect(...)`,
//! `pymongo.MongoClient(...)`, `redis.Redis(...)` / `redis.from_url(...)` (not `redis.asyncio`), or a parameter
//! annotated with one of their classes. Names bound to a client at module level, on `self`, or in the function,
//! and what is derived from them (`conn.cursor()`, `client.db.users`, `r.pipeline()`), are followed; a call on
//! them that talks to the server is reported. An awaited call is never reported.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::drivers::{DriverTracker, Family};
use crate::analysis::semantic::python::roles::is_startup_function;
use crate::analysis::semantic::python::syntax::{has_error, is_async_def};

/// A synchronous client of one family (database drivers, or service SDKs) used in `async def`.
pub struct SyncDriverInAsync {
    pub family: Family,
}

pub static SYNC_DB_DRIVER: SyncDriverInAsync = SyncDriverInAsync {
    family: Family::Database,
};
pub static SYNC_SDK_CLIENT: SyncDriverInAsync = SyncDriverInAsync {
    family: Family::Sdk,
};

impl Check for SyncDriverInAsync {
    fn id(&self) -> &'static str {
        match self.family {
            Family::Database => "sync-db-driver-in-async",
            Family::Sdk => "sync-sdk-client-in-async",
        }
    }

    fn tokens(&self) -> &'static [&'static str] {
        match self.family {
            Family::Database => &["psycopg", "pymysql", "pymongo", "redis"],
            Family::Sdk => &["supabase", "qdrant_client", "boto3"],
        }
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let tracker = DriverTracker::of_file(ctx, root);
        if !tracker.active_for(self.family) {
            return;
        }
        for func in ctx
            .of_kind(root, "function_definition")
            .iter()
            .filter(|n| is_async_def(n))
        {
            if is_startup_function(func) {
                continue;
            }
            for u in tracker.blocking_uses(func, true) {
                if u.family != self.family || has_error(&u.call) {
                    continue;
                }
                out.push(CheckMatch {
                    fix: None,
                    range: u.call.range(),
                    message: Some(u.message),
                });
            }
        }
    }
}
