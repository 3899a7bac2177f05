//! The one error type of the HTTP layer and its JSON body.
//!
//! Every failure a client can see becomes an [`ApiError`]: handler errors, extractor rejections
//! (see [`crate::extract`]), unknown routes and wrong methods. Its [`IntoResponse`] writes the
//! contract's body `{"error": "<message>", "code": "<snake_case>", ...}` with the right status and
//! headers. Internal causes are logged (inside the request's span, so with its request id) and
//! never sent to the client.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::access::Scope;
use crate::fault::{STORE_RETRY_AFTER, StoreError};

/// Why a bearer token was refused; each maps to the contract's 401 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    MissingToken,
    /// Bad signature, malformed, wrong algorithm or expired.
    InvalidToken,
    /// Well-formed and unexpired, but revoked by a logout.
    RevokedToken,
}

/// An error answered to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route matches the path.
    #[error("Route not found")]
    RouteNotFound,
    /// The path exists but not with this method; `allow` lists the methods it has.
    #[error("Method not allowed")]
    MethodNotAllowed {
        /// Value of the `Allow` header.
        allow: Option<HeaderValue>,
    },
    /// The body is not valid JSON.
    #[error("Malformed JSON body: {0}")]
    InvalidJson(String),
    /// A JSON route was called without `Content-Type: application/json`.
    #[error("Expected request with `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// The body is larger than `BODY_LIMIT_BYTES`.
    #[error("Request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The request body did not arrive within `BODY_READ_TIMEOUT_SECONDS`.
    #[error("The request body did not arrive within {} seconds", .deadline.as_secs())]
    BodyTimeout {
        /// The configured deadline.
        deadline: Duration,
    },
    /// A query or body value of the wrong type or out of range.
    #[error("{message}")]
    InvalidInput {
        /// The offending field, as the client spelled it.
        field: String,
        /// Human explanation, including the allowed range.
        message: String,
    },
    /// A required field is missing (or `null`): a 400 with the contract's code and message,
    /// naming the field like every other field error.
    #[error("{message}")]
    MissingField {
        /// Machine-readable code, e.g. `task_required`.
        code: &'static str,
        /// The missing field.
        field: &'static str,
        /// Human message fixed by the contract (e.g. `"Task is required"`).
        message: &'static str,
    },
    /// A 400 with a message fixed by the contract.
    #[error("{message}")]
    BadRequest {
        /// Machine-readable code.
        code: &'static str,
        /// Human message.
        message: &'static str,
    },
    /// Bearer authentication failed.
    #[error("{}", auth_message(*.0))]
    Unauthorized(AuthFailure),
    /// A valid token without the scope the route needs.
    #[error("This token lacks the `{}` scope this route needs", .0.as_str())]
    InsufficientScope(Scope),
    /// Login with a wrong username or password.
    #[error("Invalid credentials")]
    InvalidCredentials,
    /// Too many requests from this client.
    #[error("Too many requests")]
    RateLimited {
        /// When the client may try again.
        retry_after: Duration,
    },
    /// A capacity limit is reached; the client may retry later.
    #[error("{message}")]
    Unavailable {
        /// Machine-readable code, e.g. `queue_full`.
        code: &'static str,
        /// Human message.
        message: &'static str,
        /// When the client may try again.
        retry_after: Duration,
    },
    /// The request conflicts with the resource's state (a lost lease, a key in flight).
    #[error("{message}")]
    Conflict {
        /// Machine-readable code, e.g. `lease_lost`.
        code: &'static str,
        /// Human message.
        message: &'static str,
    },
    /// Well-formed, but it cannot be done as asked (an idempotency key reused with another
    /// body).
    #[error("{message}")]
    Unprocessable {
        /// Machine-readable code.
        code: &'static str,
        /// Human message.
        message: &'static str,
    },
    /// A resource that is legitimately absent (e.g. `Queue is empty`).
    #[error("{message}")]
    NotFound {
        /// Machine-readable code.
        code: &'static str,
        /// Human message.
        message: &'static str,
    },
    /// The store could not be reached or could not record the change; nothing changed. The
    /// cause is logged, not sent.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The work did not finish before its deadline.
    #[error("Request timeout")]
    Timeout,
    /// A worker process or thread failed; the cause is logged, not sent.
    #[error("worker failed: {0}")]
    WorkerFailed(String),
    /// Anything else that is the server's fault; the cause is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

fn auth_message(failure: AuthFailure) -> &'static str {
    match failure {
        AuthFailure::MissingToken => "Access token required",
        AuthFailure::InvalidToken => "Invalid or expired token",
        AuthFailure::RevokedToken => "Token has been invalidated",
    }
}

/// The RFC 6750 challenge of a token that lacks `scope`.
fn insufficient_scope_challenge(scope: Scope) -> HeaderValue {
    HeaderValue::from_static(match scope {
        Scope::Enqueue => r#"Bearer realm="backflow", error="insufficient_scope", scope="enqueue""#,
        Scope::Consume => r#"Bearer realm="backflow", error="insufficient_scope", scope="consume""#,
        Scope::Compute => r#"Bearer realm="backflow", error="insufficient_scope", scope="compute""#,
    })
}

