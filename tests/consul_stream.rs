//! Hostile Consul answers to a streamed listing (`consul::Api::get_streamed`): a cut body is a
//! transport failure retried a bounded number of times, a 200 that is not the answer is a
//! decode failure never retried, and a 200 echoing the token never puts it in a message.

#[allow(dead_code)]
mod support;

use rancon::config::Secret;
use rancon::config::secret::SecretSource;
use rancon::consul::Api;
use rancon::error::BackendError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const TOKEN: &str = "b1e3c5f0-token-never-shown-0d1840c";

/// Answers every connection with `answer` (whole HTTP response) and closes; counts requests.
async fn server(answer: String) -> (String, Arc<AtomicUsize>) {
    let (addr, count) = support::raw::canned(answer).await;
    (format!("http://{addr}"), count)
}

fn api() -> Api {
    let http =
        rancon::http::client(std::time::Duration::from_secs(10), &Default::default()).unwrap();
    Api::new(
        "consul",
        http,
        None,
        SecretSource::new(Some(Secret::new(TOKEN)), None),
        1 << 20,
    )
}

async fn list(url: &str) -> Result<serde_json::Value, BackendError> {
    api()
        .get_streamed(
            "list services",
            &format!("{url}/v1/agent/services"),
            &[],
            |r| serde_json::from_reader(r),
        )
        .await
}

#[tokio::test]
async fn a_listing_cut_mid_body_is_a_transport_failure_retried_twice_then_given_up() {
    let (url, count) = server(
        "HTTP/1.1 200 OK\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{\"a\": {\"ID\": \"a\""
            .into(),
    )
    .await;
    let err = list(&url).await.unwrap_err();
    assert!(matches!(err, BackendError::Transport { .. }), "{err:?}");
    // `http::retry_policy`: two more attempts, no more.
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_200_that_is_not_the_answer_is_a_decode_failure_not_retried() {
    let body = "rpc error: No cluster leader";
    let (url, count) = server(format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
    .await;
    let err = list(&url).await.unwrap_err();
    assert!(matches!(err, BackendError::Decode { .. }), "{err:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_200_echoing_the_token_never_shows_it_in_the_error() {
    // A proxy or a hostile server answering with what it was sent: serde_json's message
    // quotes a mistyped string value whole.
    for body in [
        format!(r#"{{"X-Consul-Token": "{TOKEN}"}}"#),
        format!(r#"{{"a": 1, "b": "Bearer {TOKEN}"}}"#),
    ] {
        let (url, _) = server(format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
        .await;
        let err = api()
            .get_streamed(
                "list services",
                &format!("{url}/v1/agent/services"),
                &[],
                |r| serde_json::from_reader::<_, std::collections::BTreeMap<String, u32>>(r),
            )
            .await
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(matches!(err, BackendError::Decode { .. }), "{err:?}");
        assert!(!text.contains(TOKEN), "{text}");
    }
}
