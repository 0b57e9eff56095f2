//! A real Docker Engine (Debian's `docker.io`) for the docker source's tests: `dockerd` with
//! its own socket, data root, exec root, pidfile and network in a temp directory, `vfs`
//! storage, no iptables, no default bridge; an image imported from a busybox-static rootfs;
//! and a Unix-socket proxy in front of it that can cut the connections or hold back the
//! answers of listings.
//!
//! Each test binary shares one daemon (`shared()`); a test that restarts its daemon starts its
//! own (`Dockerd::start`). Container names are unique per call (`unique`). A daemon dies with
//! its test process: a watchdog shell removes its containers, stops it and deletes its
//! directory once the process is gone.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The image every test container runs: busybox-static as `/bin/*`.
pub const IMAGE: &str = "rancon-busybox:test";
/// The user-defined network test containers join (the daemon has no default bridge).
pub const NETWORK: &str = "rancon-test";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other call in this process returns (`<prefix>-<pid>-<n>`).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Why the Engine cannot run here, when it cannot (the tests then fail with this).
pub fn missing() -> Option<String> {
    for (bin, package) in [("dockerd", "docker.io"), ("busybox", "busybox-static")] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "{bin} not found: install Debian's {package} (.ci/test does)"
            ));
        }
    }
    None
}

/// One `dockerd`.
pub struct Dockerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// Which of this process's daemons (network subnets differ).
    n: usize,
}

/// The daemon this test binary shares.
pub fn shared() -> &'static Dockerd {
    static D: OnceLock<Dockerd> = OnceLock::new();
    D.get_or_init(Dockerd::start)
}

