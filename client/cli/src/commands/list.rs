//! `list`: one line per record, `P` when the file is present and `V` when it is valid (hashed).

use std::path::Path;

use tooltool::fetch::is_valid;

use crate::{Outcome, SUCCESS, load};

/// Prints `P|-<TAB>V|-<TAB>name` per record, as the original client does.
pub async fn run(manifest_path: &Path, cwd: &Path) -> Outcome {
    let manifest = load(manifest_path)?;
    for e in &manifest.entries {
        let path = cwd.join(e.filename.as_str());
        let present = path.is_file();
        let valid = present && is_valid(&path, e).await?;
        println!("{}\t{}\t{}", if present { "P" } else { "-" }, if valid { "V" } else { "-" }, e.filename);
    }
    Ok(SUCCESS)
}
