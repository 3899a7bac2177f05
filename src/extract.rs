//! Extractors and parameter parsers whose failures are [`ApiError`]s.
//!
//! axum's own extractors answer plain text on failure; these wrap them so that a malformed body,
//! a wrong content type, an oversized body or a bad query value all produce the contract's JSON
//! error. Query values are parsed with [`int_param`] and [`choice_param`], which name the field
//! and the allowed range instead of silently falling back to a default.

use std::error::Error as _;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::ApiError;

/// JSON request body; rejections become 400 `invalid_json`, 415, 413 or 400 `invalid_input`.
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
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let limit = AppState::from_ref(state).config.body_limit_bytes;
                Err(json_rejection(rejection, limit))
            }
        }
    }
}

fn json_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        JsonRejection::JsonSyntaxError(err) => ApiError::InvalidJson(innermost_message(&err)),
        JsonRejection::JsonDataError(err) => {
            let path = err
                .source()
                .and_then(|inner| inner.source())
                .and_then(|inner| {
                    inner.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>()
                })
                .map(|e| (e.path().to_string(), e.inner().to_string()));
            match path {
                Some((field, message)) if field != "." => {
                    ApiError::invalid_input(field.clone(), format!("{field}: {message}"))
                }
                Some((_, message)) => ApiError::invalid_input("body", message),
                None => ApiError::invalid_input("body", innermost_message(&err)),
            }
        }
        JsonRejection::BytesRejection(err) if err.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge { limit }
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge { limit }
        }
        other => ApiError::invalid_input("body", other.body_text()),
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
