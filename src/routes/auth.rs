//! `POST /login`, `POST /logout`, `GET /protected`, and the [`AuthUser`] extractor.
//!
//! Authentication is an extractor, so a handler that takes an [`AuthUser`] cannot run for an
//! unauthenticated request and no handler repeats the header parsing. Its rejections are the
//! contract's 401 bodies with an RFC 6750 `WWW-Authenticate: Bearer` challenge.
//!
//! The auth service publishes the `auth.login` / `auth.logout` application events itself.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::jwt::{Claims, format_lifetime};
use crate::auth::{LoginError, LogoutError, Principal, RevokeError, TokenError};
use crate::client_ip::ClientIp;
use crate::error::{ApiError, AuthFailure, ErrorBody};
use crate::extract::ApiJson;
use crate::openapi::tags;

/// `POST /login`, `POST /logout`, `GET /protected`. Their answers carry tokens and claims, so
/// no cache (a browser's, a proxy's) may keep them: `Cache-Control: no-store`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(protected))
        .route_layer(tower::util::MapResponseLayer::new(no_store))
}

/// A synchronous map, not `axum::middleware::map_response`, whose async function costs a boxed
/// future per request.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Documentation of the 401 of the bearer routes.
const UNAUTHORIZED: &str = "`token_required` (Access token required), `invalid_token` (Invalid or \
expired token) or `token_revoked` (Token has been invalidated)";

/// What the request's verified, unrevoked bearer token grants.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Arc<Principal>);

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        authenticate(parts, &AppState::from_ref(state))
            .await
            .map(AuthUser)
    }
}

