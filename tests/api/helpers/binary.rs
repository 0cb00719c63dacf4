//! The real binary as a child process, for what only a process can show: SIGKILL, start-up
//! failures, the log it writes.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{Place, SECRET, WAIT, WsClient, in_an_hour, sign};

/// The real binary as a child process (for crash tests: it can be killed with SIGKILL).
/// `SWITCHBOARD_BIN` picks the binary (the test script points it at the release build);
/// otherwise the one cargo built for these tests.
pub struct BinaryServer {
    child: std::process::Child,
    pub addr: SocketAddr,
    /// Every line the server wrote to stderr, kept by a thread that drains the pipe.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    drain: Option<std::thread::JoinHandle<()>>,
}

impl BinaryServer {
    /// Starts the binary on `db_path` with extra environment, and waits for its listen line.
    pub async fn start(db_path: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_at(&Place::Sqlite(db_path.to_path_buf()), env).await
    }

    /// Starts the binary on the data at `place`.
    pub async fn start_at(place: &Place, env: &[(&str, &str)]) -> Self {
        let binary = std::env::var("SWITCHBOARD_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").to_string());
        Self::start_program_at(Path::new(&binary), place, env).await
    }

    /// Starts any program that serves the gateway (the binary, or an example embedding it).
    pub async fn start_program(program: &Path, db_path: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_program_at(program, &Place::Sqlite(db_path.to_path_buf()), env).await
    }

    async fn start_program_at(program: &Path, place: &Place, env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut command = std::process::Command::new(program);
        command
            .env_clear()
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", place.url())
            .env("JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the binary starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (listening, found) = tokio::sync::oneshot::channel();
        let drain = std::thread::spawn({
            let log = log.clone();
            move || {
                // Keeps draining after the listen line so the child never blocks on a full
                // pipe; ends when the child exits.
                let mut listening = Some(listening);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = parse_listen_line(&line)
                        && let Some(tx) = listening.take()
                    {
                        let _ = tx.send(addr);
                    }
                    log.lock().expect("log lines").push(line);
                }
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(30), found).await {
            Ok(Ok(addr)) => addr,
            _ => {
                // Not left running behind the failed test.
                let _ = child.kill();
                let _ = child.wait();
                panic!("no listen line in: {:#?}", log.lock().expect("log lines"))
            }
        };
        Self {
            child,
            addr,
            log,
            drain: Some(drain),
        }
    }

    /// SIGKILL, then everything the server logged.
    pub fn kill_and_read_log(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
        self.log.lock().expect("log lines").clone()
    }

    /// Connects as `sub` with role USER, passing `query` (e.g. `&lastMessageId=5`).
    pub async fn user(&self, sub: &str, query: &str) -> WsClient {
        self.connect_as(sub, "USER", query).await
    }

    /// Connects as `sub` with `role`.
    pub async fn user_with_role(&self, sub: &str, role: &str) -> WsClient {
        self.connect_as(sub, role, "").await
    }

    async fn connect_as(&self, sub: &str, role: &str, query: &str) -> WsClient {
        let token = sign(
            Algorithm::HS256,
            &json!({"sub": sub, "username": sub, "role": role, "exp": in_an_hour()}),
        );
        self.connect_with(&token, query).await
    }

    /// Connects with `token` in `?token=`, passing `query` too.
    pub async fn connect_with(&self, token: &str, query: &str) -> WsClient {
        let url = format!("ws://{}/ws?token={token}{query}", self.addr);
        let request = url.into_client_request().expect("request");
        let (stream, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake in time")
            .expect("connects");
        WsClient { stream }
    }

    /// Like [`BinaryServer::connect_with`], but a refused handshake is an error naming it.
    pub async fn try_connect_with(&self, token: &str, query: &str) -> Result<WsClient, String> {
        try_connect_at(self.addr, token, query).await
    }

    /// Sends `signal` (`TERM`, `STOP`, `CONT`, ...) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} {}", self.child.id());
    }

    /// Waits at most `bound` for the process to exit (fails the test if it does not).
    pub async fn exits_within(&mut self, bound: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        super::eventually(bound, "the process exits", async || {
            child.try_wait().expect("the child's status")
        })
        .await
    }

    /// Waits at most `bound` for a log line containing `text` (fails the test if none).
    pub async fn logs_within(&self, text: &str, bound: Duration) {
        let what = format!("a log line with {text:?}");
        super::eventually(bound, &what, async || {
            self.log_lines().iter().any(|line| line.contains(text))
        })
        .await;
    }

    /// Every line logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lines").clone()
    }

    /// SIGKILL: nothing gets to clean up.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's stderr line that says where it listens.
pub fn parse_listen_line(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on http://").nth(1)?;
    // Up to whatever ends the address: a space, or the quote of a JSON log line.
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A `/ws` connection to the gateway at `addr` with `token`, passing `query` too; a refused
/// handshake is an error naming it.
pub async fn try_connect_at(
    addr: SocketAddr,
    token: &str,
    query: &str,
) -> Result<WsClient, String> {
    let url = format!("ws://{addr}/ws?token={token}{query}");
    let request = url.into_client_request().map_err(|e| e.to_string())?;
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((stream, _))) => Ok(WsClient { stream }),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no handshake in time".into()),
    }
}
