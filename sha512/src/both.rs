//! SHA-512 and SHA-256 of one byte stream in one pass: what the server records of every blob it
//! verifies or reads back (TUF clients such as tough need a target's sha256 beside its sha512).
//!
//! Past [`PARALLEL_FROM`] bytes the SHA-256 half moves to a thread of its own, so that the two
//! digests cost two cores rather than one core's sum: the chunks are shared (`Bytes`), not
//! copied, and at most [`QUEUE`] of them wait for that thread, so memory stays flat whatever
//! the size. Below it (most test blobs, small files) both run inline, sparing the thread.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, channel, sync_channel};
use std::thread::JoinHandle;

use aws_lc_rs::digest::{Context, SHA256};
use bytes::{Bytes, BytesMut};

use crate::{HASH_BUFFER, Sha512Counter};
use tooltool_proto::Digest;

/// Bytes hashed inline before the SHA-256 half gets a thread.
pub const PARALLEL_FROM: u64 = 1024 * 1024;

/// Chunks that may wait for the SHA-256 thread.
const QUEUE: usize = 4;

/// Both digests of a stream, and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    /// The sha512 digest.
    pub sha512: Digest,
    /// The sha256 digest, 64 lowercase hex characters.
    pub sha256: String,
    /// Bytes hashed.
    pub len: u64,
}

/// SHA-512 and SHA-256 of a byte stream as it passes: the one hasher of blobs on the server.
#[derive(Debug)]
pub struct ContentHasher {
    sha512: Sha512Counter,
    sha256: Side,
}

/// Where the SHA-256 half runs.
enum Side {
    Inline(Context),
    Thread(Worker),
}

/// The SHA-256 thread: chunks go in, come back once hashed (to be reused), and the context
/// comes out at the end.
struct Worker {
    chunks: Option<SyncSender<Bytes>>,
    done: Receiver<Bytes>,
    handle: JoinHandle<Context>,
}

impl std::fmt::Debug for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Inline(_) => "Inline",
            Side::Thread(_) => "Thread",
        })
    }
}

impl Default for ContentHasher {
    fn default() -> Self {
        Self { sha512: Sha512Counter::new(), sha256: Side::Inline(Context::new(&SHA256)) }
    }
}

impl ContentHasher {
    /// An empty hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many bytes were fed so far.
    pub fn len(&self) -> u64 {
        self.sha512.len()
    }

    /// Whether no byte was fed yet.
    pub fn is_empty(&self) -> bool {
        self.sha512.is_empty()
    }

    /// Feeds a chunk the caller owns (a body's `Bytes`): shared with the SHA-256 thread once
    /// there is one, never copied.
    pub fn update(&mut self, chunk: Bytes) {
        self.feed(chunk, false);
    }

    /// Feeds a chunk; with `reuse`, the chunks the SHA-256 thread hands back stay for
    /// [`Self::reclaim`], else they are dropped here so that none pile up.
    fn feed(&mut self, chunk: Bytes, reuse: bool) {
        if matches!(self.sha256, Side::Inline(_)) && self.len() + chunk.len() as u64 > PARALLEL_FROM {
            self.start_thread();
        }
        match &mut self.sha256 {
            Side::Inline(context) => context.update(&chunk),
            Side::Thread(worker) => {
                while !reuse && worker.done.try_recv().is_ok() {}
                worker.send(chunk.clone());
            }
        }
        self.sha512.update(&chunk);
    }

