//! Credentials for the tooltool server: an access token, optionally with the client id it
//! belongs to, read from the credentials file releng hands out.
//!
//! Two file shapes are accepted, as the original client does: the JSON object
//! `{"clientId": "...", "accessToken": "..."}`, or a file holding only the bare token text.

use std::fmt;
use std::path::Path;

use crate::error::Error;

/// Who the client authenticates as. The token is sent as `Authorization: Bearer <token>`.
///
/// The [`Debug`](fmt::Debug) output never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The client id, when the credentials file names one.
    pub client_id: Option<String>,
    /// The secret access token.
    pub access_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("client_id", &self.client_id).field("access_token", &"<redacted>").finish()
    }
}

impl Credentials {
    /// Credentials made of a bare bearer token, without a client id.
    pub fn bearer(token: impl Into<String>) -> Self {
        Self { client_id: None, access_token: token.into() }
    }

    /// Parses a credentials file's text: JSON `{"clientId": "...", "accessToken": "..."}` or
    /// the bare token text (surrounding whitespace trimmed). Empty text is an error.
    ///
    /// Error messages never quote the file's content, so they cannot leak the token.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::Credentials(
                "the credentials are empty: expected a token or {\"clientId\": ..., \"accessToken\": ...}".into(),
            ));
        }
        if text.starts_with(['{', '[']) {
            return Self::parse_json(text);
        }
        check_token(text, "the token")?;
        Ok(Self::bearer(text))
    }

    fn parse_json(text: &str) -> Result<Self, Error> {
        // Parse into a generic value first: serde_json's syntax errors never quote the input,
        // and the members are then checked by hand, so no message can carry the token.
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            Error::Credentials(format!("the credentials are not valid JSON (line {}, column {})", e.line(), e.column()))
        })?;
        let obj =
            value.as_object().ok_or_else(|| Error::Credentials("the credentials JSON is not an object".into()))?;
        let access_token = match obj.get("accessToken") {
            Some(serde_json::Value::String(s)) => s.trim().to_owned(),
            Some(_) => {
                return Err(Error::Credentials("the credentials JSON member \"accessToken\" is not a string".into()));
            }
            None => {
                return Err(Error::Credentials("the credentials JSON has no \"accessToken\" member".into()));
            }
        };
        if access_token.is_empty() {
            return Err(Error::Credentials("the credentials JSON member \"accessToken\" is empty".into()));
        }
        check_token(&access_token, "\"accessToken\"")?;
        let client_id = match obj.get("clientId") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => None,
            Some(serde_json::Value::String(s)) => Some(s.trim().to_owned()),
            Some(_) => {
                return Err(Error::Credentials("the credentials JSON member \"clientId\" is not a string".into()));
            }
        };
        Ok(Self { client_id, access_token })
    }

    /// Reads and parses a credentials file (see [`Credentials::parse`]).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|e| match e {
            Error::Credentials(msg) => Error::Credentials(format!("{}: {msg}", path.display())),
            other => other,
        })
    }
}

/// A token goes into an HTTP header: it must be one line of visible characters.
fn check_token(token: &str, what: &str) -> Result<(), Error> {
    if token.chars().any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii()) {
        return Err(Error::Credentials(format!(
            "{what} contains whitespace, control or non-ASCII characters; \
             expected a single token or {{\"clientId\": ..., \"accessToken\": ...}}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cr3t-T0ken.abc_def";

    #[test]
    fn parses_the_json_form() {
        let c = Credentials::parse(&format!(
            "{{\"clientId\": \"project/releng/me\", \"accessToken\": \"{TOKEN}\", \"certificate\": null}}\n"
        ))
        .unwrap();
        assert_eq!(c.client_id.as_deref(), Some("project/releng/me"));
        assert_eq!(c.access_token, TOKEN);
    }

    #[test]
    fn parses_the_json_form_without_client_id() {
        let c = Credentials::parse(&format!("{{\"accessToken\": \"{TOKEN}\"}}")).unwrap();
        assert_eq!(c, Credentials::bearer(TOKEN));
    }

    #[test]
    fn parses_the_bare_token_trimmed() {
        let c = Credentials::parse(&format!("  \n{TOKEN}\n\n")).unwrap();
        assert_eq!(c.client_id, None);
        assert_eq!(c.access_token, TOKEN);
    }

    #[test]
    fn refuses_empty_input() {
        for text in ["", "   ", "\n\t\n"] {
            let err = Credentials::parse(text).unwrap_err();
            assert!(matches!(err, Error::Credentials(_)), "{err:?}");
            assert!(err.to_string().contains("empty"), "{err}");
        }
    }

    #[test]
    fn refuses_json_without_access_token() {
        let err = Credentials::parse(r#"{"clientId": "me"}"#).unwrap_err();
        assert!(matches!(err, Error::Credentials(_)), "{err:?}");
        assert!(err.to_string().contains("accessToken"), "{err}");
        let err = Credentials::parse(r#"{"clientId": "me", "accessToken": ""}"#).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = Credentials::parse(r#"{"clientId": "me", "accessToken": 42}"#).unwrap_err();
        assert!(err.to_string().contains("not a string"), "{err}");
    }

    #[test]
    fn errors_never_quote_the_token() {
        for text in [
            format!("{{\"accessToken\": \"{TOKEN}\", \"clientId\": 7}}"),
            format!("{{\"accessToken\": \"{TOKEN}\" \"clientId\": 7}}"),
            format!("{TOKEN} {TOKEN}"),
            format!("[\"{TOKEN}\"]"),
        ] {
            let err = Credentials::parse(&text).unwrap_err();
            assert!(!err.to_string().contains(TOKEN), "{err}");
            assert!(!format!("{err:?}").contains(TOKEN), "{err:?}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let c = Credentials { client_id: Some("me".into()), access_token: TOKEN.into() };
        let shown = format!("{c:?}");
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(shown.contains("me"), "{shown}");
        assert!(!format!("{c:#?}").contains(TOKEN));
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.json");
        std::fs::write(&path, format!("{{\"clientId\":\"me\",\"accessToken\":\"{TOKEN}\"}}")).unwrap();
        assert_eq!(Credentials::load(&path).unwrap().access_token, TOKEN);

        std::fs::write(&path, "").unwrap();
        let err = Credentials::load(&path).unwrap_err();
        assert!(err.to_string().contains("creds.json"), "{err}");

        let missing = dir.path().join("missing");
        let err = Credentials::load(&missing).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
