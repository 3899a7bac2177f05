//! The enqueue body, member by member, with the contract's own message for each mistake.

use serde_json::{Number, Value};

use crate::error::ApiError;
use crate::queue::limits::{Delay, MAX_ATTEMPTS, MAX_DELAY_MS, MaxAttempts};
use crate::queue::{InvalidPriority, MAX_TASK_CHARS, Priority, TaskText};
use crate::routes::fields::{Fields, Object, kind};

/// What an enqueue asks for.
#[derive(Debug)]
pub struct EnqueueRequest {
    pub task: TaskText,
    pub priority: Priority,
    pub delay: Delay,
    /// `None`: the configured default.
    pub max_attempts: Option<MaxAttempts>,
}

/// Checks the task first, then the priority, then the delivery options, so a body with several
/// mistakes reports the first in that order.
pub fn parse_enqueue(body: Object) -> Result<EnqueueRequest, ApiError> {
    let mut fields = Fields::new(body);
    let task = parse_task(fields.take("task"))?;
    let priority = parse_priority(fields.take("priority"))?;
    let delay = fields
        .int("delayMs", 0..=MAX_DELAY_MS)?
        .map_or(Ok(Delay::NONE), Delay::from_millis)
        .map_err(|err| ApiError::invalid_input("delayMs", format!("delayMs {err}")))?;
    let max_attempts = fields
        .int("maxAttempts", 1..=u64::from(MAX_ATTEMPTS))?
        .map(MaxAttempts::new)
        .transpose()
        .map_err(|err| ApiError::invalid_input("maxAttempts", format!("maxAttempts {err}")))?;
    Ok(EnqueueRequest {
        task,
        priority,
        delay,
        max_attempts,
    })
}

/// `null` counts as missing, as it does for most JSON APIs.
fn parse_task(value: Option<Value>) -> Result<TaskText, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::MissingField {
            code: "task_required",
            field: "task",
            message: "Task is required",
        }),
        Some(Value::String(text)) => {
            TaskText::parse(text).map_err(|err| ApiError::invalid_input("task", err.to_string()))
        }
        Some(other) => Err(wrong_task_type(kind(&other))),
    }
}

fn wrong_task_type(kind: &str) -> ApiError {
    ApiError::invalid_input(
        "task",
        format!("Task must be a string of 1 to {MAX_TASK_CHARS} characters (got {kind})"),
    )
}

/// `null` counts as missing; any other non-number is "not a number".
fn parse_priority(value: Option<Value>) -> Result<Priority, ApiError> {
    match value {
        None | Some(Value::Null) => Err(ApiError::MissingField {
            code: "priority_required",
            field: "priority",
            message: "Priority is required (number)",
        }),
        Some(Value::Number(number)) => priority_from_number(&number)
            .map_err(|err| ApiError::invalid_input("priority", err.to_string())),
        Some(_) => Err(ApiError::invalid_input(
            "priority",
            "Priority must be a number",
        )),
    }
}

