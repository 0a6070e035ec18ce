//! The SQLite queue on a real full disk (a small tmpfs the test mounts; skipped with the reason printed when
//! mounting is not possible, e.g. without root), a read-only database, and database file modes.

mod fake_github;

use prodaudit::queue::{self, JobStore, NewJob};
use serde_json::json;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn job(delivery: &str, pr: i64, pad: usize) -> NewJob {
    NewJob {
        delivery_id: delivery.into(),
        event: "pull_request".into(),
        installation_id: 1,
        repo: "o/r".into(),
        pr_number: Some(pr),
        head_sha: Some(format!("{pr:040x}")),
        payload: json!({"kind": "audit", "pad": "x".repeat(pad)}),
    }
}

/// A tmpfs of `size` mounted at a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (root needed): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system with one file until it is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = match std::fs::File::create(&path) {
        Ok(f) => f,
        Err(e) => panic!("cannot create the filler: {e}"),
    };
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.flush();
    // Partial chunks, down to single bytes, until nothing fits.
    let mut size = 4096;
    while size > 0 {
        if f.write_all(&chunk[..size]).and_then(|_| f.flush()).is_err() {
            size /= 2;
        }
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_intake_recovers_once_a_full_disk_has_room_again() {
    let disk = match SmallDisk::mount("8m") {
        Ok(d) => d,
        Err(reason) => {
            eprintln!("skipping the full-disk test: {reason}");
            return;
        }
    };
    let db = disk.path().join("q.db");
    let store: Arc<dyn JobStore> = match queue::open(&db.display().to_string()).await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert!(store.enqueue(job("before", 1, 10)).await.is_ok());
    store.writable().await.unwrap_or_else(|e| panic!("{e}"));
    let filler = fill(disk.path());
    // The disk is full: enqueues fail (the webhook gets 503), and readiness says the writer cannot write.
    let mut failed = 0;
    for i in 0..20 {
        if store
            .enqueue(job(&format!("full-{i}"), 100 + i, 256 * 1024))
            .await
            .is_err()
        {
            failed += 1;
        }
    }
    assert!(failed > 0, "the disk never filled up");
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the probe's cached answer
    assert!(
        store.writable().await.is_err(),
        "readiness must report a writer that cannot write"
    );
    // Room again: the next writes succeed, without a restart.
    if let Err(e) = std::fs::remove_file(&filler) {
        panic!("cannot remove the filler: {e}");
    }
    let mut ok = None;
    for attempt in 0..3 {
        match store.enqueue(job("after", 2, 10)).await {
            Ok(e) => {
                ok = Some(e);
                break;
            }
            Err(e) => {
                eprintln!("write {attempt} after freeing space failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(ok.is_some(), "intake stayed wedged after the disk had room");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    store.writable().await.unwrap_or_else(|e| panic!("{e}"));
    let claimed = store.claim("w", Duration::from_secs(60), 10).await;
    assert!(
        matches!(claimed, Ok(Some(_))),
        "claims work again: {claimed:?}"
    );
    store.close().await;
}

/// The database, its WAL and its shared-memory file are created readable by their owner only.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_created_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("q.db");
    for url in [
        db.display().to_string(),
        format!("sqlite://{}?mode=rwc", dir.path().join("u.db").display()),
    ] {
        let store = queue::open(&url).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(store.enqueue(job("d1", 1, 10)).await.is_ok());
        let file = url
            .trim_start_matches("sqlite://")
            .trim_end_matches("?mode=rwc")
            .to_string();
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{file}{suffix}");
            let mode = match std::fs::metadata(&path) {
                Ok(m) => m.permissions().mode() & 0o777,
                Err(e) => panic!("{path}: {e}"),
            };
            assert_eq!(mode, 0o600, "{path} has mode {mode:o}");
        }
        store.close().await;
    }
}

/// A database this process cannot write to (opened read-only) is not ready: /readyz answers 503 (as the
/// webhooks do), instead of 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_read_only_database() {
    use fake_github::harness::{App, Options, get_status};
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("q.db");
    // An existing, migrated database.
    let store = queue::open(&db.display().to_string())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store.close().await;
    let (api, _w) = fake_github::start(fake_github::World::default()).await;
    let app = App::start_with(
        &api,
        &db,
        Options {
            env: vec![(
                "DATABASE_URL".into(),
                format!("sqlite://{}?mode=ro", db.display()),
            )],
            no_wait: true,
            ..Default::default()
        },
    );
    app.wait_listening();
    // Give the server time to open the database; readiness must stay 503 throughout.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        let status = get_status(&format!("{}/readyz", app.url)).ok();
        assert_eq!(status, Some(503), "a read-only database is not ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // It is the write probe that says no (the database itself was opened and answers).
    let (status, body) =
        fake_github::harness::http_request("GET", &format!("{}/readyz", app.url), &[], b"")
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((status, body.trim()), (503, "database not writable"));
}
