//! What the tests that start the binary share: a child process killed when dropped (a failing
//! test leaves no daemon behind), a free loopback port to give it, and its round count.

/// A started `rancon` (or any process), killed and reaped when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it; the listener closes at
/// once, so whoever binds it next must be told).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `rancon_rounds_total` (counted when a round ends) of the daemon serving on `port`.
pub async fn rounds(port: u16) -> f64 {
    let text = rancon::http::client(std::time::Duration::from_secs(10), &Default::default())
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("rancon_rounds_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rancon_rounds_total in {text}"))
}

/// Waits until the daemon serving on `port` has ended `n` rounds, for at most 30 s.
pub async fn rounds_reach(port: u16, n: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while rounds(port).await < n {
        assert!(std::time::Instant::now() < deadline, "never: {n} rounds");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
