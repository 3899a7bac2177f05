//! The [`Access`] extractor: a route of a group that `PROTECTED_ROUTES` lists needs a bearer
//! token, and, where the route says so, one of its scopes.
//!
//! A handler states what it needs in its signature (`_: Access<Consume>`), first among its
//! arguments so that a refusal comes before the body is read. When the route's group is not
//! protected (development, by default) the extractor lets every request through, so the
//! original curl flows work unchanged. A missing or bad token is the 401 of
//! [`AuthUser`](super::auth::AuthUser); a token without the scope is
//! `403 insufficient_scope` with the RFC 6750 challenge naming the scope.

use std::marker::PhantomData;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::Method;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::auth::access::{RouteGroup, Scope};
use crate::error::ApiError;
use crate::routes::auth::authenticate;

/// What a route needs: its group, and the scope a token must carry when the group is
/// protected (`None`: any valid token).
pub trait Requirement {
    /// The route's group in `PROTECTED_ROUTES`.
    const GROUP: RouteGroup;
    /// The scope its token needs.
    const SCOPE: Option<Scope>;
}

/// `POST /enqueue`.
pub struct Enqueue;
/// Taking work and looking at it: dequeue, leases, acknowledgements, dead letters, a task.
pub struct Consume;
/// `GET /queue/status`: any token.
pub struct QueueStatus;
/// The CPU-heavy routes.
pub struct Compute;
/// `GET /stream`: any token.
pub struct Stream;
/// `GET /notifications`: any token.
pub struct Notifications;

impl Requirement for Enqueue {
    const GROUP: RouteGroup = RouteGroup::Queue;
    const SCOPE: Option<Scope> = Some(Scope::Enqueue);
}

impl Requirement for Consume {
    const GROUP: RouteGroup = RouteGroup::Queue;
    const SCOPE: Option<Scope> = Some(Scope::Consume);
}

impl Requirement for QueueStatus {
    const GROUP: RouteGroup = RouteGroup::Queue;
    const SCOPE: Option<Scope> = None;
}

impl Requirement for Compute {
    const GROUP: RouteGroup = RouteGroup::Compute;
    const SCOPE: Option<Scope> = Some(Scope::Compute);
}

impl Requirement for Stream {
    const GROUP: RouteGroup = RouteGroup::Stream;
    const SCOPE: Option<Scope> = None;
}

impl Requirement for Notifications {
    const GROUP: RouteGroup = RouteGroup::Notifications;
    const SCOPE: Option<Scope> = None;
}

/// Proof that the request may use a route needing `R`.
#[derive(Debug)]
pub struct Access<R>(PhantomData<R>);

impl<S, R> FromRequestParts<S> for Access<R>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    R: Requirement,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        if !state.config.auth.protected_routes.contains(R::GROUP) {
            return Ok(Self(PhantomData));
        }
        let principal = authenticate(parts, &state).await?;
        match R::SCOPE {
            Some(scope) if !principal.scopes.contains(scope) => {
                Err(ApiError::InsufficientScope(scope))
            }
            _ => Ok(Self(PhantomData)),
        }
    }
}

/// `GET /dequeue` changes state, so it is served only with `DEQUEUE_ON_GET=true` (the
/// development default, as in the original); otherwise `GET` and `HEAD` get `405` with
/// `Allow: POST`, before any token is looked at.
#[derive(Debug)]
pub struct DequeueMethod;

impl<S> FromRequestParts<S> for DequeueMethod
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let safe = parts.method == Method::GET || parts.method == Method::HEAD;
        if safe && !AppState::from_ref(state).config.auth.dequeue_on_get {
            return Err(ApiError::MethodNotAllowed {
                allow: Some(axum::http::HeaderValue::from_static("POST")),
            });
        }
        Ok(Self)
    }
}
