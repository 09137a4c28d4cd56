//! SHA-512 of whole files, on the blocking thread pool, through the project's one hash loop
//! ([`tooltool_sha512::hash_reader`]).

use std::path::Path;

use tooltool_proto::Digest;

use crate::error::Error;
use crate::files::blocking;

pub use tooltool_sha512::Sha512Counter;

/// Streams a file (in `spawn_blocking`) and returns its digest and size.
pub async fn hash_file(path: &Path) -> Result<(Digest, u64), Error> {
    let owned = path.to_owned();
    blocking(path, move || tooltool_sha512::hash_reader(&mut std::fs::File::open(&owned)?)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_file_matches_the_counter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..700_001).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut c = Sha512Counter::new();
        c.update(&data);
        assert_eq!(hash_file(&path).await.unwrap(), c.finish());
    }

    #[tokio::test]
    async fn hash_file_names_a_missing_file() {
        let err = hash_file(Path::new("/nonexistent/tooltool-blob")).await.unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/tooltool-blob"), "{err}");
    }
}
