//! Extractors and parameter parsers whose failures are [`ApiError`]s.
//!
//! axum's own extractors answer plain text on failure; these wrap them so that a malformed body,
//! a wrong content type, an oversized body or a bad query value all produce the contract's JSON
//! error. Query values are parsed with [`int_param`] and [`choice_param`], which name the field
//! and the allowed range instead of silently falling back to a default.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::ApiError;

/// JSON request body; rejections become 400 `invalid_json`, 415, 413 or 400 `invalid_input`.
///
/// It accepts what axum's `Json` accepts (`application/json` or `application/*+json`, any
/// parameters) and answers with the same errors, but on a JSON value's path it costs less:
/// the content type is matched without building a `Mime`, and the body is parsed in one pass
/// without tracking the path of each value, which is needed only to name the field of a data
/// error, so a body that fails that way is parsed a second time, with the tracking.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(is_json_content_type);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let body = read_body(req.into_body(), &AppState::from_ref(state)).await?;
        parse_json(&body).map(Self)
    }
}

/// A JSON body that may be left out: an empty body (with or without a content type) reads as
/// `T::default()`; any other body is read as [`ApiJson`] reads it. For requests whose every
/// member is optional, so `curl -X POST` works without `-d '{}'`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(is_json_content_type);
        let body = read_body(req.into_body(), &AppState::from_ref(state)).await?;
        if body.is_empty() {
            return Ok(Self(T::default()));
        }
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&body).map(Self)
    }
}

/// Reads a whole request body, refusing one of more than `BODY_LIMIT_BYTES` with a 413 and one
/// that takes longer than `BODY_READ_TIMEOUT_SECONDS` to arrive with a 408 (which also closes
/// an HTTP/1.1 connection: what is left of the body would be read as the next request).
///
/// This is where both are enforced: every body the API reads is read here (through
/// [`ApiJson`]), so requests carry no per-request limit in their extensions, which is what
/// axum's `DefaultBodyLimit` layer would add to every request, bodies or not.
async fn read_body(body: Body, state: &AppState) -> Result<Bytes, ApiError> {
    let limit = state.config.server.body_limit_bytes;
    let deadline = state.config.server.body_read_timeout;
    let Ok(read) = tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await else {
        return Err(ApiError::BodyTimeout { deadline });
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge { limit }),
        Err(err) => Err(ApiError::invalid_input(
            "body",
            format!("the request body could not be read: {err}"),
        )),
    }
}

/// `application/json` or `application/<anything>+json`, in any case, with any parameters.
fn is_json_content_type(content_type: &str) -> bool {
    // What nearly every client sends, matched before any splitting.
    if content_type == "application/json" {
        return true;
    }
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let suffix = subtype
        .len()
        .checked_sub(5)
        .and_then(|at| subtype.get(at..));
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || suffix.is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json")))
}

/// Parses a JSON body: a syntax error is 400 `invalid_json`; a value of the wrong shape is 400
/// `invalid_input` naming the field (its path, `body` for the whole value).
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let err = match serde_json::from_slice(body) {
        Ok(value) => return Ok(value),
        Err(err) => err,
    };
    if !err.is_data() {
        return Err(ApiError::InvalidJson(err.to_string()));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(tracked) if tracked.path().iter().next().is_some() => {
            let field = tracked.path().to_string();
            let message = format!("{field}: {}", tracked.inner());
            Err(ApiError::invalid_input(field, message))
        }
        // The whole value is of the wrong shape (or, were the two parses to disagree, the
        // first one's error is the answer).
        _ => Err(ApiError::invalid_input("body", err.to_string())),
    }
}

/// The deepest `source()` of an error, which carries the precise parser message.
fn innermost_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Query string; a query that cannot be decoded at all becomes 400 `invalid_input`.
///
/// Deserialize into a struct of `Option<String>` fields and parse each with [`int_param`] or
/// [`choice_param`], so every bad value is reported with its field name and allowed range.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(err)) => {
                Err(ApiError::invalid_input("query", innermost_message(&err)))
            }
            Err(other) => Err(ApiError::invalid_input("query", other.body_text())),
        }
    }
}

