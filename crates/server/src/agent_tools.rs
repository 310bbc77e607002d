//! `/mcp`: the agent tools (`sm-mcp`) over streamable HTTP, for a caller with an API token
//! (`Authorization: Bearer smt_…`, checked as the REST API checks it); a read-only token gets
//! the read tools only. Only the loopback names and the host of `--public-url` are accepted in
//! `Host` (so that a web page cannot reach a local mirror through DNS rebinding).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use crate::{AppState, ServeConfig, api};

/// The `Host` names `/mcp` answers: loopback, and the public URL's host (with its port, if it
/// names one).
pub fn allowed_hosts(config: &ServeConfig) -> Vec<String> {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .map(str::to_owned)
        .to_vec();
    if let Some(public) = &config.public_url {
        let rest = public.split_once("://").map_or(public.as_str(), |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if !authority.is_empty() {
            hosts.push(authority.to_ascii_lowercase());
        }
    }
    hosts
}

/// One MCP request: the token first (no tool is reached without one), then the transport.
pub async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let token = match api::token_of(&state, request.headers()).await {
        Ok(token) => token,
        Err(error) => {
            // How to authenticate, as MCP clients expect it on a 401.
            let mut refused = api::ApiError(error).into_response();
            refused.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"stripe-mirror\""),
            );
            return refused;
        }
    };
    let mut service = if token.read_only {
        state.agent_read_tools.clone()
    } else {
        state.agent_tools.clone()
    };
    match tower_service::Service::call(&mut service, request).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    }
}
