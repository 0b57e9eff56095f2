//! Decoding a JSON response body as it arrives, never holding the body whole.
//!
//! A listing answer is the largest thing rancon reads: at 20,000 services a Consul agent's
//! `/v1/agent/services` is 8 MB of JSON and a Rancher page of 3,000 services more. Read into
//! one buffer and then decoded, the buffer and what it decodes into are held together, which
//! made the body most of a round's peak memory. Here the decoder (serde_json over a
//! `std::io::Read`) runs on a blocking thread and pulls the body through tokio-util's bridge,
//! so only the chunks in flight are held.

use super::BodyError;
use futures::{StreamExt, TryStreamExt};
use std::io::Read;

/// Why a streamed body did not decode.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The body could not be read whole (too large, connection lost).
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The body is not what the decoder expects.
    #[error("{0}")]
    Decode(serde_json::Error),
}

/// Decodes `resp`'s body of at most `limit` bytes with `decode`, which must read it to its
/// end (serde_json's `from_reader` does: it checks nothing follows the value).
pub async fn decode_streamed<T, F>(
    resp: reqwest::Response,
    limit: u64,
    decode: F,
) -> Result<T, StreamError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Read) -> serde_json::Result<T> + Send + 'static,
{
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit }.into());
    }
    // Dropped with this future (a watch aborted, a round given up): the body then ends at
    // once, so the blocking thread stops and the connection goes, instead of reading on
    // until the request's timeout (for a watch, over a minute) for nobody.
    let (_given_up, stop) = futures::channel::oneshot::channel::<()>();
    let body = resp
        .bytes_stream()
        .map_err(|e| std::io::Error::other(super::describe(&e.without_url())))
        .take_until(stop);
    // Built here: the bridge keeps the runtime's handle to drive the body from its thread.
    let bridge = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body));
    // Buffered outside the limit: serde_json reads byte by byte.
    let mut reader = std::io::BufReader::with_capacity(
        64 * 1024,
        Limited {
            inner: bridge,
            limit,
            left: limit,
            failed: None,
        },
    );
    let (decoded, failed) = tokio::task::spawn_blocking(move || {
        let out = decode(&mut reader);
        (out, reader.into_inner().failed)
    })
    .await
    .map_err(|e| BodyError::Broken(format!("decoding stopped: {e}")))?;
    match (decoded, failed) {
        // What the reader saw wins: a cut body also fails the decoder, as a syntax error.
        (_, Some(f)) => Err(f.into()),
        (Ok(t), None) => Ok(t),
        (Err(e), None) => Err(StreamError::Decode(e)),
    }
}

/// A reader that stops after `left` bytes and remembers why reading failed.
struct Limited<R> {
    inner: R,
    limit: u64,
    left: u64,
    failed: Option<BodyError>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte past the limit is enough to know the body is larger.
        let room = usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX);
        let want = buf.len().min(room);
        match self.inner.read(&mut buf[..want]) {
            Ok(n) if n as u64 > self.left => {
                self.failed = Some(BodyError::TooLarge { limit: self.limit });
                Err(std::io::Error::other("response body too large"))
            }
            Ok(n) => {
                self.left -= n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = Some(BodyError::Broken(e.to_string()));
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn limited(body: &[u8], left: u64) -> Limited<Cursor<Vec<u8>>> {
        Limited {
            inner: Cursor::new(body.to_vec()),
            limit: left,
            left,
            failed: None,
        }
    }

    #[test]
    fn a_body_within_the_limit_reads_whole() {
        let mut r = limited(b"[1,2,3]", 7);
        let v: Vec<u8> = serde_json::from_reader(&mut r).unwrap();
        assert_eq!(v, [1, 2, 3]);
        assert!(r.failed.is_none());
    }

    #[test]
    fn a_body_one_byte_over_the_limit_fails_as_too_large() {
        let mut r = limited(b"[1,2,3]", 6);
        assert!(serde_json::from_reader::<_, Vec<u8>>(&mut r).is_err());
        assert!(matches!(r.failed, Some(BodyError::TooLarge { .. })));
    }
}
