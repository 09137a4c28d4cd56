//! Wall-clock throughput of SHA-512 alone against SHA-512 with SHA-256 ([`ContentHasher`], its
//! SHA-256 half on a second core), in interleaved pairs so that a busy machine slows both alike:
//! `reader` hashes `MiB` mebibytes through each one's reader loop (the local store's path),
//! `chunks` feeds 64 KiB `Bytes` (an S3 body's path). Prints one line per pair and the median
//! ratio (both / sha512 alone, in time: under 1.10 is within 10 %).
//! Usage: `cargo run -p tooltool-sha512 --example both_speed -- [MiB] [pairs]`.

use std::io::Read;
use std::time::Instant;

use bytes::Bytes;
use tooltool_sha512::{ContentHasher, Sha512Counter};

/// Yields `left` bytes of a fixed pattern (copied, as a page-cache read is), without holding them.
struct Pattern {
    left: u64,
}

static BLOCK: [u8; 1 << 20] = [0x5a; 1 << 20];

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize).min(BLOCK.len());
        buf[..n].copy_from_slice(&BLOCK[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

fn main() {
    let mib: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(512);
    let pairs: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let bytes = mib * 1024 * 1024;
    let chunk = Bytes::from(vec![0x5au8; 64 * 1024]);
    let mbps = |secs: f64| bytes as f64 / secs / 1e6;
    let t = Instant::now();
    let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    (0..bytes / chunk.len() as u64).for_each(|_| c.update(&chunk));
    std::hint::black_box(c.finish());
    println!("sha256 alone, one core: {:.0} MB/s", mbps(t.elapsed().as_secs_f64()));
    for path in ["reader", "chunks"] {
        let mut ratios = Vec::new();
        for _ in 0..pairs {
            let t = Instant::now();
            match path {
                "reader" => {
                    let mut c = Sha512Counter::new();
                    c.update_from(&mut Pattern { left: bytes }, None).unwrap();
                    std::hint::black_box(c.finish());
                }
                _ => {
                    let mut c = Sha512Counter::new();
                    (0..bytes / chunk.len() as u64).for_each(|_| c.update(&chunk));
                    std::hint::black_box(c.finish());
                }
            }
            let alone = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut h = ContentHasher::new();
            match path {
                "reader" => {
                    h.update_from(&mut Pattern { left: bytes }).unwrap();
                }
                _ => (0..bytes / chunk.len() as u64).for_each(|_| h.update(chunk.clone())),
            }
            std::hint::black_box(h.finish());
            let both = t.elapsed().as_secs_f64();
            println!("{path}: sha512 alone {:.0} MB/s, sha512+sha256 {:.0} MB/s", mbps(alone), mbps(both));
            ratios.push(both / alone);
        }
        ratios.sort_by(f64::total_cmp);
        println!("{path}: median time ratio both/alone {:.3}", ratios[ratios.len() / 2]);
    }
}
