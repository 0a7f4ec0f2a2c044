//! `GET /openapi.json`: the OpenAPI 3.1 description of every route,
//! parameter, body and answer. It is written by hand, next to the code it
//! describes; the tests check it against the router, and CI checks the real
//! server's answers against it with schemathesis.

/// The document, served as it is.
pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::router::{Route, route};

    #[test]
    fn the_document_is_openapi_3_1_and_every_path_in_it_is_routed() {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).expect("the document is JSON");
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().expect("paths");
        for (path, operations) in paths {
            for method in operations.as_object().expect("path item").keys() {
                let target = path.replace("{id}", "1");
                let routed = route(&method.to_uppercase(), &target, std::time::Duration::from_secs(60));
                assert!(
                    !matches!(routed, Route::NotFound | Route::MethodNotAllowed(_) | Route::BadTarget),
                    "{method} {path}: {routed:?}"
                );
            }
        }
    }
}