/// JSON has one number type: `2`, `2.0` and `2e0` are the same integer; `2.5` is not one.
fn priority_from_number(number: &Number) -> Result<Priority, InvalidPriority> {
    let refused = || InvalidPriority {
        got: number.to_string(),
    };
    if let Some(integer) = number.as_i64() {
        Priority::new(integer).map_err(|_| refused())
    } else if number.is_u64() {
        Err(refused())
    } else {
        number
            .as_f64()
            .ok_or_else(refused)
            .and_then(|float| Priority::from_f64(float).map_err(|_| refused()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn parse(body: Value) -> Result<(TaskText, Priority), ApiError> {
        parse_enqueue(serde_json::from_value(body).expect("a JSON object"))
            .map(|request| (request.task, request.priority))
    }

    fn field_error(body: Value) -> (String, String) {
        match parse(body).unwrap_err() {
            ApiError::InvalidInput { field, message } => (field, message),
            other => panic!("expected invalid_input, got {other:?}"),
        }
    }

    #[test]
    fn missing_or_null_fields_use_the_contract_messages() {
        for body in [json!({"priority": 1}), json!({"task": null, "priority": 1})] {
            assert_eq!(parse(body).unwrap_err().to_string(), "Task is required");
        }
        for body in [json!({"task": "t"}), json!({"task": "t", "priority": null})] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.to_string(), "Priority is required (number)");
            assert_eq!(err.code(), "priority_required");
        }
    }

    #[test]
    fn a_priority_of_another_type_is_not_a_number() {
        for priority in [json!("1"), json!(true), json!([1]), json!({"n": 1})] {
            let (field, message) = field_error(json!({"task": "t", "priority": priority}));
            assert_eq!(
                (field.as_str(), message.as_str()),
                ("priority", "Priority must be a number")
            );
        }
    }

    #[test]
    fn fractional_or_out_of_range_priorities_name_the_range() {
        for priority in [
            json!(1.5),
            json!(9_007_199_254_740_993_u64),
            json!(-9_007_199_254_740_993_i64),
            json!(u64::MAX),
            json!(1e300),
        ] {
            let (field, message) = field_error(json!({"task": "t", "priority": priority}));
            assert_eq!(field, "priority");
            assert!(
                message.starts_with("Priority must be an integer between -2^53 and 2^53"),
                "{message}"
            );
        }
    }

    #[test]
    fn whole_number_priorities_in_any_notation_are_accepted() {
        for (priority, expected) in [
            (json!(2.0), 2),
            (json!(-7), -7),
            (json!(9_007_199_254_740_992_u64), Priority::MAX),
        ] {
            let (_, parsed) = parse(json!({"task": "t", "priority": priority})).unwrap();
            assert_eq!(parsed.get(), expected);
        }
    }

    #[test]
    fn a_task_of_the_wrong_type_or_length_names_the_range() {
        for task in [
            json!(""),
            json!(42),
            json!(["a"]),
            json!("x".repeat(MAX_TASK_CHARS + 1)),
        ] {
            let (field, message) = field_error(json!({"task": task, "priority": 1}));
            assert_eq!(field, "task");
            assert!(message.contains("1 to 1024 characters"), "{message}");
        }
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        for body in ["[]", r#"["t", 1]"#, r#""task""#, "1", "null"] {
            let err = serde_json::from_str::<Object>(body).unwrap_err();
            assert!(err.is_data(), "{body}: {err}");
            assert!(err.to_string().contains("expected a map"), "{err}");
        }
    }

    #[test]
    fn delivery_options_default_when_absent_and_name_their_ranges() {
        let request = parse_enqueue(
            serde_json::from_value(json!({"task": "t", "priority": 1})).expect("an object"),
        )
        .expect("valid");
        assert!(request.delay.is_zero());
        assert_eq!(request.max_attempts, None);
        let request = parse_enqueue(
            serde_json::from_value(
                json!({"task": "t", "priority": 1, "delayMs": 1500, "maxAttempts": 3}),
            )
            .expect("an object"),
        )
        .expect("valid");
        assert_eq!(request.delay.as_millis(), 1500);
        assert_eq!(request.max_attempts.map(MaxAttempts::get), Some(3));
        for (body, field, range) in [
            (
                json!({"delayMs": -1}),
                "delayMs",
                "between 0 and 2592000000",
            ),
            (
                json!({"delayMs": 2_592_000_001_u64}),
                "delayMs",
                "between 0 and 2592000000",
            ),
            (
                json!({"delayMs": "soon"}),
                "delayMs",
                "between 0 and 2592000000",
            ),
            (
                json!({"maxAttempts": 0}),
                "maxAttempts",
                "between 1 and 100",
            ),
            (
                json!({"maxAttempts": 101}),
                "maxAttempts",
                "between 1 and 100",
            ),
        ] {
            let mut body = body;
            body["task"] = json!("t");
            body["priority"] = json!(1);
            let (got, message) = field_error(body);
            assert_eq!(got, field);
            assert!(message.contains(range), "{message}");
        }
    }

    #[test]
    fn other_members_are_skipped_and_the_last_of_a_repeated_one_counts() {
        let body = r#"{"note": {"deep": [1, {"x": null}]}, "task": "a", "priority": 1,
            "task": "b", "t\u0061sk2": true}"#;
        let (task, priority) =
            parse(serde_json::from_str(body).expect("an object")).expect("valid");
        assert_eq!((task.as_str(), priority.get()), ("b", 1));
    }
}