impl Dockerd {
    /// Starts a daemon, imports the image and creates the network.
    pub fn start() -> Self {
        if let Some(why) = missing() {
            panic!("{why}");
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short: a Unix socket path has at most 107 bytes.
        let dir = PathBuf::from(format!("/tmp/rancon-dockerd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = Self {
            socket: dir.join("docker.sock"),
            dir,
            n,
        };
        d.launch();
        d.image();
        // A subnet of its own, so daemons of parallel test binaries do not collide.
        let subnet = format!("10.{}.{}.0/24", 200 + n % 50, std::process::id() % 250);
        d.docker(&["network", "create", "--subnet", &subnet, NETWORK]);
        d
    }

    /// Runs `dockerd` under a watchdog shell that ends it with the test process.
    fn launch(&self) {
        let dir = self.dir.display().to_string();
        let script = r#"
            dir="$1"; shift; pid="$1"; shift
            dockerd "$@" >>"$dir/dockerd.log" 2>&1 &
            d=$!
            echo "$d" > "$dir/dockerd.pid"
            while kill -0 "$pid" 2>/dev/null && kill -0 "$d" 2>/dev/null; do sleep 0.5; done
            if ! kill -0 "$pid" 2>/dev/null; then
                ids=$(docker -H "unix://$dir/docker.sock" ps -aq 2>/dev/null)
                [ -n "$ids" ] && docker -H "unix://$dir/docker.sock" rm -f $ids >/dev/null 2>&1
                kill "$d" 2>/dev/null
                wait "$d"
                umount "$dir/data" 2>/dev/null
                rm -rf "$dir"
            fi
        "#;
        let _ = std::fs::remove_file(&self.socket);
        // Never waited on, on purpose: the watchdog outlives the test process to stop dockerd
        // and remove its data after the tests exit (its parent, init, reaps it).
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args([
                "-c",
                script,
                "watchdog",
                &dir,
                &std::process::id().to_string(),
            ])
            .args([
                &format!("--host=unix://{}", self.socket.display()),
                &format!("--data-root={dir}/data"),
                &format!("--exec-root={dir}/exec"),
                &format!("--pidfile={dir}/docker.pid"),
                &format!(
                    "--containerd-namespace=rancon-{}-{}",
                    std::process::id(),
                    self.n
                ),
                &format!(
                    "--containerd-plugins-namespace=rancon-p-{}-{}",
                    std::process::id(),
                    self.n
                ),
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--shutdown-timeout=2",
                "--log-level=warn",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh");
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .try_docker(&["version", "--format", "{{.Server.Version}}"])
            .is_err()
        {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
                panic!("dockerd did not come up within 60 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `docker import` of a rootfs holding busybox-static and its applets.
    fn image(&self) {
        let root = self.dir.join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::create_dir_all(root.join("www")).unwrap();
        let busybox = String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v busybox"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        std::fs::copy(busybox.trim(), root.join("bin/busybox")).unwrap();
        for applet in [
            "sh", "httpd", "sleep", "test", "touch", "rm", "true", "cat", "nc",
        ] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        let tar = self.dir.join("rootfs.tar");
        let ok = Command::new("tar")
            .args([
                "-C",
                &root.display().to_string(),
                "-cf",
                &tar.display().to_string(),
                ".",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tar of the rootfs failed");
        self.docker(&["import", &tar.display().to_string(), IMAGE]);
        // A dynamically linked busybox (Debian's `busybox`, not `busybox-static`) cannot run
        // in an image without a libc.
        if let Err(e) = self.try_docker(&["run", "--rm", "--network", "none", IMAGE, "/bin/true"]) {
            panic!("the busybox image does not run (is busybox-static installed?): {e}");
        }
    }

    /// `unix://…/docker.sock`.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs the docker CLI against this daemon; `Err` holds its stderr.
    pub fn try_docker(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("docker")
            .arg("-H")
            .arg(self.url())
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs the docker CLI; panics with its stderr when it fails.
    pub fn docker(&self, args: &[&str]) -> String {
        self.try_docker(args)
            .unwrap_or_else(|e| panic!("docker {}: {e}", args.join(" ")))
    }

    /// `docker run -d --init --network rancon-test --name <name> <args> IMAGE <cmd>`: a
    /// container serving HTTP on port 80 unless `cmd` says otherwise. Returns its id.
    pub fn run(&self, name: &str, args: &[&str], cmd: &[&str]) -> String {
        let mut a = vec!["run", "-d", "--init", "--network", NETWORK, "--name", name];
        a.extend_from_slice(args);
        a.push(IMAGE);
        if cmd.is_empty() {
            a.extend_from_slice(&["/bin/httpd", "-f", "-p", "80", "-h", "/www"]);
        } else {
            a.extend_from_slice(cmd);
        }
        self.docker(&a)
    }

    /// The daemon's name, the host identity in ids.
    pub fn host_id(&self) -> String {
        self.docker(&["info", "--format", "{{.Name}}"])
    }

    /// Stops the daemon (SIGTERM) and waits until it has exited. Containers stop with it.
    pub fn stop(&self) {
        let pid = std::fs::read_to_string(self.dir.join("dockerd.pid")).unwrap();
        let pid = pid.trim();
        let _ = Command::new("kill").arg(pid).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(Instant::now() < deadline, "dockerd {pid} did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the daemon again on the same directories.
    pub fn restart(&self) {
        self.launch();
    }
}

/// A Unix-socket proxy in front of a daemon: rancon talks to it; the test can cut every
/// connection (and refuse new ones) or hold back listing answers.
pub struct Proxy {
    pub socket: PathBuf,
    target: PathBuf,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
    conns: Mutex<Vec<tokio::task::AbortHandle>>,
    /// While true, answers to `GET …/containers/json` wait (the daemon has answered already:
    /// the listing is as old as its request).
    hold: tokio::sync::watch::Sender<bool>,
    /// Listings held back so far.
    pub held: AtomicUsize,
}

impl Proxy {
    /// A proxy on `<dir>/proxy-<n>.sock` to `d`.
    pub fn start(d: &Dockerd) -> Self {
        let p = Self {
            socket: d.dir.join(format!(
                "proxy-{}.sock",
                COUNTER.fetch_add(1, Ordering::Relaxed)
            )),
            target: d.socket.clone(),
            state: Arc::default(),
        };
        p.open();
        p
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Listens (again).
    pub fn open(&self) {
        let _ = std::fs::remove_file(&self.socket);
        let listener = tokio::net::UnixListener::bind(&self.socket).unwrap();
        let target = self.target.clone();
        let state = self.state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let conn = tokio::spawn(relay(client, target.clone(), state.clone()));
                let mut conns = state.conns.lock().unwrap();
                conns.retain(|c| !c.is_finished());
                conns.push(conn.abort_handle());
            }
        });
        *self.state.accept.lock().unwrap() = Some(task);
    }

    /// Closes every connection (the event stream included) and refuses new ones.
    pub fn cut(&self) {
        if let Some(t) = self.state.accept.lock().unwrap().take() {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
        for c in self.state.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Holds back the answers of container listings until called with `false`.
    pub fn hold_listings(&self, hold: bool) {
        self.state.hold.send_replace(hold);
    }

    /// Listings held back so far.
    pub fn held(&self) -> usize {
        self.state.held.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn relay(mut client: tokio::net::UnixStream, target: PathBuf, state: Arc<ProxyState>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut server) = tokio::net::UnixStream::connect(&target).await else {
        return;
    };
    // bollard opens one connection per request (no idle pool): the first bytes are the
    // request line.
    let mut head = vec![0u8; 8192];
    let Ok(n) = client.read(&mut head).await else {
        return;
    };
    head.truncate(n);
    if server.write_all(&head).await.is_err() {
        return;
    }
    let line = String::from_utf8_lossy(&head);
    let listing = line.starts_with("GET ")
        && line.split_whitespace().nth(1).is_some_and(|p| {
            p.split('?')
                .next()
                .unwrap_or("")
                .ends_with("/containers/json")
        });
    if listing && *state.hold.borrow() {
        state.held.fetch_add(1, Ordering::Relaxed);
        let _ = state.hold.subscribe().wait_for(|h| !*h).await;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
