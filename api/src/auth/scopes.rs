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
}

/// Whether a granted scope covers the required one: equal, or the granted scope ends with `*`
/// and the required one starts with what precedes the `*`.
pub fn grants(granted: &str, required: &str) -> bool {
    match granted.strip_suffix('*') {
        Some(stem) => required.starts_with(stem),
        None => granted == required,
    }
}

/// Whether a granted scope covers a requested one that may itself end in `*` (for deriving
/// tokens): a wildcard grant covers anything under its stem; an exact grant only itself.
pub fn covers(granted: &str, requested: &str) -> bool {
    match granted.strip_suffix('*') {
        Some(stem) => requested.starts_with(stem),
        None => granted == requested,
    }
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
        granted.iter().any(|g| grants(g, &s.full(P)))
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
    }

    #[test]
    fn near_misses_do_not_grant() {
        assert!(!any_grants(&[&format!("{P}/download")], Scope::DownloadPublic));
        assert!(!any_grants(&[&format!("{P}/manag")], Scope::Manage));
        assert!(!any_grants(&[&format!("{P}/manage/extra")], Scope::Manage));
        assert!(!any_grants(&["project:releng:services/tooltool/ap*x"], Scope::Manage));
        assert!(!any_grants(&[""], Scope::Manage));
        assert!(!any_grants(&[&format!("other:{P}/manage")], Scope::Manage));
    }
}
