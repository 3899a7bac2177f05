//! The members of a JSON object body, read one by one.
//!
//! The queue's bodies are read as a JSON object of any members (serde_json's `Map`) rather than
//! into typed structs, so that each mistake gets the contract's own answer: a missing (or
//! `null`) member is "required" or takes its default, and a member of the wrong type or out of
//! range is a 400 `invalid_input` naming the member and the accepted range. (A typed struct
//! would also accept an array such as `["t", 1]`, and answer serde's messages.)

use std::ops::RangeInclusive;

use serde_json::{Map, Number, Value};
use uuid::Uuid;

use crate::error::ApiError;

/// A JSON object body, as serde_json reads it.
pub type Object = Map<String, Value>;

/// The members of one body; each is taken once.
#[derive(Debug, Default)]
pub struct Fields(Object);

impl Fields {
    pub fn new(object: Object) -> Self {
        Self(object)
    }

    /// The member `name`; `None` when it is absent or `null` (as most JSON APIs read `null`).
    pub fn take(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name).filter(|value| !value.is_null())
    }

    /// An optional whole number within `range` (`2.0` is the integer 2; `2.5` is refused).
    pub fn int(&mut self, name: &str, range: RangeInclusive<u64>) -> Result<Option<u64>, ApiError> {
        let Some(value) = self.take(name) else {
            return Ok(None);
        };
        let refused = || {
            ApiError::invalid_input(
                name,
                format!(
                    "{name} must be an integer between {} and {} (got {})",
                    range.start(),
                    range.end(),
                    describe(&value)
                ),
            )
        };
        let number = match &value {
            Value::Number(number) => whole(number).ok_or_else(refused)?,
            _ => return Err(refused()),
        };
        if range.contains(&number) {
            Ok(Some(number))
        } else {
            Err(refused())
        }
    }

    /// An optional string.
    pub fn text(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(ApiError::invalid_input(
                name,
                format!("{name} must be a string (got {})", kind(&other)),
            )),
        }
    }

    /// A required UUID; a missing one is `code` with `message`.
    pub fn uuid(
        &mut self,
        name: &'static str,
        code: &'static str,
        message: &'static str,
    ) -> Result<Uuid, ApiError> {
        match self.take(name) {
            None => Err(ApiError::MissingField {
                code,
                field: name,
                message,
            }),
            Some(Value::String(text)) => parse_uuid(name, &text),
            Some(other) => Err(ApiError::invalid_input(
                name,
                format!("{name} must be a UUID string (got {})", kind(&other)),
            )),
        }
    }
}

/// `text` as a UUID, or a 400 naming `field`.
pub fn parse_uuid(field: &str, text: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(text).map_err(|_| {
        ApiError::invalid_input(field, format!("{field} must be a UUID (got {text:?})"))
    })
}

/// A JSON number that is a whole, non-negative integer.
fn whole(number: &Number) -> Option<u64> {
    if let Some(n) = number.as_u64() {
        return Some(n);
    }
    let float = number.as_f64()?;
    // Exact below 2^53, where every bound of the API lies.
    (float >= 0.0 && float.fract() == 0.0 && float < 9_007_199_254_740_992.0)
        .then_some(float as u64)
}

/// What a value is, in words, for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A number as written, anything else by its kind.
fn describe(value: &Value) -> String {
    match value {
        Value::Number(number) => number.to_string(),
        other => kind(other).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(value: Value) -> Fields {
        Fields::new(serde_json::from_value(value).expect("an object"))
    }

    #[test]
    fn integers_are_whole_numbers_in_range_and_null_is_absent() {
        let mut f =
            fields(json!({"a": 5, "b": 5.0, "c": null, "d": 5.5, "e": "5", "f": 11, "g": -1}));
        assert_eq!(f.int("a", 0..=10).ok(), Some(Some(5)));
        assert_eq!(f.int("b", 0..=10).ok(), Some(Some(5)));
        assert_eq!(f.int("c", 0..=10).ok(), Some(None));
        assert_eq!(f.int("missing", 0..=10).ok(), Some(None));
        for name in ["d", "e", "f", "g"] {
            let err = f.int(name, 0..=10).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("{name} must be an integer between 0 and 10")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_required_uuid_says_it_is_required_or_malformed() {
        let mut f = fields(json!({"id": "not-a-uuid", "n": 3}));
        let missing = f
            .uuid("leaseId", "lease_id_required", "leaseId is required")
            .unwrap_err();
        assert_eq!(missing.code(), "lease_id_required");
        assert_eq!(f.uuid("id", "x", "x").unwrap_err().code(), "invalid_input");
        assert_eq!(f.uuid("n", "x", "x").unwrap_err().code(), "invalid_input");
        let id = Uuid::new_v4();
        let mut f = fields(json!({"id": id.to_string()}));
        assert_eq!(f.uuid("id", "x", "x").ok(), Some(id));
    }
}
