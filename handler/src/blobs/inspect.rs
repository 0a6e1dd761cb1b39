//! Checks a body while it streams to (or from) storage: its size against the limit, its SHA-256,
//! and its first bytes for the type sniffer. Nothing is buffered but those first bytes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};

use super::{BlobError, ByteStream};
use crate::domain::file_kind::{ContentKind, SNIFF_BYTES};
use crate::domain::record::{Inspected, Sha256Hex};

#[derive(Default)]
struct Tally {
    size: u64,
    hasher: Sha256,
    head: Vec<u8>,
}

/// What the stream saw, read once it has ended.
pub struct Inspection(Arc<Mutex<Tally>>);

impl Inspection {
    pub fn finish(self) -> Inspected {
        let tally = match Arc::try_unwrap(self.0) {
            Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
            // The stream is still alive somewhere: read what it has seen so far.
            Err(shared) => {
                let t = shared.lock().unwrap_or_else(|p| p.into_inner());
                Tally { size: t.size, hasher: t.hasher.clone(), head: t.head.clone() }
            }
        };
        Inspected {
            size: tally.size,
            sha256: Sha256Hex::of_digest(&tally.hasher.finalize()),
            kind: ContentKind::sniff(&tally.head, tally.head.len() < SNIFF_BYTES),
        }
    }
}

/// `early`: abandon the body (an error ends the stream, so storage keeps nothing) as soon as
/// its first bytes show a type we do not keep, instead of storing it first.
pub fn inspect(body: ByteStream, limit: u64, early: bool) -> (ByteStream, Inspection) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stream = Inspecting { inner: body, tally: tally.clone(), limit, early, done: false };
    (Box::pin(stream), Inspection(tally))
}

struct Inspecting {
    inner: ByteStream,
    tally: Arc<Mutex<Tally>>,
    limit: u64,
    early: bool,
    done: bool,
}

impl Inspecting {
    fn fail(&mut self, e: BlobError) -> Poll<Option<Result<Bytes, BlobError>>> {
        self.done = true;
        Poll::Ready(Some(Err(e)))
    }
}

impl Stream for Inspecting {
    type Item = Result<Bytes, BlobError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => self.fail(e),
            Poll::Ready(None) => {
                let refused = {
                    let t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
                    self.early && t.size > 0 && ContentKind::sniff(&t.head, true).is_none()
                };
                if refused {
                    return self.fail(BlobError::Unsupported);
                }
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(chunk))) => {
                let (over, refused) = {
                    let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
                    t.size += chunk.len() as u64;
                    let was_short = t.head.len() < SNIFF_BYTES;
                    if was_short {
                        let take = (SNIFF_BYTES - t.head.len()).min(chunk.len());
                        t.head.extend_from_slice(&chunk[..take]);
                    }
                    t.hasher.update(&chunk);
                    let full_now = was_short && t.head.len() == SNIFF_BYTES;
                    (t.size > self.limit, self.early && full_now && ContentKind::sniff(&t.head, false).is_none())
                };
                if over {
                    let limit = self.limit;
                    return self.fail(BlobError::TooLarge { limit });
                }
                if refused {
                    return self.fail(BlobError::Unsupported);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn body(chunks: Vec<&'static [u8]>) -> ByteStream {
        Box::pin(futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))))
    }

    async fn drain(s: ByteStream) -> Result<usize, BlobError> {
        let mut s = s;
        let mut n = 0;
        while let Some(c) = s.next().await {
            n += c?.len();
        }
        Ok(n)
    }

    #[tokio::test]
    async fn counts_hashes_and_sniffs_a_body() {
        let (s, i) = inspect(body(vec![b"%PDF-1.7\n", b"rest"]), 100, true);
        assert_eq!(drain(s).await.unwrap(), 13);
        let found = i.finish();
        assert_eq!(found.size, 13);
        assert_eq!(found.kind, Some(ContentKind::Pdf));
        assert_eq!(found.sha256, Sha256Hex::of_digest(&Sha256::digest(b"%PDF-1.7\nrest")));
    }

    #[tokio::test]
    async fn stops_at_the_limit_and_on_a_refused_type() {
        let (s, _) = inspect(body(vec![b"%PDF-", b"0123456789"]), 10, true);
        assert!(matches!(drain(s).await, Err(BlobError::TooLarge { limit: 10 })));
        let (s, _) = inspect(body(vec![b"MZ\x90\0\x03\0"]), 100, true);
        assert!(matches!(drain(s).await, Err(BlobError::Unsupported)));
        let exe: &'static [u8] = Box::leak(vec![0u8; SNIFF_BYTES + 10].into_boxed_slice());
        let (s, _) = inspect(body(vec![exe]), u64::MAX, true);
        assert!(matches!(drain(s).await, Err(BlobError::Unsupported)));
        // Without `early` the verdict is left to the caller.
        let (s, i) = inspect(body(vec![b"MZ\x90\0"]), 100, false);
        assert_eq!(drain(s).await.unwrap(), 4);
        assert_eq!(i.finish().kind, None);
    }
}
