//! A raw HTTP server on loopback for hostile answers no double gives: each connection's
//! request is read, `answer` gives the bytes to write (in parts, each flushed apart so the
//! client sees several chunks), and the connection is closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves every connection with `answer(request text)`; returns the address and a count of
/// the requests read.
pub async fn serve<F>(answer: F) -> (std::net::SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(&str) -> Vec<Vec<u8>> + Send + Sync + 'static,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let (seen, answer) = (count.clone(), Arc::new(answer));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (seen, answer) = (seen.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                if n > 0 {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                for part in answer(&String::from_utf8_lossy(&buf[..n])) {
                    if s.write_all(&part).await.is_err() {
                        return;
                    }
                    let _ = s.flush().await;
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, count)
}

/// `serve` with one fixed answer.
pub async fn canned(answer: String) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    serve(move |_| vec![answer.clone().into_bytes()]).await
}
