//! Admin API authentication (issue 13, must-have 5), when `admin-auth` is
//! on: HTTP Basic with the broker's SCRAM users (the password is checked
//! against the salted credential, as SASL/PLAIN is). Reading (GET, HEAD)
//! needs any user; changing anything (upload, deploy, undeploy, replay,
//! pause, ...) a super user. With `--authorizer on`, any user may also
//! create deployments and replays: they run as that user and its topic
//! ACLs decide (`run_as`). `/healthz` stays open for probes; `/metrics`
//! can be served without credentials on its own listener
//! (`metrics-listen`).
//!
//! Failed logins count against the same per-address budget as Kafka
//! logins and are logged the same rate-limited way. Basic sends the
//! password with every request: use it with `admin-tls`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use vigil_api::ErrorKind;

use super::error::ApiError;
use super::run_as::AdminPrincipal;
use super::AdminState;
use crate::security::Security;

/// The user name and password of a Basic `Authorization` header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(B64.decode(token.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn unauthorized(message: &str) -> Response {
    let mut r = ApiError::with_status(StatusCode::UNAUTHORIZED, ErrorKind::Invalid, message)
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"vigil\", charset=\"UTF-8\""),
    );
    r
}

/// Whether `password` is `user`'s (one PBKDF2 run, off the async workers).
async fn verify(security: &Security, user: &str, password: String) -> bool {
    let Some(cred) = security.credentials.any(user) else {
        return false;
    };
    tokio::task::spawn_blocking(move || cred.verify_password(&password))
        .await
        .unwrap_or(false)
}

/// The middleware: passes the request on, or answers 401/403/429.
pub(super) async fn require(State(s): State<AdminState>, mut req: Request, next: Next) -> Response {
    let Some(security) = s.auth.clone() else {
        return next.run(req).await;
    };
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    match authenticate(&security, req.headers(), peer).await {
        Err(r) => r,
        Ok(user) => {
            let reading = matches!(*req.method(), Method::GET | Method::HEAD);
            let principal = format!("User:{user}");
            let under_acls = security.authz.enabled()
                && *req.method() == Method::POST
                && matches!(req.uri().path(), "/v1/deployments" | "/v1/replays");
            if !reading && !under_acls && !security.is_super_user(&principal) {
                return ApiError::with_status(
                    StatusCode::FORBIDDEN,
                    ErrorKind::Invalid,
                    format!("user {user:?} may only read; changes need a super user"),
                )
                .into_response();
            }
            req.extensions_mut().insert(AdminPrincipal {
                principal,
                host: peer.ip().to_string(),
            });
            next.run(req).await
        }
    }
}

async fn authenticate(
    security: &Arc<Security>,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<String, Response> {
    if let Err(wait) = security.login_allowed(peer) {
        let mut r = ApiError::with_status(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable,
            format!("too many failed logins from this address; retry in {wait} s"),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(r);
    }
    let Some((user, password)) = basic(headers) else {
        return Err(unauthorized("the admin API needs HTTP Basic credentials"));
    };
    if verify(security, &user, password).await {
        Ok(user)
    } else {
        security.login_failed(peer, &user, "HTTP Basic (admin API)", "invalid credentials");
        Err(unauthorized("invalid user name or password"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_headers_parse() {
        let mut h = HeaderMap::new();
        assert_eq!(basic(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6cDpALXc="),
        );
        assert_eq!(basic(&h), Some(("alice".into(), "p:@-w".into())));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(basic(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("basic !!!"));
        assert_eq!(basic(&h), None);
    }
}
