//! Cluster mode: where the NATS bus is, and whether it is there.

use std::time::Duration;

/// `NATS_URL` for the nodes a test starts: the environment's, else the local server.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// Whether the NATS server of [`nats_url`] accepts a TCP connection. When it does not, says
/// so loudly (`SKIPPED <test>: NATS not reachable at ...`) and returns false, except with
/// `CI=true`, where that fails the test.
pub fn nats_reachable(test: &str) -> bool {
    use std::io::Write as _;
    use std::net::ToSocketAddrs;
    let url = nats_url();
    // nats://[user:password@]host:port[,...]: the first server of the list.
    let first = url.split(',').next().unwrap_or_default();
    let rest = first.split_once("://").map_or(first, |(_, rest)| rest);
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host_port = host_port.trim_end_matches('/');
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:4222")
    };
    let reached = host_port
        .to_socket_addrs()
        .map_err(|e| e.to_string())
        .and_then(|addrs| {
            let mut last = String::from("no address");
            for addr in addrs {
                match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(last)
        });
    match reached {
        Ok(()) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("NATS is not reachable at {url} and CI=true: {e}")
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "\n!! SKIPPED {test}: NATS not reachable at {url} ({e}); with CI=true this fails !!\n"
            );
            false
        }
    }
}