/// Parses an optional integer parameter: absent means `default`; anything that is not an integer
/// within `range` is a 400 naming `field` and the range.
pub fn int_param<T>(
    field: &str,
    raw: Option<&str>,
    range: RangeInclusive<T>,
    default: T,
) -> Result<T, ApiError>
where
    T: FromStr + PartialOrd + Display + Copy,
{
    let Some(raw) = raw else {
        return Ok(default);
    };
    let out_of_range = || {
        ApiError::invalid_input(
            field,
            format!(
                "{field} must be an integer between {} and {} (got {raw:?})",
                range.start(),
                range.end()
            ),
        )
    };
    let value: T = raw.trim().parse().map_err(|_| out_of_range())?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(out_of_range())
    }
}

/// Parses an optional parameter that takes one of a few names: absent means `default`.
pub fn choice_param<T: Copy>(
    field: &str,
    raw: Option<&str>,
    choices: &[(&str, T)],
    default: T,
) -> Result<T, ApiError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    choices
        .iter()
        .find(|(name, _)| *name == raw)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            ApiError::invalid_input(
                field,
                format!("{field} must be one of {} (got {raw:?})", names.join(", ")),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_matched_like_axum_does() {
        for accepted in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.api+json",
            "application/problem+JSON ; q=1",
        ] {
            assert!(is_json_content_type(accepted), "{accepted}");
        }
        for refused in [
            "",
            "json",
            "text/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonp",
            "application/+jsonx",
            "application/json garbage",
        ] {
            assert!(!is_json_content_type(refused), "{refused}");
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[expect(dead_code, reason = "only parsed")]
    struct Typed {
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[expect(dead_code, reason = "only parsed")]
    struct Item {
        n: u8,
    }

    #[test]
    fn json_errors_say_what_and_where() {
        let syntax = parse_json::<Typed>(br#"{"items": [}"#).unwrap_err();
        assert!(
            matches!(syntax, ApiError::InvalidJson(ref m) if m.contains("line 1")),
            "{syntax:?}"
        );
        let truncated = parse_json::<Typed>(br#"{"items": "#).unwrap_err();
        assert!(
            matches!(truncated, ApiError::InvalidJson(_)),
            "{truncated:?}"
        );
        let nested = parse_json::<Typed>(br#"{"items": [{"n": 1}, {"n": 300}]}"#).unwrap_err();
        match nested {
            ApiError::InvalidInput { field, message } => {
                assert_eq!(field, "items[1].n");
                assert!(
                    message.starts_with("items[1].n: invalid value: integer `300`"),
                    "{message}"
                );
            }
            other => panic!("expected invalid_input, got {other:?}"),
        }
        let whole = parse_json::<Typed>(br#""text""#).unwrap_err();
        assert!(
            matches!(whole, ApiError::InvalidInput { ref field, .. } if field == "body"),
            "{whole:?}"
        );
        assert!(parse_json::<Typed>(br#"{"items": [{"n": 255}]}"#).is_ok());
    }

    #[test]
    fn int_param_defaults_when_absent() {
        assert_eq!(int_param("n", None, 0..=10, 7).unwrap(), 7);
    }

    #[test]
    fn int_param_names_field_and_range() {
        for bad in ["abc", "1.5", "-1", "11", "", "1e3"] {
            let err = int_param::<u32>("chunkSize", Some(bad), 0..=10, 1).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("chunkSize"), "{message}");
            assert!(message.contains("between 0 and 10"), "{message}");
            assert!(
                matches!(err, ApiError::InvalidInput { ref field, .. } if field == "chunkSize")
            );
        }
        assert_eq!(int_param("n", Some(" 10 "), 0..=10, 1).unwrap(), 10);
    }

    #[test]
    fn choice_param_lists_the_choices() {
        let choices = [("json", 1), ("ndjson", 2)];
        assert_eq!(
            choice_param("format", Some("ndjson"), &choices, 1).unwrap(),
            2
        );
        assert_eq!(choice_param("format", None, &choices, 1).unwrap(), 1);
        let err = choice_param("format", Some("xml"), &choices, 1).unwrap_err();
        assert!(err.to_string().contains("json, ndjson"));
    }
}
