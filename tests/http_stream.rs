//! Bodies decoded as they arrive (`rancon::http::decode_streamed`): a body over the limit, a
//! body cut mid-way and a body that is not JSON each fail as what they are, over a real
//! connection with chunked and announced lengths, and a body split in many chunks decodes
//! whole.

#[allow(dead_code)]
mod support;

use rancon::http::{BodyError, StreamError, decode_streamed};
use std::io::Read;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves: reads the request, writes `head` and then `parts`, each flushed separately (so
/// the client sees several chunks), then closes.
async fn serve_once(head: String, parts: Vec<Vec<u8>>) -> String {
    let mut all = vec![head.into_bytes()];
    all.extend(parts);
    let (addr, _) = support::raw::serve(move |_| all.clone()).await;
    format!("http://{addr}/")
}

/// `parts` as HTTP/1.1 chunks, ended properly.
fn chunked(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = parts
        .iter()
        .map(|p| {
            let mut c = format!("{:x}\r\n", p.len()).into_bytes();
            c.extend_from_slice(p);
            c.extend_from_slice(b"\r\n");
            c
        })
        .collect();
    out.push(b"0\r\n\r\n".to_vec());
    out
}

const CHUNKED: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

async fn get(url: &str) -> reqwest::Response {
    let tls = rancon::config::ClientTls::default();
    let client = rancon::http::client(std::time::Duration::from_secs(10), &tls).unwrap();
    client.get(url).send().await.unwrap()
}

fn list(r: &mut dyn Read) -> serde_json::Result<Vec<u32>> {
    serde_json::from_reader(r)
}

#[tokio::test]
async fn a_body_in_many_chunks_decodes_whole() {
    let text: String = format!(
        "[{}]",
        (0..5000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let parts: Vec<&[u8]> = text.as_bytes().chunks(777).collect();
    let url = serve_once(CHUNKED.into(), chunked(&parts)).await;
    let got = decode_streamed(get(&url).await, 1 << 20, list)
        .await
        .unwrap();
    assert_eq!(got, (0..5000).collect::<Vec<u32>>());
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_too_large_not_a_syntax_error() {
    // No Content-Length: only counting what arrives can tell.
    let text = format!("[{}]", vec!["1"; 40_000].join(","));
    let parts: Vec<&[u8]> = text.as_bytes().chunks(4096).collect();
    let url = serve_once(CHUNKED.into(), chunked(&parts)).await;
    let err = decode_streamed(get(&url).await, 10_000, list)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StreamError::Body(BodyError::TooLarge { limit: 10_000 })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_response_size"), "{err}");
}

#[tokio::test]
async fn an_announced_length_over_the_limit_is_refused_before_reading() {
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 999999\r\nConnection: close\r\n\r\n".into();
    let url = serve_once(head, vec![b"[1,2".to_vec()]).await;
    let err = decode_streamed(get(&url).await, 1000, list)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StreamError::Body(BodyError::TooLarge { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_body_cut_mid_way_is_a_broken_connection_not_a_syntax_error() {
    // Announces more than it sends, then closes: the decoder sees the end of input, but the
    // body did not end, so the listing is retried as a transport failure, never read as JSON.
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n".into();
    let url = serve_once(head, vec![b"[1,2,".to_vec()]).await;
    let err = decode_streamed(get(&url).await, 1000, list)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StreamError::Body(BodyError::Broken(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_decode_error() {
    let url = serve_once(CHUNKED.into(), chunked(&[b"[1,", b"x]"])).await;
    let err = decode_streamed(get(&url).await, 1000, list)
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::Decode(_)), "{err:?}");
    // Trailing text after the value is refused too.
    let url = serve_once(CHUNKED.into(), chunked(&[b"[1] [2]"])).await;
    let err = decode_streamed(get(&url).await, 1000, list)
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::Decode(_)), "{err:?}");
}

/// Serves one connection: writes `head` and `first` (one chunk of a chunked body), then holds
/// the connection open without ending the body; reports on `closed` when the client closes it.
async fn serve_and_hold(first: &[u8], closed: tokio::sync::oneshot::Sender<()>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    let mut head = CHUNKED.as_bytes().to_vec();
    head.extend_from_slice(format!("{:x}\r\n", first.len()).as_bytes());
    head.extend_from_slice(first);
    head.extend_from_slice(b"\r\n");
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        s.write_all(&head).await.unwrap();
        // Whatever the client sends now, until it closes.
        while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        let _ = closed.send(());
    });
    url
}

#[tokio::test]
async fn a_body_that_stops_arriving_fails_at_the_request_timeout_as_a_broken_connection() {
    // A whole value, then the body never ends: the decoder waits for what follows the value,
    // and the client's timeout (which covers the body) ends the wait; retried as transport.
    let (tx, _closed) = tokio::sync::oneshot::channel();
    let url = serve_and_hold(b"[1,2]", tx).await;
    let tls = rancon::config::ClientTls::default();
    let client = rancon::http::client(std::time::Duration::from_secs(1), &tls).unwrap();
    let resp = client.get(&url).send().await.unwrap();
    let err = decode_streamed(resp, 1000, list).await.unwrap_err();
    match err {
        StreamError::Body(BodyError::Broken(m)) => assert!(m.contains("timed out"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_decode_given_up_lets_go_of_its_connection() {
    // The caller stops waiting (a watch aborted, a round cancelled): the blocking thread must
    // not keep reading a body that trickles in until the (long) request timeout.
    let (tx, closed) = tokio::sync::oneshot::channel();
    let url = serve_and_hold(b"[1,", tx).await;
    let tls = rancon::config::ClientTls::default();
    let client = rancon::http::client(std::time::Duration::from_secs(3600), &tls).unwrap();
    let resp = client.get(&url).send().await.unwrap();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(decode_streamed(resp, 1000, move |r| {
        let _ = started_tx.send(());
        list(r)
    }));
    started.await.unwrap();
    task.abort();
    // A bound only so a regression fails instead of hanging: the connection closes at once,
    // or (before the fix) at the client's hour-long timeout.
    let done = tokio::time::timeout(std::time::Duration::from_secs(60), closed).await;
    assert!(
        done.is_ok(),
        "the connection stayed open after its decode was given up"
    );
}

#[tokio::test]
async fn deeply_nested_json_is_a_decode_error_not_a_stack_overflow() {
    let deep = "[".repeat(200_000);
    let url = serve_once(CHUNKED.into(), chunked(&[deep.as_bytes()])).await;
    let err = decode_streamed(get(&url).await, 1 << 20, |r| {
        serde_json::from_reader::<_, serde_json::Value>(r)
    })
    .await
    .unwrap_err();
    match err {
        StreamError::Decode(e) => assert!(e.to_string().contains("recursion"), "{e}"),
        other => panic!("{other:?}"),
    }
}
