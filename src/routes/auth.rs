//! `POST /login`, `POST /logout`, `GET /protected`, and the [`AuthUser`] extractor.
//!
//! Authentication is an extractor, so a handler that takes an [`AuthUser`] cannot run for an
//! unauthenticated request and no handler repeats the header parsing. Its rejections are the
//! contract's 401 bodies with an RFC 6750 `WWW-Authenticate: Bearer` challenge.
//!
//! Login and logout publish `auth.login` / `auth.logout` application events carrying the
//! username only: never a token, a token id or a password.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

use crate::app::AppState;
use crate::auth::jwt::{Claims, format_lifetime};
use crate::auth::{LoginError, TokenError};
use crate::error::{ApiError, AuthFailure};
use crate::events::{Level, NewEvent};
use crate::extract::ApiJson;

/// `POST /login`, `POST /logout`, `GET /protected`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/protected", get(protected))
}

/// The verified, unrevoked claims of the request's bearer token.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Claims);

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)
            .ok_or(ApiError::Unauthorized(AuthFailure::MissingToken))?;
        let state = AppState::from_ref(state);
        state.auth.authenticate(token).map(AuthUser).map_err(|err| {
            ApiError::Unauthorized(match err {
                TokenError::Invalid => AuthFailure::InvalidToken,
                TokenError::Revoked => AuthFailure::RevokedToken,
            })
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive
/// (RFC 7235). `None` when there is no such header, another scheme, or an empty token.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoginResponse {
    message: &'static str,
    token: String,
    token_id: uuid::Uuid,
    expires_in: String,
}

/// Checks the credentials and answers a token. Only wrong credentials spend the client's
/// failed-login budget; malformed requests are answered before it is consulted.
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<LoginResponse>, ApiError> {
    let (Some(username), Some(password)) =
        (non_empty(&body, "username"), non_empty(&body, "password"))
    else {
        return Err(ApiError::BadRequest {
            code: "missing_credentials",
            message: "Username and password required",
        });
    };
    let outcome = state.auth.login(peer.ip(), username, password);
    let label = match &outcome {
        Ok(_) => "success",
        Err(LoginError::InvalidCredentials) => "invalid_credentials",
        Err(LoginError::RateLimited(_)) => "rate_limited",
        Err(LoginError::Signing(_)) => "error",
    };
    state
        .metrics
        .counter("auth_login_attempts_total", &[("outcome", label)])
        .increment(1);
    let issued = outcome.map_err(|err| match err {
        LoginError::InvalidCredentials => {
            tracing::info!(client = %peer.ip(), "login refused: invalid credentials");
            ApiError::InvalidCredentials
        }
        LoginError::RateLimited(wait) => {
            tracing::warn!(client = %peer.ip(), "login refused: too many failures");
            ApiError::RateLimited {
                retry_after: wait.0,
            }
        }
        LoginError::Signing(err) => ApiError::Internal(err.to_string()),
    })?;
    let username = &issued.claims.username;
    tracing::info!(%username, "login succeeded");
    state.events.publish(
        NewEvent::app(
            "auth.login",
            Level::Success,
            format!("{username} logged in"),
        )
        .with("username", username),
    );
    Ok(Json(LoginResponse {
        message: "Login successful",
        token: issued.token,
        token_id: issued.claims.jti,
        expires_in: format_lifetime(state.auth.token_lifetime()),
    }))
}

/// A non-empty string field of a JSON object body.
fn non_empty<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field)?.as_str().filter(|s| !s.is_empty())
}

/// Revokes the request's token until it expires.
async fn logout(
    State(state): State<AppState>,
    AuthUser(claims): AuthUser,
) -> Result<Json<Value>, ApiError> {
    state
        .auth
        .logout(&claims)
        .map_err(|_| ApiError::Unauthorized(AuthFailure::RevokedToken))?;
    let username = &claims.username;
    tracing::info!(%username, "logout");
    state.events.publish(
        NewEvent::app("auth.logout", Level::Info, format!("{username} logged out"))
            .with("username", username),
    );
    Ok(Json(
        serde_json::json!({ "message": "Logged out successfully" }),
    ))
}

#[derive(Serialize)]
struct ProtectedResponse {
    message: &'static str,
    user: Claims,
}

/// Shows the token's claims to its bearer.
async fn protected(AuthUser(claims): AuthUser) -> Json<ProtectedResponse> {
    Json(ProtectedResponse {
        message: "This is a protected route",
        user: claims,
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with_authorization(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(value).expect("valid header bytes"),
        );
        headers
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "  Bearer   abc  "] {
            assert_eq!(
                bearer_token(&with_authorization(value.as_bytes())),
                Some("abc"),
                "{value}"
            );
        }
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_no_token() {
        assert_eq!(bearer_token(&HeaderMap::new()), None);
        for value in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"Basic abc",
            b"Bearerabc",
            b"Token x",
            b"Bearer \xff",
        ] {
            assert_eq!(
                bearer_token(&with_authorization(value)),
                None,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
