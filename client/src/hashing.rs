//! SHA-512 hashing: of a byte stream as it passes ([`Sha512Counter`]) and of a whole file,
//! read in 1 MiB blocks on the blocking thread pool ([`hash_file`]).

use std::io::Read;
use std::path::Path;

use tooltool_proto::Digest;

use crate::error::Error;

/// Size of the read buffer of [`hash_file`].
const BUFFER: usize = 1 << 20;

pub use tooltool_proto::Sha512Counter;

/// Streams a file (1 MiB buffer, in `spawn_blocking`) and returns its digest and size.
pub async fn hash_file(path: &Path) -> Result<(Digest, u64), Error> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || hash_file_blocking(&owned))
        .await
        .map_err(|e| Error::io(path, std::io::Error::other(format!("hashing task failed: {e}"))))?
}

fn hash_file_blocking(path: &Path) -> Result<(Digest, u64), Error> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; BUFFER];
    let mut counter = Sha512Counter::new();
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => counter.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(counter.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
    const EMPTY: &str = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

    #[test]
    fn sha512_of_abc() {
        let mut c = Sha512Counter::new();
        c.update(b"a");
        c.update(b"");
        c.update(b"bc");
        assert_eq!(c.len(), 3);
        assert!(!c.is_empty());
        let (d, n) = c.finish();
        assert_eq!(d.as_str(), ABC);
        assert_eq!(n, 3);
    }

    #[test]
    fn sha512_of_nothing() {
        let c = Sha512Counter::new();
        assert!(c.is_empty());
        let (d, n) = c.finish();
        assert_eq!(d.as_str(), EMPTY);
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn hash_file_matches_the_counter_across_buffer_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..(BUFFER * 2 + 12345)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut c = Sha512Counter::new();
        c.update(&data);
        assert_eq!(hash_file(&path).await.unwrap(), c.finish());

        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let (d, n) = hash_file(&empty).await.unwrap();
        assert_eq!((d.as_str(), n), (EMPTY, 0));
    }

    #[tokio::test]
    async fn hash_file_names_a_missing_file() {
        let err = hash_file(Path::new("/nonexistent/tooltool-blob")).await.unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/tooltool-blob"), "{err}");
    }
}
