//! Whether the ingress port accepts connections yet, for `/readyz`.
//!
//! Pingora starts each service on its own threads, so the admin port can answer before the
//! ingress port is bound: a load balancer (or Kubernetes) told "ready" then would send
//! TextUs's requests to a port that refuses them. Readiness therefore connects to the ingress
//! port itself until that works once; a bound listener stays bound until shutdown, so later
//! probes cost nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cli::dead_letters::reachable;

/// How long one connection attempt may take: loopback answers at once or not at all.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The ingress address and whether a connection to it has succeeded.
#[derive(Debug)]
pub struct IngressProbe {
    address: SocketAddr,
    seen: AtomicBool,
}

impl IngressProbe {
    /// `address` is `listen.address`; one on every address is reached on loopback.
    pub fn new(address: SocketAddr) -> IngressProbe {
        IngressProbe {
            address: reachable(address),
            seen: AtomicBool::new(false),
        }
    }

    /// Whether the ingress port accepts connections.
    pub async fn listening(&self) -> bool {
        if self.seen.load(Ordering::Relaxed) {
            return true;
        }
        let connected = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(self.address),
        )
        .await
        .is_ok_and(|c| c.is_ok());
        if connected {
            self.seen.store(true, Ordering::Relaxed);
        }
        connected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listening_once_a_port_accepts_and_not_before() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = free.local_addr().expect("addr");
        drop(free);
        let probe = IngressProbe::new(address);
        assert!(!probe.listening().await, "nothing listens yet");
        let _listener = tokio::net::TcpListener::bind(address)
            .await
            .expect("rebind");
        assert!(probe.listening().await);
    }
}
