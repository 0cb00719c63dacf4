//! A TCP relay a test can cut and restore: a network failure between one process and a
//! service, without touching the service other tests share.

use std::net::SocketAddr;

/// A TCP relay on a loopback port to `target` that a test can cut (every relayed connection
/// dropped, new ones refused) and restore: a network failure between one process and a
/// service, without touching the service others share.
pub struct TcpProxy {
    pub addr: SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    relays: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts relaying to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let relays = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let (cut, relays) = (cut.clone(), relays.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::Acquire) {
                        // Refused: closed at once.
                        continue;
                    }
                    let relay = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    relays.lock().expect("relays").push(relay);
                }
            }
        });
        Self {
            addr,
            cut,
            relays,
            accept,
        }
    }

    /// Drops every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::Release);
        for relay in self.relays.lock().expect("relays").drain(..) {
            relay.abort();
        }
    }

    /// Relays again.
    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
