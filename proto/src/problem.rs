//! The `application/problem+json` error body of every error answer.

use serde::{Deserialize, Serialize};

/// An error body, as PROTOCOL.md fixes it: `type`, `title`, `status`, `detail`, `instance`,
/// plus a stable kebab-case `code`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Always `about:blank`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `"<status> <reason phrase>: <detail>"`.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, safe to show to the caller.
    pub detail: String,
    /// Always `about:blank`.
    pub instance: String,
    /// A stable machine-readable code, e.g. `invalid-digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl Problem {
    /// Builds the body for `status` (with its reason phrase) and `detail`.
    pub fn new(status: u16, reason: &str, detail: impl Into<String>, code: &str) -> Self {
        let detail = detail.into();
        Self {
            kind: "about:blank".into(),
            title: format!("{status} {reason}: {detail}"),
            status,
            detail,
            instance: "about:blank".into(),
            code: Some(code.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_serializes_with_the_protocol_members() {
        let p = Problem::new(400, "Bad Request", "Invalid sha512 digest", "invalid-digest");
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"type":"about:blank","title":"400 Bad Request: Invalid sha512 digest","status":400,"detail":"Invalid sha512 digest","instance":"about:blank","code":"invalid-digest"}"#
        );
    }
}
