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
        // Escaped: a name reaches the terminal only as text, never as a control sequence (the
        // manifest parser refuses such names already; this holds even if that rule changes).
        let name = tooltool_proto::escaped(e.filename.as_str());
        println!("{}\t{}\t{name}", if present { "P" } else { "-" }, if valid { "V" } else { "-" });
    }
    Ok(SUCCESS)
}
