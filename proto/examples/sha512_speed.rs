//! Hashing speed of the SHA-512 implementations that could back `Sha512Counter`, on 16 KiB
//! updates (as `openssl speed -evp sha512 -bytes 16384` measures): prints one JSON line,
//! MB/s each. Usage: `cargo run --release -p tooltool-proto --example sha512_speed [MiB]`.

use std::time::Instant;

use sha2::Digest as _;
use tooltool_proto::Sha512Counter;

fn rate(mib: usize, mut f: impl FnMut(&[u8])) -> f64 {
    let block = vec![0x5au8; 16 * 1024];
    let blocks = mib * 64;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..blocks {
            f(&block);
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    (blocks * block.len()) as f64 / best / 1e6
}

fn main() {
    let mib: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(512);
    let mut counter = Sha512Counter::new();
    let ours = rate(mib, |b| counter.update(b));
    std::hint::black_box(counter.finish());
    let mut sha2 = sha2::Sha512::new();
    let sha2_rate = rate(mib, |b| sha2.update(b));
    std::hint::black_box(sha2.finalize());
    println!("{{\"sha512_counter_mb_s\": {ours:.1}, \"sha2_crate_mb_s\": {sha2_rate:.1}}}");
}
