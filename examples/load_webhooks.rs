//! Load client for `bench/load.sh`: sends signed `pull_request synchronize` webhooks (distinct delivery ids,
//! pull requests and heads) to a running `prodaudit serve` on loopback, over keep-alive HTTP/1.1 connections,
//! bounded in count and in time, and prints one JSON line: acknowledged, failed, rate and latency percentiles.
//!
//! ```text
//! cargo run --release --example load_webhooks -- URL SECRET [REQUESTS] [CONNECTIONS] [MAX_SECONDS] [RUN_ID]
//! ```
//!
//! Only loopback targets are accepted. `LOAD_LATENCY_LOG=FILE` also writes each request's send time and
//! latency to FILE.

use std::time::{Duration, Instant};

use prodaudit::server::signature::sign;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Default)]
struct Outcome {
    acknowledged: u64,
    refused: u64,
    errors: u64,
    latencies: Vec<Duration>,
    /// When each answered request was sent, beside `latencies`.
    sent_at: Vec<Instant>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: load_webhooks URL SECRET [REQUESTS] [CONNECTIONS] [MAX_SECONDS] [RUN_ID]";
    let url = args.get(1).ok_or_else(|| anyhow::anyhow!(usage))?;
    let secret = args.get(2).ok_or_else(|| anyhow::anyhow!(usage))?;
    let arg = |i: usize, default: u64| -> anyhow::Result<u64> {
        args.get(i)
            .map(|v| v.parse::<u64>())
            .transpose()
            .map_err(|e| anyhow::anyhow!("argument {i}: {e}; {usage}"))
            .map(|v| v.unwrap_or(default))
    };
    let requests = arg(3, 20_000)?.min(1_000_000);
    let connections = arg(4, 32)?.clamp(1, 1024);
    let max_time = Duration::from_secs(arg(5, 60)?.clamp(1, 600));
    let run_id = args.get(6).cloned().unwrap_or_else(|| "load".to_string());

    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// loopback URLs: {url}"))?;
    let (host, path) = match rest.split_once('/') {
        Some((host, path)) => (host.to_string(), format!("/{path}")),
        None => (rest.to_string(), "/".to_string()),
    };
    let addr: std::net::SocketAddr = host
        .parse()
        .map_err(|e| anyhow::anyhow!("{host} is not IP:PORT: {e}"))?;
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "refusing to load {addr}: loopback only"
    );

    // Build every request before the clock starts, so the client's signing does not compete with the server.
    let bodies: Vec<Vec<u8>> = (0..requests)
        .map(|i| request_bytes(&host, &path, secret, &run_id, i))
        .collect();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let started_wall = std::time::SystemTime::now();
    let outcome = runtime.block_on(run(addr, bodies, connections, max_time))?;
    let elapsed = started.elapsed();
    if let Ok(path) = std::env::var("LOAD_LATENCY_LOG") {
        // One line per answered request: Unix time it was sent (s) and its latency (ms), to line slow
        // requests up with the server's log.
        let base = started_wall
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut text = String::new();
        for (at, latency) in outcome.sent_at.iter().zip(&outcome.latencies) {
            let t = base + at.duration_since(started);
            text.push_str(&format!(
                "{:.6} {:.3}\n",
                t.as_secs_f64(),
                latency.as_secs_f64() * 1000.0
            ));
        }
        std::fs::write(&path, text)?;
    }
    let mut latencies = outcome.latencies;
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i.min(latencies.len() - 1)].as_secs_f64() * 1000.0
    };
    println!(
        "{{\"sent\":{},\"acknowledged\":{},\"refused\":{},\"errors\":{},\"seconds\":{:.3},\"accepted_per_s\":{:.0},\"p50_ms\":{:.2},\"p90_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2},\"connections\":{}}}",
        latencies.len() as u64 + outcome.errors,
        outcome.acknowledged,
        outcome.refused,
        outcome.errors,
        elapsed.as_secs_f64(),
        outcome.acknowledged as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        connections,
    );
    Ok(())
}

fn request_bytes(host: &str, path: &str, secret: &str, run_id: &str, i: u64) -> Vec<u8> {
    let body = serde_json::json!({
        "action": "synchronize",
        "installation": {"id": 1000 + i % 20},
        "repository": {"full_name": format!("load/repo{}", i % 50)},
        "pull_request": {
            "number": i + 1,
            "state": "open",
            "draft": false,
            "head": {"sha": format!("{:040x}", i + 1)},
            "base": {"sha": "0000000000000000000000000000000000000000", "ref": "main"},
        },
        "sender": {"login": "load", "type": "User"},
    })
    .to_string();
    let signature = sign(secret.as_bytes(), body.as_bytes());
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nUser-Agent: GitHub-Hookshot/load\r\n\
         X-GitHub-Event: pull_request\r\nX-GitHub-Delivery: {run_id}-{i}\r\nX-Hub-Signature-256: {signature}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

async fn run(
    addr: std::net::SocketAddr,
    requests: Vec<Vec<u8>>,
    connections: u64,
    max_time: Duration,
) -> anyhow::Result<Outcome> {
    let deadline = tokio::time::Instant::now() + max_time;
    let queue = std::sync::Arc::new(std::sync::Mutex::new(requests.into_iter()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let queue = queue.clone();
        tasks.spawn(async move { connection(addr, queue, deadline).await });
    }
    let mut total = Outcome::default();
    for outcome in tasks.join_all().await {
        total.acknowledged += outcome.acknowledged;
        total.refused += outcome.refused;
        total.errors += outcome.errors;
        total.latencies.extend(outcome.latencies);
        total.sent_at.extend(outcome.sent_at);
    }
    Ok(total)
}

type Queue = std::sync::Arc<std::sync::Mutex<std::vec::IntoIter<Vec<u8>>>>;

/// One keep-alive connection sending requests one after another until the queue or the time runs out.
async fn connection(
    addr: std::net::SocketAddr,
    queue: Queue,
    deadline: tokio::time::Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let next = queue.lock().ok().and_then(|mut q| q.next());
        let Some(request) = next else { break };
        let started = Instant::now();
        let sent = tokio::time::timeout_at(deadline, async {
            if stream.is_none() {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                stream = Some(s);
            }
            let Some(s) = stream.as_mut() else {
                return Err(std::io::Error::other("no connection"));
            };
            s.write_all(&request).await?;
            read_response(s, &mut buf).await
        })
        .await;
        match sent {
            Ok(Ok(status)) => {
                outcome.latencies.push(started.elapsed());
                outcome.sent_at.push(started);
                if (200..300).contains(&status) {
                    outcome.acknowledged += 1;
                } else {
                    outcome.refused += 1;
                }
            }
            Ok(Err(_)) | Err(_) => {
                outcome.errors += 1;
                stream = None;
            }
        }
    }
    outcome
}

/// Reads one response (headers and a `Content-Length` body); returns its status.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| std::io::Error::other("no status line"))?;
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::other("connection closed mid-body"));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
