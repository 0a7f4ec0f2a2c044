//! `GET /openapi.json`: the OpenAPI 3.1 description of every route,
//! parameter, body and answer. It is written by hand, next to the code it
//! describes; the tests check it against the router, and CI checks the real
//! server's answers against it with schemathesis.

/// The document, served as it is.
pub const DOCUMENT: &str = include_str!("openapi.json");
