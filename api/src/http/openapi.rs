//! The OpenAPI document served at `GET /openapi.json`, generated from the handlers' own
//! annotations. The test below compares it with [`crate::http::routes::ROUTE_TABLE`], the list the
//! router is built from, so a route cannot be served undocumented or documented unserved.
//!
//! Handlers document their success answers only. The error answers are one set, made from the
//! error vocabulary ([`ErrorCode`]) and attached to every operation by [`Problems`]: every
//! error is the same problem+json shape, and which codes a status carries is listed once.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

use crate::http::error::ErrorCode;
use crate::http::routes::{audit, blobs, download, events, files, ops, tokens, tuf, uploads};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tooltool",
        description = "Content-addressed artifact store speaking the ToolTool protocol. Errors are \
                       application/problem+json. Callers authenticate with `Authorization: Bearer \
                       <token>` or with Hawk (id = clientId, key = accessToken), as the original \
                       tooltool.py client does; no header is anonymous."
    ),
    paths(
        download::download,
        uploads::create,
        uploads::search,
        uploads::complete,
        uploads::parts,
        uploads::get,
        files::search,
        files::get,
        files::patch,
        files::delete,
        files::batches,
        tokens::derive,
        tokens::permissions,
        audit::list,
        events::list,
        tuf::metadata,
        tuf::target,
        ops::lbheartbeat,
        ops::heartbeat,
        ops::version,
        ops::metrics,
        ops::openapi,
        blobs::get,
        blobs::put,
        blobs::put_part,
    ),
    components(schemas(tooltool_proto::Problem)),
    modifiers(&Security, &Problems)
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("A token from `tooltool-api clients create`, `token issue` or `POST /token`."))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
    }
}

/// Adds the problem+json answers of [`ErrorCode`] to every operation except the operations
/// routes (health checks and metrics never answer with a problem).
struct Problems;

impl utoipa::Modify for Problems {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
        for code in ErrorCode::ALL {
            by_status.entry(code.status().as_u16()).or_default().push(code.as_str());
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            if path.starts_with("/__") || path == "/metrics" || path == "/openapi.json" {
                continue;
            }
            let operations = [&mut item.get, &mut item.head, &mut item.post, &mut item.put, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                for (status, codes) in &by_status {
                    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
                    let response = ResponseBuilder::new()
                        .description(format!("Problem; `code` one of: {}", codes.join(", ")))
                        .content("application/problem+json", content)
                        .build();
                    operation.responses.responses.entry(status.to_string()).or_insert(response.into());
                }
            }
        }
    }
}

/// The document, with this build's version.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::document;
    use crate::http::routes::ROUTE_TABLE;

    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(document()).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "head", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    out.insert((path.clone(), method.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn openapi_lists_exactly_the_routes_the_router_serves() {
        let served: BTreeSet<(String, String)> = ROUTE_TABLE
            .iter()
            .flat_map(|(path, methods)| methods.iter().map(|m| (path.to_string(), m.to_string())))
            .collect();
        let documented = documented();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(undocumented.is_empty(), "served but not documented: {undocumented:?}");
        assert!(unserved.is_empty(), "documented but not served: {unserved:?}");
        assert!(served.len() >= 20, "the route table was read: {served:?}");
    }

    #[test]
    fn every_protocol_route_is_documented() {
        let documented = documented();
        for (path, method) in [
            ("/sha512/{digest}", "get"),
            ("/sha512/{digest}", "head"),
            ("/upload", "post"),
            ("/upload/complete/sha512/{digest}", "get"),
            ("/upload/complete/sha512/{digest}", "post"),
            ("/file/sha512/{digest}", "get"),
            ("/file/sha512/{digest}", "patch"),
            ("/upload", "get"),
            ("/upload/{id}", "get"),
            ("/file", "get"),
            ("/__heartbeat__", "get"),
            ("/__lbheartbeat__", "get"),
            ("/__version__", "get"),
        ] {
            assert!(documented.contains(&(path.to_owned(), method.to_owned())), "{method} {path}");
        }
    }

    #[test]
    fn schemas_of_the_wire_types_are_included() {
        let doc = serde_json::to_value(document()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in ["Problem", "Batch", "FileInfo", "UploadRequest", "PatchOp", "TokenRequest", "AuditPage"] {
            assert!(schemas.contains_key(name), "{name} missing: {:?}", schemas.keys().collect::<Vec<_>>());
        }
        let problem = &schemas["Problem"]["properties"];
        assert!(problem.get("type").is_some(), "serde renames are honoured: {problem}");
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    }

    #[test]
    fn every_api_operation_documents_the_problem_answers_once() {
        let doc = serde_json::to_value(document()).unwrap();
        let upload = &doc["paths"]["/upload"]["post"]["responses"];
        for status in ["400", "401", "403", "413", "415", "500"] {
            let problem = &upload[status]["content"]["application/problem+json"]["schema"]["$ref"];
            assert_eq!(problem, "#/components/schemas/Problem", "POST /upload {status}");
        }
        assert!(upload["415"]["description"].as_str().unwrap().contains("unsupported-media-type"));
        assert!(upload["200"]["content"]["application/json"].is_object(), "the success answer stays the handler's");
        assert!(doc["paths"]["/__lbheartbeat__"]["get"]["responses"].get("400").is_none());
    }
}
