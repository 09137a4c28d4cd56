//! tooltool-sha512: SHA-512, the one implementation both ends use: of a byte stream as it passes
//! ([`Sha512Counter`]) and of everything a reader yields ([`hash_reader`], the only whole-file
//! hash loop of the project), and of SHA-512 with SHA-256 in one pass ([`ContentHasher`], what
//! the server records of each blob).
//!
//! On x86_64 CPUs with AVX2 and BMI2 the blocks go through OpenSSL's AVX2 block function
//! ([`avx2`], as fast as `openssl speed` on the bench machine); elsewhere the digest comes from
//! aws-lc-rs (AWS-LC's assembly, which the TLS stack already links, with only the slower AVX
//! variant), itself a little faster than the `sha2` crate. See BENCHMARKS.md;
//! `examples/sha512_speed.rs` is what the bench runs. `sha512_avx2.S` is regenerated from an
//! AWS-LC checkout by `scripts/regenerate-avx2.sh`. A crate of its own, so that `tooltool-proto`
//! holds only wire types and does not pull aws-lc-rs into every consumer.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod avx2;
mod both;

pub use both::{ContentHasher, Hashes, PARALLEL_FROM, hash_reader_both};

use std::io::{self, Read, Write};

use aws_lc_rs::digest::{Context, SHA512};

use tooltool_proto::Digest;

/// The read size of [`hash_reader`]: large enough that the per-call overhead vanishes, small
/// enough to stay in the CPU caches.
pub const HASH_BUFFER: usize = 256 * 1024;

/// SHA-512 of a byte stream as it passes, and its length: how both ends check content.
#[derive(Clone)]
pub struct Sha512Counter {
    engine: Engine,
    len: u64,
}

/// Who computes the digest.
#[derive(Clone)]
enum Engine {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    Avx2(Box<avx2::State>),
    AwsLc(Context),
}

impl Default for Sha512Counter {
    fn default() -> Self {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if avx2::available() {
            return Self { engine: Engine::Avx2(Box::new(avx2::State::new())), len: 0 };
        }
        Self::aws_lc()
    }
}

impl std::fmt::Debug for Sha512Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sha512Counter").field("len", &self.len).finish_non_exhaustive()
    }
}

impl Sha512Counter {
    /// An empty counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty counter on aws-lc-rs's digest, whatever the CPU (to compare the two).
    pub fn aws_lc() -> Self {
        Self { engine: Engine::AwsLc(Context::new(&SHA512)), len: 0 }
    }

    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.engine {
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Engine::Avx2(state) => state.update(data),
            Engine::AwsLc(context) => context.update(data),
        }
        self.len += data.len() as u64;
    }

    /// How many bytes were fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no byte was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds everything `r` yields, copying it to `out` when given; returns the bytes read.
    pub fn update_from(&mut self, r: &mut dyn Read, mut out: Option<&mut dyn Write>) -> io::Result<u64> {
        let mut buf = vec![0u8; HASH_BUFFER];
        let mut total = 0;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.update(&buf[..n]);
            if let Some(o) = out.as_mut() {
                o.write_all(&buf[..n])?;
            }
            total += n as u64;
        }
    }

    /// The digest of everything fed, and its length in bytes.
    pub fn finish(self) -> (Digest, u64) {
        let bytes: [u8; 64] = match self.engine {
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            Engine::Avx2(state) => state.finish(self.len),
            Engine::AwsLc(context) => context.finish().as_ref().try_into().expect("SHA-512 is 64 bytes"),
        };
        (Digest::from_bytes(&bytes), self.len)
    }
}

/// The digest and length of everything `r` yields (a file, usually).
pub fn hash_reader(r: &mut dyn Read) -> io::Result<(Digest, u64)> {
    let mut counter = Sha512Counter::new();
    counter.update_from(r, None)?;
    Ok(counter.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
    const EMPTY: &str = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

    #[test]
    fn counter_hashes_abc_in_pieces_and_the_empty_input() {
        let mut c = Sha512Counter::new();
        c.update(b"a");
        c.update(b"");
        c.update(b"bc");
        assert_eq!((c.len(), c.is_empty()), (3, false));
        let (d, n) = c.finish();
        assert_eq!((d.as_str(), n), (ABC, 3));
        let c = Sha512Counter::new();
        assert!(c.is_empty());
        let (d, n) = c.finish();
        assert_eq!((d.as_str(), n), (EMPTY, 0));
    }

    /// Every length around the block and padding boundaries, fed whole and in uneven pieces,
    /// gives the same digest on both engines (on a CPU without AVX2 both are aws-lc-rs).
    #[test]
    fn both_engines_agree_on_every_length_and_split() {
        let data: Vec<u8> = (0..2000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in (0..=400).chain([1023, 1024, 1025, 1999, 2000]) {
            let input = &data[..len];
            let mut reference = Sha512Counter::aws_lc();
            reference.update(input);
            let expected = reference.finish();
            for piece in [1, 7, 111, 128, 129, 1000] {
                let mut c = Sha512Counter::new();
                input.chunks(piece).for_each(|p| c.update(p));
                assert_eq!(c.finish(), expected, "{len} bytes in pieces of {piece}");
            }
        }
    }

    #[test]
    fn a_clone_goes_on_from_where_the_original_was() {
        let mut c = Sha512Counter::new();
        c.update(b"a");
        let mut twin = c.clone();
        c.update(b"bc");
        twin.update(b"bc");
        assert_eq!(c.finish(), twin.finish());
    }

    #[test]
    fn hash_reader_matches_the_counter_across_buffer_boundaries_and_copies() {
        let data: Vec<u8> = (0..(HASH_BUFFER * 2 + 12345)).map(|i| (i % 251) as u8).collect();
        let mut c = Sha512Counter::new();
        c.update(&data);
        let expected = c.finish();
        assert_eq!(hash_reader(&mut &data[..]).unwrap(), expected);
        let mut copy = Vec::new();
        let mut c = Sha512Counter::new();
        assert_eq!(c.update_from(&mut &data[..], Some(&mut copy)).unwrap(), data.len() as u64);
        assert_eq!((c.finish(), copy), (expected, data));
        assert_eq!(hash_reader(&mut &b""[..]).unwrap().0.as_str(), EMPTY);
    }
}
