//! Scope names and wildcard matching.

use tooltool_proto::Visibility;

/// A permission the protocol knows, relative to the configured prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `<prefix>/download/public`
    DownloadPublic,
    /// `<prefix>/download/internal`
    DownloadInternal,
    /// `<prefix>/upload/public`
    UploadPublic,
    /// `<prefix>/upload/internal`
    UploadInternal,
    /// `<prefix>/manage`
    Manage,
}

impl Scope {
    /// The download scope for files of this visibility.
    pub fn download(v: Visibility) -> Self {
        match v {
            Visibility::Public => Scope::DownloadPublic,
            Visibility::Internal => Scope::DownloadInternal,
        }
    }

    /// The upload scope for files of this visibility.
    pub fn upload(v: Visibility) -> Self {
        match v {
            Visibility::Public => Scope::UploadPublic,
            Visibility::Internal => Scope::UploadInternal,
        }
    }

    /// The part after the prefix.
    pub fn suffix(self) -> &'static str {
        match self {
            Scope::DownloadPublic => "download/public",
            Scope::DownloadInternal => "download/internal",
            Scope::UploadPublic => "upload/public",
            Scope::UploadInternal => "upload/internal",
            Scope::Manage => "manage",
        }
    }

    /// The full scope string under `prefix`.
    pub fn full(self, prefix: &str) -> String {
        format!("{prefix}/{}", self.suffix())
    }

    /// Whether a granted scope covers this one under `prefix` ([`covers`] of its full string,
    /// compared piece by piece without building it: this runs on every download).
    pub fn granted_by(self, granted: &str, prefix: &str) -> bool {
        covers_pieces(granted, &[prefix, "/", self.suffix()])
    }
}

/// Whether a granted scope covers a requested one that may itself end in `*` (for deriving
/// tokens): a wildcard grant covers anything under its stem; an exact grant only itself.
pub fn covers(granted: &str, requested: &str) -> bool {
    covers_pieces(granted, &[requested])
}

/// [`covers`], the requested scope given as the concatenation of `pieces`. Compared as bytes: a
/// grant may split a character where one piece ends.
fn covers_pieces(granted: &str, pieces: &[&str]) -> bool {
    let (mut rest, wildcard) = match granted.strip_suffix('*') {
        Some(stem) => (stem.as_bytes(), true),
        None => (granted.as_bytes(), false),
    };
    for piece in pieces.iter().map(|p| p.as_bytes()) {
        let n = rest.len().min(piece.len());
        if rest[..n] != piece[..n] || (!wildcard && n < piece.len()) {
            return false;
        }
        rest = &rest[n..];
    }
    // The stem lies within the requested scope; an exact grant is exactly it.
    rest.is_empty()
}

/// A scope as an admin may type it: with a `:` it is taken as given, otherwise relative to the
/// prefix (`manage` → `<prefix>/manage`, `*` → `<prefix>/*`).
pub fn full_scope(prefix: &str, s: &str) -> String {
    if s.contains(':') { s.to_owned() } else { format!("{prefix}/{}", s.trim_start_matches('/')) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_scopes_must_be_covered() {
        assert!(covers(&format!("{P}/*"), &format!("{P}/download/*")));
        assert!(covers(&format!("{P}/download/*"), &format!("{P}/download/*")));
        assert!(covers(&format!("{P}/download/*"), &format!("{P}/download/internal")));
        assert!(!covers(&format!("{P}/download/public"), &format!("{P}/download/*")));
        assert!(!covers(&format!("{P}/download/*"), &format!("{P}/*")));
        assert!(!covers(&format!("{P}/download/*"), &format!("{P}/manage")));
    }

    #[test]
    fn relative_scopes_get_the_prefix() {
        assert_eq!(full_scope(P, "manage"), format!("{P}/manage"));
        assert_eq!(full_scope(P, "*"), format!("{P}/*"));
        assert_eq!(full_scope(P, "other:scope"), "other:scope");
    }

    const P: &str = "project:releng:services/tooltool/api";

    fn any_grants(granted: &[&str], s: Scope) -> bool {
        granted.iter().any(|g| s.granted_by(g, P))
    }

    #[test]
    fn exact_scopes_grant_only_themselves() {
        let g = [&*Scope::DownloadInternal.full(P)];
        assert!(any_grants(&g, Scope::DownloadInternal));
        assert!(!any_grants(&g, Scope::DownloadPublic), "internal does not imply public");
        assert!(!any_grants(&g, Scope::Manage));
    }

    #[test]
    fn wildcards_grant_by_prefix() {
        let all = format!("{P}/*");
        for s in
            [Scope::DownloadPublic, Scope::DownloadInternal, Scope::UploadPublic, Scope::UploadInternal, Scope::Manage]
        {
            assert!(any_grants(&[&all], s), "{s:?}");
        }
        let downloads = format!("{P}/download/*");
        assert!(any_grants(&[&downloads], Scope::DownloadPublic));
        assert!(any_grants(&[&downloads], Scope::DownloadInternal));
        assert!(!any_grants(&[&downloads], Scope::UploadPublic));
        assert!(!any_grants(&[&downloads], Scope::Manage));
        assert!(any_grants(&["project:*"], Scope::Manage));
        assert!(any_grants(&["*"], Scope::Manage));
        assert!(any_grants(&[&format!("{P}/manage*")], Scope::Manage), "a stem as long as the scope");
    }

    #[test]
    fn near_misses_do_not_grant() {
        assert!(!any_grants(&[&format!("{P}/download")], Scope::DownloadPublic));
        assert!(!any_grants(&[&format!("{P}/manag")], Scope::Manage));
        assert!(!any_grants(&[&format!("{P}/manage/extra")], Scope::Manage));
        assert!(!any_grants(&["project:releng:services/tooltool/ap*x"], Scope::Manage));
        assert!(!any_grants(&[""], Scope::Manage));
        assert!(!any_grants(&[&format!("{P}/manage/*")], Scope::Manage), "a stem longer than the scope");
        assert!(
            !any_grants(&["project:releng:services/tooltool/apé/manage"], Scope::Manage),
            "é across the prefix's end"
        );
        assert!(!any_grants(&["project:releng:services/tooltool/ap"], Scope::Manage), "a prefix of the full scope");
        assert!(!any_grants(&[&format!("other:{P}/manage")], Scope::Manage));
    }
}