    /// Feeds everything `r` yields, reusing a few buffers; returns the bytes read.
    pub fn update_from(&mut self, r: &mut dyn Read) -> io::Result<u64> {
        let mut total = 0;
        let mut spare: Option<BytesMut> = None;
        loop {
            let mut buf = self.reclaim().or_else(|| spare.take()).unwrap_or_else(|| BytesMut::zeroed(HASH_BUFFER));
            buf.resize(HASH_BUFFER, 0);
            let n = match r.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    spare = Some(buf);
                    continue;
                }
                Err(e) => return Err(e),
            };
            buf.truncate(n);
            let chunk = buf.freeze();
            self.feed(chunk.clone(), true);
            // Inline, the only other owner is gone by now: the buffer is ours again.
            spare = chunk.try_into_mut().ok();
            total += n as u64;
        }
    }

    /// Both digests of everything fed, and its length.
    pub fn finish(self) -> Hashes {
        let sha256 = match self.sha256 {
            Side::Inline(context) => context,
            Side::Thread(mut worker) => {
                worker.chunks = None;
                worker.handle.join().expect("the SHA-256 thread does not panic")
            }
        };
        let mut hex = String::with_capacity(64);
        tooltool_proto::push_hex(&mut hex, sha256.finish().as_ref());
        let (sha512, len) = self.sha512.finish();
        Hashes { sha512, sha256: hex, len }
    }

    /// Moves the SHA-256 half to a thread (it stays inline if none can be started).
    fn start_thread(&mut self) {
        let Side::Inline(context) = &self.sha256 else { return };
        let mut context = context.clone();
        let (chunks, inbox) = sync_channel::<Bytes>(QUEUE);
        let (back, done) = channel();
        let spawned = std::thread::Builder::new().name("sha256".into()).spawn(move || {
            for chunk in inbox {
                context.update(&chunk);
                let _ = back.send(chunk);
            }
            context
        });
        if let Ok(handle) = spawned {
            self.sha256 = Side::Thread(Worker { chunks: Some(chunks), done, handle });
        }
    }

    /// A buffer the SHA-256 thread is done with, if one is back and no one else holds it.
    fn reclaim(&mut self) -> Option<BytesMut> {
        let Side::Thread(worker) = &self.sha256 else { return None };
        loop {
            match worker.done.try_recv() {
                Ok(chunk) => {
                    if let Ok(buf) = chunk.try_into_mut() {
                        return Some(buf);
                    }
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return None,
            }
        }
    }
}

impl Worker {
    fn send(&self, chunk: Bytes) {
        if let Some(chunks) = &self.chunks {
            chunks.send(chunk).expect("the SHA-256 thread runs until the hasher finishes");
        }
    }
}

/// Both digests and the length of everything `r` yields (a file, usually).
pub fn hash_reader_both(r: &mut dyn Read) -> io::Result<Hashes> {
    let mut hasher = ContentHasher::new();
    hasher.update_from(r)?;
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(data: &[u8]) -> Hashes {
        let mut c = Sha512Counter::aws_lc();
        c.update(data);
        let (sha512, len) = c.finish();
        let mut sha256 = String::new();
        tooltool_proto::push_hex(&mut sha256, aws_lc_rs::digest::digest(&SHA256, data).as_ref());
        Hashes { sha512, sha256, len }
    }

    #[test]
    fn known_answers_for_abc_and_the_empty_input() {
        let mut h = ContentHasher::new();
        h.update(Bytes::from_static(b"a"));
        h.update(Bytes::from_static(b"bc"));
        let got = h.finish();
        assert_eq!(got.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(got.len, 3);
        assert!(got.sha512.as_str().starts_with("ddaf35a193617aba"));
        let empty = ContentHasher::new().finish();
        assert_eq!(empty.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(empty, reference(b""));
    }

    /// Inputs on both sides of the point where SHA-256 moves to its thread, in chunks that
    /// straddle it, and through the reader with its reused buffers, give the digests of the
    /// whole computed at once.
    #[test]
    fn both_digests_match_across_the_move_to_a_thread() {
        let big = (PARALLEL_FROM as usize) * 3 + HASH_BUFFER / 3 + 7;
        let data: Vec<u8> = (0..big as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        for len in [0, 1, PARALLEL_FROM as usize - 1, PARALLEL_FROM as usize, PARALLEL_FROM as usize + 1, big] {
            let input = &data[..len];
            let expected = reference(input);
            for piece in [1000, 65_536, 300_001] {
                let mut h = ContentHasher::new();
                input.chunks(piece).for_each(|p| h.update(Bytes::copy_from_slice(p)));
                assert_eq!(h.finish(), expected, "{len} bytes in pieces of {piece}");
            }
            assert_eq!(hash_reader_both(&mut &input[..]).unwrap(), expected, "{len} bytes read");
        }
    }

    #[test]
    fn a_long_stream_moves_sha256_to_a_thread_and_a_short_one_does_not() {
        let mut short = ContentHasher::new();
        short.update(Bytes::from(vec![1u8; PARALLEL_FROM as usize]));
        assert!(matches!(short.sha256, Side::Inline(_)));
        let mut long = ContentHasher::new();
        long.update(Bytes::from(vec![1u8; PARALLEL_FROM as usize + 1]));
        assert!(matches!(long.sha256, Side::Thread(_)));
    }

    #[test]
    fn a_read_error_is_returned() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        assert_eq!(hash_reader_both(&mut Broken).unwrap_err().to_string(), "disk on fire");
    }
}
