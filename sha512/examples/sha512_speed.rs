//! Hashes `MiB` mebibytes in 16 KiB updates (as `openssl speed -evp sha512 -bytes 16384` does)
//! with one SHA-512 implementation: `ours` (the project's `Sha512Counter`: the AVX2 block
//! function where the CPU has it), `aws-lc` (aws-lc-rs's digest) or `sha2` (the sha2 crate), and prints the bytes hashed. The bench harness measures the
//! process's CPU time, as `openssl speed` does, so that the comparison holds on a busy machine.
//! `both` and `sha512-alone` feed 256 KiB chunks (`Bytes`, as the server's readers hand them
//! on) to the server's one hasher, `ContentHasher` (SHA-512 here, SHA-256 on a second thread),
//! and to `Sha512Counter` alone: the harness compares their wall-clock time.
//! Usage: `cargo run --release -p tooltool-sha512 --example sha512_speed -- ours|aws-lc|sha2|both|sha512-alone [MiB]`.

use sha2::Digest as _;
use tooltool_sha512::{ContentHasher, Sha512Counter};

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
        "both" | "sha512-alone" => {
            let chunk = bytes::Bytes::from(vec![0x5au8; 256 * 1024]);
            let chunks = mib * 4;
            if which == "both" {
                let mut h = ContentHasher::new();
                for _ in 0..chunks {
                    h.update(chunk.clone());
                }
                std::hint::black_box(h.finish());
            } else {
                let mut c = Sha512Counter::new();
                for _ in 0..chunks {
                    c.update(&chunk);
                }
                std::hint::black_box(c.finish());
            }
            println!("{}", chunks * chunk.len());
            return;
        }
        other => panic!("unknown implementation {other:?}: ours, aws-lc, sha2, both or sha512-alone"),
    }
    println!("{}", blocks * block.len());
}