/// What the request's bearer token grants, or the contract's 401.
pub(super) async fn authenticate(
    parts: &Parts,
    state: &AppState,
) -> Result<Arc<Principal>, ApiError> {
    let token =
        bearer_token(&parts.headers).ok_or(ApiError::Unauthorized(AuthFailure::MissingToken))?;
    state
        .auth
        .authenticate(token)
        .await
        .map_err(|err| match err {
            TokenError::Invalid => ApiError::Unauthorized(AuthFailure::InvalidToken),
            TokenError::Revoked => ApiError::Unauthorized(AuthFailure::RevokedToken),
            TokenError::Store(err) => ApiError::Store(err),
        })
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive
/// (RFC 7235). `None` when there is no such header, another scheme, or an empty token.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The credentials of a configured user.
#[derive(ToSchema)]
#[expect(
    dead_code,
    reason = "documentation only: the handler reads the JSON itself, so that \
    a missing or empty field gets the contract's message rather than a parser's"
)]
struct LoginRequest {
    /// A configured user's name; an empty one is `missing_credentials`.
    #[schema(min_length = 1, example = "admin")]
    username: String,
    /// Its password; an empty one is `missing_credentials`.
    #[schema(min_length = 1, example = "admin123", format = Password)]
    password: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct LoginResponse {
    #[schema(example = "Login successful")]
    message: &'static str,
    /// The HS256 access token, for `Authorization: Bearer <token>`.
    token: String,
    /// The token's `jti` claim.
    token_id: uuid::Uuid,
    /// The token's lifetime, `JWT_TTL_SECONDS` in the largest exact unit.
    #[schema(example = "1h")]
    expires_in: String,
}

/// Exchanges a username and password for an access token.
///
/// Each attempt reserves a unit of the client's failed-login budget (`LOGIN_MAX_PER_MINUTE`)
/// and of the account's (`LOGIN_ACCOUNT_MAX_PER_MINUTE`, from any client) before the password
/// is checked, and a login that succeeds gives them back: only wrong credentials spend them,
/// and parallel guesses get no more answers than the budgets. Malformed requests are answered
/// before they are consulted. Successful logins have a budget of
/// their own per client and per account (`LOGIN_SUCCESS_MAX_PER_MINUTE`), far above human use,
/// because each token can be logged out and each logout is remembered until the token expires.
///
/// The client is the TCP peer, or behind a reverse proxy listed in `TRUSTED_PROXIES` the
/// address that proxy puts in `X-Forwarded-For`; the header of any other sender is ignored.
#[utoipa::path(
    post,
    path = "/login",
    tag = tags::AUTH,
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, body = ErrorBody,
            description = "`missing_credentials` (Username and password required) or \
                `invalid_json`"),
        (status = 401, body = ErrorBody, description = "`invalid_credentials`",
            headers(
                ("WWW-Authenticate" = String, description = "The Bearer challenge (RFC 6750)"),
            )),
        (status = 413, body = ErrorBody, description = "`payload_too_large`"),
        (status = 415, body = ErrorBody, description = "`unsupported_media_type`"),
        (status = 429, body = ErrorBody,
            description = "`rate_limited`: too many failed logins from this client \
                (`LOGIN_MAX_PER_MINUTE`) or at this account (`LOGIN_ACCOUNT_MAX_PER_MINUTE`, \
                with a back-off), or too many logins from this client or to this account \
                (`LOGIN_SUCCESS_MAX_PER_MINUTE`)",
            headers(("Retry-After" = u64, description = "Seconds until the next attempt counts"))),
        (status = 500, body = ErrorBody,
            description = "`internal_error`: the token could not be signed"),
    ),
)]
async fn login(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<LoginResponse>, ApiError> {
    let missing = |field| ApiError::MissingField {
        code: "missing_credentials",
        field,
        message: "Username and password required",
    };
    let username = non_empty(&body, "username").ok_or_else(|| missing("username"))?;
    let password = non_empty(&body, "password").ok_or_else(|| missing("password"))?;
    let outcome = state.auth.login(client, username, password).await;
    let label = match &outcome {
        Ok(_) => "success",
        Err(LoginError::InvalidCredentials) => "invalid_credentials",
        Err(LoginError::RateLimited(_)) => "rate_limited",
        Err(LoginError::TooManyLogins(_)) => "too_many_logins",
        Err(LoginError::Signing(_) | LoginError::Store(_)) => "error",
    };
    state
        .metrics
        .counter("auth_login_attempts_total", &[("outcome", label)])
        .increment(1);
    let issued = outcome.map_err(|err| match err {
        LoginError::InvalidCredentials => {
            tracing::info!(%client, "login refused: invalid credentials");
            ApiError::InvalidCredentials
        }
        LoginError::RateLimited(wait) => {
            tracing::warn!(%client, "login refused: too many failures");
            ApiError::RateLimited {
                retry_after: wait.0,
            }
        }
        LoginError::TooManyLogins(wait) => {
            tracing::warn!(%client, "login refused: too many logins");
            ApiError::RateLimited {
                retry_after: wait.0,
            }
        }
        LoginError::Signing(err) => ApiError::Internal(err.to_string()),
        LoginError::Store(err) => ApiError::Store(err),
    })?;
    tracing::info!(user_id = issued.claims.user_id, "login succeeded");
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

#[derive(Serialize, ToSchema)]
struct LogoutResponse {
    #[schema(example = "Logged out successfully")]
    message: &'static str,
}

/// Revokes the request's token until it expires.
#[utoipa::path(
    post,
    path = "/logout",
    tag = tags::AUTH,
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The token is revoked", body = LogoutResponse),
        (status = 401, body = ErrorBody, description = UNAUTHORIZED,
            headers(
                ("WWW-Authenticate" = String, description = "The Bearer challenge (RFC 6750)"),
            )),
        (status = 503, body = ErrorBody,
            description = "`store_unavailable` (the revocation could not be recorded or checked) \
                or `revocation_list_full` (`REVOCATION_LIST_MAX` live revocations); the token \
                stays valid",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn logout(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
) -> Result<Json<LogoutResponse>, ApiError> {
    let claims = &principal.claims;
    state.auth.logout(claims).await.map_err(|err| match err {
        LogoutError::AlreadyRevoked => ApiError::Unauthorized(AuthFailure::RevokedToken),
        LogoutError::NotRecorded(RevokeError::Full { capacity }) => {
            tracing::warn!(capacity, "logout refused: the revocation list is full");
            state
                .metrics
                .counter("auth_revocations_refused_total", &[])
                .increment(1);
            ApiError::Unavailable {
                code: "revocation_list_full",
                message: "Too many tokens are logged out at the moment; retry later",
                retry_after: state.auth.sweep_period(),
            }
        }
        LogoutError::NotRecorded(RevokeError::Store(err)) => ApiError::Store(err),
    })?;
    tracing::info!(user_id = claims.user_id, "logout");
    Ok(Json(LogoutResponse {
        message: "Logged out successfully",
    }))
}

#[derive(Serialize, ToSchema)]
struct ProtectedResponse<'a> {
    #[schema(example = "This is a protected route")]
    message: &'static str,
    /// The verified claims of the token.
    #[schema(value_type = Claims)]
    user: &'a RawValue,
}

/// Shows the token's claims to its bearer.
#[utoipa::path(
    get,
    path = "/protected",
    tag = tags::AUTH,
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The token is valid", body = ProtectedResponse),
        (status = 401, body = ErrorBody, description = UNAUTHORIZED,
            headers(
                ("WWW-Authenticate" = String, description = "The Bearer challenge (RFC 6750)"),
            )),
        (status = 503, body = ErrorBody,
            description = "`store_unavailable`: the token's revocation could not be checked, so \
                it is refused",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ),
)]
async fn protected(AuthUser(principal): AuthUser) -> Response {
    // The claims were written as JSON when the token was verified: copied, not serialized.
    Json(ProtectedResponse {
        message: "This is a protected route",
        user: &principal.claims_json,
    })
    .into_response()
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
