//! The docker source against fake Engines (Unix sockets answering what a real daemon of the
//! version under test would not): an API older than 1.23, an event stream that floods.

use rancon::source::{Source, SourceConfig};
use rancon::watch::Wake;
use std::time::Duration;

fn source(lines: &str) -> Box<dyn Source> {
    let cfg: SourceConfig = toml::from_str(&format!("type = \"docker\"\n{lines}")).unwrap();
    let common = rancon::build::Config::default().common();
    rancon::source::build("docker", &cfg, &common).unwrap()
}

/// Waits for a wake matching `want` on `rx`.
async fn wake(rx: &mut rancon::watch::WakeRx, what: &str, want: impl Fn(&Wake) -> bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if want(&rx.recv().await.expect("the watch ended")) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no wake: {what}"));
}

/// A fake Engine on a Unix socket: each request is answered `200` with `answer(request line)`,
/// and the connection closed. For what a real daemon of this version will not do.
fn fake_engine(sock: &std::path::Path, answer: fn(&str) -> String) {
    let listener = tokio::net::UnixListener::bind(sock).unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let body = answer(req.lines().next().unwrap_or(""));
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
}

/// Inspects the flooding fake Engine answered.
static FLOOD_INSPECTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// An event stream that floods (20,000 events at once, more than the watch queues) and ends:
/// events are being lost, so the watch drops its view and reconnects at once, without first
/// inspecting the thousands still queued (during which a view missing the lost events would
/// stand in for a listing).
#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_stream_is_given_up_at_once_not_after_inspecting_its_backlog() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("flood.sock");
    fake_engine(&sock, |req| {
        if req.contains("/version") {
            r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#.into()
        } else if req.contains("/info") {
            r#"{"Name":"flood","SystemTime":"2026-01-01T00:00:00.000000000Z"}"#.into()
        } else if req.contains("/events") {
            (0..20_000)
                .map(|i| {
                    format!(
                        r#"{{"Type":"container","Action":"start","Actor":{{"ID":"c{i}","Attributes":{{}}}},"time":1}}"#
                    ) + "\n"
                })
                .collect()
        } else {
            FLOOD_INSPECTS.fetch_add(1, Ordering::SeqCst);
            r#"{"Id":"c0","State":{"Running":false}}"#.into()
        }
    });
    let src = source(&format!(
        "url = \"unix://{}\"\nhost_address = \"127.0.0.1\"\n",
        sock.display()
    ));
    let (tx, mut rx) = rancon::watch::channel();
    let task = src.watch(tx).unwrap();
    let resync = |w: &Wake| matches!(w, Wake::Resync { .. });
    wake(&mut rx, "the first connect", resync).await;
    wake(&mut rx, "the reconnect after the flood", resync).await;
    let inspected = FLOOD_INSPECTS.load(Ordering::SeqCst);
    task.abort();
    assert!(
        inspected < 2_000,
        "{inspected} inspects of a backlog the reconnect's listing replaces"
    );
}

/// An Engine older than API 1.23 lists containers without `State` (moby
/// `docs/api/version-history.md`, v1.23: "GET /containers/json returns the state"). Not saying
/// is not "stopped": the container is inspected and registered, never left out (which would
/// deregister it).
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_without_states_is_inspected_not_taken_for_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("old.sock");
    fake_engine(&sock, |req| {
        let id = "0123456789ab0123456789ab";
        if req.contains("/version") {
            r#"{"ApiVersion":"1.22","Version":"1.10.3"}"#.into()
        } else if req.contains("/info") {
            r#"{"Name":"old-host"}"#.into()
        } else if req.contains("/containers/json") {
            format!(
                r#"[{{"Id":"{id}","Names":["/web"],"Image":"nginx","Status":"Up 2 hours","Labels":{{"rancon":""}},
                   "Ports":[{{"PrivatePort":80,"PublicPort":8080,"IP":"127.0.0.1","Type":"tcp"}}]}}]"#
            )
        } else if req.contains(&format!("/containers/{id}/json")) {
            format!(
                r#"{{"Id":"{id}","Name":"/web","State":{{"Running":true,"Paused":false,"Restarting":false}},
                   "Config":{{"Image":"nginx","Labels":{{"rancon":""}}}},"HostConfig":{{"NetworkMode":"default"}},
                   "NetworkSettings":{{"Ports":{{"80/tcp":[{{"HostIp":"127.0.0.1","HostPort":"8080"}}]}}}}}}"#
            )
        } else {
            r#"{"message":"page not found"}"#.into()
        }
    });
    let old = source(&format!(
        "url = \"unix://{}\"\nhost_address = \"127.0.0.1\"\n",
        sock.display()
    ));
    let (eps, skipped) = old.fetch().await.unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        eps.iter().map(|e| e.prop("port")).collect::<Vec<_>>(),
        ["8080"],
        "the running container is registered"
    );
}
