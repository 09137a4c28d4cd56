//! SHA-512 on x86_64 CPUs with AVX2 and BMI2: the block function OpenSSL uses on them
//! (`sha512_avx2.S`, from AWS-LC's own perlasm, which ships it disabled), driven by the
//! buffering and padding below. About 1.4× aws-lc-rs's digest on the bench machine, which
//! only has the AVX variant; [`available`] says whether the CPU can run it.
//!
//! The one unsafe block of the project is the call into that assembly: it reads
//! `blocks × 128` bytes from `data` and updates the eight words of `state`, nothing else.

#![allow(unsafe_code)]

std::arch::global_asm!(include_str!("sha512_avx2.S"), options(att_syntax));

unsafe extern "C" {
    fn tooltool_sha512_block_avx2(state: *mut u64, data: *const u8, blocks: usize);
}

/// Whether this CPU has what the block function uses (AVX2, BMI1, BMI2).
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("bmi1")
        && std::arch::is_x86_feature_detected!("bmi2")
}

const BLOCK: usize = 128;

/// FIPS 180-4 §5.3.5.
const INITIAL: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];

/// The hash state, and the bytes of a block not yet complete.
#[derive(Clone)]
pub(super) struct State {
    words: [u64; 8],
    pending: [u8; BLOCK],
    filled: usize,
}

impl State {
    /// A fresh state. Only call when [`available`] said yes.
    pub(super) fn new() -> Self {
        debug_assert!(available());
        Self { words: INITIAL, pending: [0; BLOCK], filled: 0 }
    }

    pub(super) fn update(&mut self, mut data: &[u8]) {
        if self.filled > 0 {
            let take = (BLOCK - self.filled).min(data.len());
            self.pending[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled < BLOCK {
                return;
            }
            let block = self.pending;
            self.compress(&block);
            self.filled = 0;
        }
        let whole = data.len() - data.len() % BLOCK;
        self.compress(&data[..whole]);
        let rest = &data[whole..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    /// The digest of the `len` bytes fed (FIPS 180-4 §5.1.2 padding).
    pub(super) fn finish(mut self, len: u64) -> [u8; 64] {
        let mut tail = [0u8; 2 * BLOCK];
        tail[..self.filled].copy_from_slice(&self.pending[..self.filled]);
        tail[self.filled] = 0x80;
        let end = if self.filled < BLOCK - 16 { BLOCK } else { 2 * BLOCK };
        tail[end - 16..end].copy_from_slice(&(u128::from(len) * 8).to_be_bytes());
        self.compress(&tail[..end]);
        let mut out = [0u8; 64];
        for (chunk, word) in out.chunks_exact_mut(8).zip(self.words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// Runs the block function over whole blocks.
    fn compress(&mut self, blocks: &[u8]) {
        debug_assert_eq!(blocks.len() % BLOCK, 0);
        if blocks.is_empty() {
            return;
        }
        // SAFETY: the CPU has AVX2, BMI1 and BMI2 (checked before any `State` is made); the
        // function reads exactly `blocks.len() / 128` whole blocks from `blocks` and writes
        // only the eight words of `self.words`.
        unsafe { tooltool_sha512_block_avx2(self.words.as_mut_ptr(), blocks.as_ptr(), blocks.len() / BLOCK) }
    }
}