/// The JSON body of every error response.
// Also the `ErrorBody` schema of the OpenAPI document, so the documented shape and the one sent
// cannot drift apart.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Human-readable message; for `invalid_input` it names the field and the allowed range.
    #[schema(example = "Queue is empty")]
    pub error: String,
    /// Machine-readable snake_case code, e.g. `invalid_input`, `token_required`, `queue_full`.
    #[schema(example = "queue_empty")]
    pub code: &'static str,
    /// The offending field or parameter, as the client spelled it (every error about one field:
    /// `invalid_input`, and the `*_required` codes).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// Seconds to wait before retrying, as in `Retry-After` (429 and 503 only).
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    /// Shorthand for [`ApiError::InvalidInput`].
    pub fn invalid_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::RouteNotFound | Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::InvalidJson(_)
            | Self::InvalidInput { .. }
            | Self::MissingField { .. }
            | Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized(_) | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } | Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::WorkerFailed(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Machine-readable `code` of the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RouteNotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::InvalidJson(_) => "invalid_json",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::InvalidInput { .. } => "invalid_input",
            Self::BadRequest { code, .. }
            | Self::MissingField { code, .. }
            | Self::Unavailable { code, .. }
            | Self::Conflict { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::NotFound { code, .. } => code,
            Self::Unauthorized(AuthFailure::MissingToken) => "token_required",
            Self::Unauthorized(AuthFailure::InvalidToken) => "invalid_token",
            Self::Unauthorized(AuthFailure::RevokedToken) => "token_revoked",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::RateLimited { .. } => "rate_limited",
            Self::Store(_) => "store_unavailable",
            Self::Timeout => "timeout",
            Self::WorkerFailed(_) => "worker_failed",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The message sent to the client: internal causes are replaced by a generic sentence.
    fn public_message(&self) -> String {
        match self {
            Self::WorkerFailed(_) => "The worker failed to compute the result".to_owned(),
            Self::Internal(_) => "Internal server error".to_owned(),
            Self::Store(_) => {
                "The store is unavailable; nothing was changed, retry shortly".to_owned()
            }
            other => other.to_string(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::Unavailable { retry_after, .. } => {
                Some(*retry_after)
            }
            Self::Store(_) => Some(STORE_RETRY_AFTER),
            _ => None,
        }
    }
}

/// Seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let retry_after = self.retry_after().map(retry_after_seconds);
        let body = ErrorBody {
            error: self.public_message(),
            code: self.code(),
            field: match &self {
                Self::InvalidInput { field, .. } => Some(field.clone()),
                Self::MissingField { field, .. } => Some((*field).to_owned()),
                _ => None,
            },
            retry_after_seconds: retry_after,
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        match &self {
            Self::MethodNotAllowed { allow: Some(allow) } => {
                headers.insert(header::ALLOW, allow.clone());
            }
            Self::Unauthorized(failure) => {
                let challenge = match failure {
                    AuthFailure::MissingToken => r#"Bearer realm="backflow""#,
                    AuthFailure::InvalidToken => {
                        r#"Bearer realm="backflow", error="invalid_token", error_description="The access token is invalid or expired""#
                    }
                    AuthFailure::RevokedToken => {
                        r#"Bearer realm="backflow", error="invalid_token", error_description="The access token has been revoked""#
                    }
                };
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            Self::InsufficientScope(scope) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    insufficient_scope_challenge(*scope),
                );
            }
            // The rest of the body may still come: on HTTP/1.1 it would be read as the next
            // request, so the connection closes after this answer (HTTP/2 resets the stream
            // alone, and hyper leaves this header out there).
            Self::BodyTimeout { .. } => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Self::InvalidCredentials => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="backflow""#),
                );
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one_second() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn internal_causes_are_not_sent() {
        let err = ApiError::Internal("disk on fire at /var/secret".into());
        assert_eq!(err.public_message(), "Internal server error");
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn store_failures_are_503_with_a_retry_hint_and_no_cause() {
        let err = ApiError::from(StoreError::new("disk I/O error at /srv/data/backflow.db"));
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.code(), "store_unavailable");
        assert!(!err.public_message().contains("/srv"));
        assert_eq!(err.retry_after(), Some(STORE_RETRY_AFTER));
    }

    #[test]
    fn auth_failures_use_the_contract_messages() {
        assert_eq!(
            ApiError::Unauthorized(AuthFailure::MissingToken).to_string(),
            "Access token required"
        );
        assert_eq!(
            ApiError::Unauthorized(AuthFailure::InvalidToken).to_string(),
            "Invalid or expired token"
        );
        assert_eq!(
            ApiError::Unauthorized(AuthFailure::RevokedToken).to_string(),
            "Token has been invalidated"
        );
    }
}
