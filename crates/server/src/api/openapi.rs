//! The OpenAPI 3.1 document of `/api/v1`, made from [`super::ROUTES`] (the table the router is
//! built from), so the document and the routes served cannot differ.

use axum::Json;
use serde_json::{Map, Value, json};

use super::ROUTES;

/// The document: every route with its method, summary, path parameters and error answers.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        let parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                let about = match name {
                    "connection" => "a connection: acct_…:test|live, acct_…, or its name",
                    "table" => "a mirrored table, as `stripe-mirror tables` lists them",
                    "channel" => "a notification channel's name or id",
                    "rule" => "a notification rule's name or id",
                    _ => "an object's id",
                };
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}, "description": about})
            })
            .collect();
        entry[route.method.to_ascii_lowercase()] = json!({
            "summary": route.summary,
            "parameters": parameters,
            "security": [{"bearer": []}],
            "x-read-only-token": route.read_only_allowed,
            "responses": {
                "200": {"description": "done", "content": {"application/json": {}}},
                "default": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "stripe-mirror", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "a token from `stripe-mirror token create`"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "hint": {"type": "string"}
            }, "required": ["code", "message"]}}}}
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(openapi())
}
