//! Credentials for the tooltool server: an access token, optionally with the client id it
//! belongs to, read from the credentials file releng hands out.
//!
//! Two file shapes are accepted, as the original client does: the JSON object
//! `{"clientId": "...", "accessToken": "...", "certificate": ...}`, or a file holding only the
//! bare token text. Taskcluster's variables (`TASKCLUSTER_CLIENT_ID`, `TASKCLUSTER_ACCESS_TOKEN`,
//! `TASKCLUSTER_CERTIFICATE`) give the same credentials as the JSON form.
//!
//! Credentials with a clientId are Taskcluster credentials: the accessToken is a Hawk key and
//! never leaves the machine (every request is signed with Hawk, as `tooltool.py` does). A bare
//! token is sent as `Authorization: Bearer <token>`.

use std::fmt;
use std::path::Path;

use crate::error::Error;

/// Who the client authenticates as: with a client id, by Hawk (the token is the key); without
/// one, by `Authorization: Bearer <token>`.
///
/// The [`Debug`](fmt::Debug) output never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The client id, when the credentials file names one.
    pub client_id: Option<String>,
    /// The secret access token.
    pub access_token: String,
    /// Taskcluster temporary credentials' certificate, as JSON text.
    pub certificate: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("access_token", &"<redacted>")
            .field("certificate", &self.certificate.is_some())
            .finish()
    }
}

impl Credentials {
    /// Credentials made of a bare bearer token, without a client id.
    pub fn bearer(token: impl Into<String>) -> Self {
        Self { client_id: None, access_token: token.into(), certificate: None }
    }

    /// Taskcluster credentials, signed with Hawk.
    pub fn hawk(client_id: impl Into<String>, access_token: impl Into<String>, certificate: Option<String>) -> Self {
        Self { client_id: Some(client_id.into()), access_token: access_token.into(), certificate }
    }

    /// The credentials of Taskcluster's variables, when `TASKCLUSTER_CLIENT_ID` and
    /// `TASKCLUSTER_ACCESS_TOKEN` are both set (`lookup` reads a variable).
    pub fn from_taskcluster_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, Error> {
        let get = |k: &str| lookup(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let (Some(id), Some(token)) = (get("TASKCLUSTER_CLIENT_ID"), get("TASKCLUSTER_ACCESS_TOKEN")) else {
            return Ok(None);
        };
        check_token(&token, "TASKCLUSTER_ACCESS_TOKEN")?;
        let certificate = get("TASKCLUSTER_CERTIFICATE").map(|c| certificate_text(&c)).transpose()?;
        Ok(Some(Self::hawk(id, token, certificate)))
    }

    /// Whether requests are signed with Hawk (the token never goes on the wire).
    pub fn uses_hawk(&self) -> bool {
        self.client_id.is_some()
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
        let certificate = match obj.get("certificate") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => None,
            Some(serde_json::Value::String(s)) => Some(certificate_text(s)?),
            Some(v @ serde_json::Value::Object(_)) => Some(v.to_string()),
            Some(_) => {
                return Err(Error::Credentials("the credentials JSON member \"certificate\" is not JSON text".into()));
            }
        };
        if certificate.is_some() && client_id.is_none() {
            // Temporary credentials are a Hawk key: never sent as a Bearer token.
            return Err(Error::Credentials("the credentials JSON has a \"certificate\" but no \"clientId\"".into()));
        }
        Ok(Self { client_id, access_token, certificate })
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

/// A certificate given as text must be a JSON object; it is kept as given.
fn certificate_text(text: &str) -> Result<String, Error> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(text.trim().to_owned()),
        _ => Err(Error::Credentials("the certificate is not a JSON object".into())),
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
        let c = Credentials::hawk("me", TOKEN, None);
        let shown = format!("{c:?}");
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(shown.contains("me"), "{shown}");
        assert!(!format!("{c:#?}").contains(TOKEN));
    }

    #[test]
    fn certificates_come_from_the_file_or_taskclusters_variables() {
        let cert = r#"{"seed":"s","version":1}"#;
        let c = Credentials::parse(&format!(r#"{{"clientId":"me","accessToken":"{TOKEN}","certificate":{cert:?}}}"#))
            .unwrap();
        assert_eq!(c, Credentials::hawk("me", TOKEN, Some(cert.into())));
        let c = Credentials::parse(&format!(r#"{{"clientId":"me","accessToken":"{TOKEN}","certificate":{cert}}}"#))
            .unwrap();
        assert_eq!(c.certificate.as_deref(), Some(cert));
        assert!(c.uses_hawk() && !Credentials::bearer(TOKEN).uses_hawk());
        let err = Credentials::parse(&format!(r#"{{"clientId":"me","accessToken":"{TOKEN}","certificate":"x"}}"#));
        assert!(err.unwrap_err().to_string().contains("certificate"));
        let err = Credentials::parse(&format!(r#"{{"accessToken":"{TOKEN}","certificate":{cert}}}"#)).unwrap_err();
        assert!(err.to_string().contains("no \"clientId\""), "{err}");

        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(Credentials::from_taskcluster_env(env(&[("TASKCLUSTER_CLIENT_ID", "me")])).unwrap(), None);
        let c = Credentials::from_taskcluster_env(env(&[
            ("TASKCLUSTER_CLIENT_ID", "me"),
            ("TASKCLUSTER_ACCESS_TOKEN", TOKEN),
            ("TASKCLUSTER_CERTIFICATE", r#" {"seed":"s","version":1} "#),
        ]))
        .unwrap();
        assert_eq!(c, Some(Credentials::hawk("me", TOKEN, Some(cert.into()))));
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
