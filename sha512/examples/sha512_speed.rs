//! Hashes `MiB` mebibytes in 16 KiB updates (as `openssl speed -evp sha512 -bytes 16384` does)
//! with one SHA-512 implementation: `ours` (the project's `Sha512Counter`: the AVX2 block
//! function where the CPU has it), `aws-lc` (aws-lc-rs's digest) or `sha2` (the sha2 crate), and prints the bytes hashed. The bench harness measures the
//! process's CPU time, as `openssl speed` does, so that the comparison holds on a busy machine.
//! Usage: `cargo run --release -p tooltool-sha512 --example sha512_speed -- ours|aws-lc|sha2 [MiB]`.

use sha2::Digest as _;
use tooltool_sha512::Sha512Counter;

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "ours".into());
    let mib: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let block = vec![0x5au8; 16 * 1024];
    let blocks = mib * 64;
    match which.as_str() {
        "ours" | "aws-lc" => {
            let mut c = if which == "ours" { Sha512Counter::new() } else { Sha512Counter::aws_lc() };
            for _ in 0..blocks {
                c.update(&block);
            }
            std::hint::black_box(c.finish());
        }
        "sha2" => {
            let mut h = sha2::Sha512::new();
            for _ in 0..blocks {
                h.update(&block);
            }
            std::hint::black_box(h.finalize());
        }
        other => panic!("unknown implementation {other:?}: ours, aws-lc or sha2"),
    }
    println!("{}", blocks * block.len());
}
