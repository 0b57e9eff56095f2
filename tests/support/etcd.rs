//! A real etcd (Debian's `etcd-server`, installed by `.ci/run`) on free loopback ports with a
//! temporary data directory, stopped when dropped. Plus a few JSON-gateway helpers.

use super::process::free_port;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub struct EtcdServer {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    pub url: String,
    http: reqwest::Client,
}

impl EtcdServer {
    /// Starts etcd; a start that dies (a port taken between choosing and binding it, when
    /// tests run in parallel) is retried on new ports.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// `start` with more etcd flags (e.g. `--max-txn-ops`).
    pub async fn start_with(extra: &[&str]) -> Self {
        let http = rancon::http::client(Duration::from_secs(5), &Default::default()).unwrap();
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let (client, peer) = (free_port(), free_port());
            let url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = dir.path().join("etcd.log");
            let child = std::process::Command::new("etcd")
                .args([
                    "--name",
                    "test",
                    "--data-dir",
                    &dir.path().join("data").display().to_string(),
                    "--listen-client-urls",
                    &url,
                    "--advertise-client-urls",
                    &url,
                    "--listen-peer-urls",
                    &peer_url,
                    "--initial-advertise-peer-urls",
                    &peer_url,
                    "--initial-cluster",
                    &format!("test={peer_url}"),
                    "--log-level",
                    "warn",
                ])
                .args(extra)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("etcd not installed: apt-get install -y etcd-server");
            let mut server = Self {
                child,
                _dir: dir,
                url,
                http: http.clone(),
            };
            // A loaded 2-core CI machine can take a while to fsync etcd's first WAL.
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                if server
                    .call("kv/range", json!({"key": B64.encode("x")}), None)
                    .await
                    .is_ok()
                {
                    return server;
                }
                if server.child.try_wait().unwrap().is_some() {
                    eprintln!(
                        "etcd exited at start, retrying on other ports: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("etcd failed to start five times");
    }

    pub async fn call(
        &self,
        path: &str,
        body: Value,
        token: Option<&str>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .post(format!("{}/v3/{path}", self.url))
            .json(&body);
        if let Some(t) = token {
            req = req.header("Authorization", t);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    }

    /// Every key under `prefix` → (value, lease), and the store's revision.
    pub async fn range(
        &self,
        prefix: &str,
        token: Option<&str>,
    ) -> (Vec<(String, Value, String)>, i64) {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().unwrap() += 1;
        let v = self
            .call(
                "kv/range",
                json!({"key": B64.encode(prefix), "range_end": B64.encode(end)}),
                token,
            )
            .await
            .unwrap();
        let rev = v["header"]["revision"].as_str().unwrap().parse().unwrap();
        let kvs = v["kvs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|kv| {
                let key =
                    String::from_utf8(B64.decode(kv["key"].as_str().unwrap()).unwrap()).unwrap();
                let value = B64.decode(kv["value"].as_str().unwrap_or("")).unwrap();
                let value = serde_json::from_slice(&value)
                    .unwrap_or(Value::String(String::from_utf8_lossy(&value).into()));
                (key, value, kv["lease"].as_str().unwrap_or("0").to_string())
            })
            .collect();
        (kvs, rev)
    }

    /// The value of one key as text, `None` when absent.
    pub async fn get(&self, key: &str) -> Option<String> {
        let v = self
            .call("kv/range", json!({"key": B64.encode(key)}), None)
            .await
            .unwrap();
        let value = v["kvs"].get(0)?["value"].as_str().unwrap_or("").to_string();
        Some(String::from_utf8(B64.decode(value).unwrap()).unwrap())
    }

    /// The store's revision: it moves with every write, and only then.
    pub async fn revision(&self) -> i64 {
        self.range("/", None).await.1
    }

    pub async fn put(&self, key: &str, value: &str, token: Option<&str>) {
        self.call(
            "kv/put",
            json!({"key": B64.encode(key), "value": B64.encode(value)}),
            token,
        )
        .await
        .unwrap();
    }

    /// Enables auth with `root` and a user `rancon` that may read and write under `prefix`.
    pub async fn enable_auth(&self, prefix: &str, password: &str) {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().unwrap() += 1;
        for (path, body) in [
            (
                "auth/user/add",
                json!({"name": "root", "password": "rootpw"}),
            ),
            ("auth/user/grant", json!({"user": "root", "role": "root"})),
            ("auth/role/add", json!({"name": "rancon"})),
            (
                "auth/role/grant",
                json!({"name": "rancon", "perm": {"permType": "READWRITE", "key": B64.encode(prefix), "range_end": B64.encode(&end)}}),
            ),
            (
                "auth/user/add",
                json!({"name": "rancon", "password": password}),
            ),
            (
                "auth/user/grant",
                json!({"user": "rancon", "role": "rancon"}),
            ),
            ("auth/enable", json!({})),
        ] {
            self.call(path, body, None)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    pub async fn token(&self, user: &str, password: &str) -> String {
        let v = self
            .call(
                "auth/authenticate",
                json!({"name": user, "password": password}),
                None,
            )
            .await
            .unwrap();
        v["token"].as_str().unwrap().to_string()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
