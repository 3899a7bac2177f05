//! Request bodies at and just beyond what their schema documents: for every bounded property
//! (`minLength`, `maxLength`, `minimum`, `maximum`), a body at each bound and one a step
//! beyond it; for every required property, a body without it. The other properties keep their
//! examples, so each body tests one bound only.

use serde_json::Value;

use super::document::{Operation, resolve};
use super::requests::{body_schema, plausible_body};

/// A character of two bytes in UTF-8: lengths are documented in characters, so a server that
/// counted bytes would refuse a string at `maxLength`.
const WIDE_CHAR: char = 'é';

/// One body to send, and what the document says of it.
pub struct BodyCase {
    /// The body.
    pub body: Value,
    /// The property the body is about.
    pub field: String,
    /// Whether the document accepts the body.
    pub valid: bool,
    /// What the body holds, for messages: `task of maxLength + 1 characters`.
    pub what: String,
}

/// Every [`BodyCase`] of `op`'s request body; none when it takes no body.
pub fn body_cases(doc: &Value, op: &Operation<'_>) -> Vec<BodyCase> {
    let (Some(schema), Some(plausible)) = (body_schema(op), plausible_body(doc, op)) else {
        return Vec::new();
    };
    let schema = resolve(doc, schema);
    let mut cases = Vec::new();
    let properties = schema["properties"].as_object().into_iter().flatten();
    for (name, property) in properties {
        let property = resolve(doc, property);
        let with = |value: Value, valid: bool, what: String| {
            let mut body = plausible.clone();
            body[name] = value;
            BodyCase {
                body,
                field: name.clone(),
                valid,
                what: format!("{name} of {what}"),
            }
        };
        for (keyword, step) in [("minLength", -1), ("maxLength", 1)] {
            let Some(bound) = property[keyword].as_i64() else {
                continue;
            };
            let text = |chars: i64| Value::from(wide_string(chars));
            cases.push(with(
                text(bound),
                true,
                format!("{keyword} ({bound}) characters"),
            ));
            if bound + step >= 0 {
                let beyond = format!("{keyword} {step:+} characters");
                cases.push(with(text(bound + step), false, beyond));
            }
        }
        for (keyword, step) in [("minimum", -1), ("maximum", 1)] {
            let Some(bound) = property[keyword].as_i64() else {
                continue;
            };
            cases.push(with(bound.into(), true, format!("{keyword} ({bound})")));
            let beyond = format!("{keyword} {step:+} ({})", bound + step);
            cases.push(with((bound + step).into(), false, beyond));
        }
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().expect("a property name");
        let mut body = plausible.clone();
        body.as_object_mut().expect("an object body").remove(name);
        cases.push(BodyCase {
            body,
            field: name.to_owned(),
            valid: false,
            what: format!("no {name} (required)"),
        });
    }
    cases
}

/// `chars` characters, each two bytes long.
fn wide_string(chars: i64) -> String {
    let chars = usize::try_from(chars).expect("a length is not negative");
    std::iter::repeat_n(WIDE_CHAR, chars).collect()
}

/// The error codes the operation documents for a `400`: the words in backquotes of its
/// description.
pub fn documented_400_codes(op: &Operation<'_>) -> Vec<String> {
    let description = op
        .responses()
        .get("400")
        .and_then(|answer| answer["description"].as_str())
        .unwrap_or_else(|| panic!("{} documents its 400 answer", op.name()));
    description
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}
