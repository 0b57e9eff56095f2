//! What the tests that start the binary share: a child process killed when dropped (a failing
//! test leaves no daemon behind), and a free loopback port to give it.

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
