//! Misbehaving loopback servers the [`Sink`](textus_relay::support::sink::Sink) cannot imitate, written
//! on raw TCP: they break HTTP on purpose (half a status line, a reset, an endless body).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a [`RawServer`] treats each connection.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Reads the request head, writes half a status line, then resets the connection.
    ResetMidResponse,
    /// Accepts and never reads or writes anything (until the client gives up).
    Silent,
    /// Answers 500 with a `Content-Length` of this many bytes and streams them until the client
    /// stops reading.
    HugeBody(u64),
}

/// A listener on 127.0.0.1 that misbehaves as its [`Fault`] says. Stops when dropped.
pub struct RawServer {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    /// Body bytes the server managed to write (for [`Fault::HugeBody`]).
    pub written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RawServer {
    pub async fn start(fault: Fault) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let (a, w) = (accepted.clone(), written.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(conn, fault, w.clone()));
            }
        });
        RawServer {
            addr,
            accepted,
            written,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut conn: TcpStream, fault: Fault, written: Arc<AtomicU64>) {
    match fault {
        Fault::Silent => {
            // Hold the connection open, reading (and ignoring) whatever arrives, until the
            // client closes it.
            let mut sink = [0u8; 4096];
            while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Fault::ResetMidResponse => {
            if read_head(&mut conn).await.is_none() {
                return;
            }
            let _ = conn.write_all(b"HTTP/1.1 20").await;
            let _ = conn.flush().await;
            // SO_LINGER 0: closing sends RST instead of FIN.
            let _ = conn.set_zero_linger();
            drop(conn);
        }
        Fault::HugeBody(size) => {
            if read_head(&mut conn).await.is_none() {
                return;
            }
            let head = format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: {size}\r\n\r\n"
            );
            if conn.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if conn.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                written.fetch_add(n as u64, Ordering::SeqCst);
                left -= n as u64;
            }
        }
    }
}

/// Reads until the end of the request head (the body, if any, is left unread).
async fn read_head(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(head)
}
