//! Bodies decoded as they arrive (`rancon::http::decode_streamed`): a body over the limit, a
//! body cut mid-way and a body that is not JSON each fail as what they are, over a real
//! connection with chunked and announced lengths, and a body split in many chunks decodes
//! whole.

use rancon::http::{BodyError, StreamError, decode_streamed};
use std::io::Read;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves one connection: reads the request, writes `head` and then `parts`, each flushed
/// separately (so the client sees several chunks), then closes.
async fn serve_once(head: String, parts: Vec<Vec<u8>>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        s.write_all(head.as_bytes()).await.unwrap();
        for p in parts {
            if s.write_all(&p).await.is_err() {
                return;
            }
            let _ = s.flush().await;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    });
    url
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
