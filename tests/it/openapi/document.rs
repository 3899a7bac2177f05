//! Reading the served OpenAPI document: its operations, references and schemas, and a small
//! validator that checks a JSON value against one of its schemas.
//!
//! The validator covers the JSON Schema keywords the document uses. It is stricter than JSON
//! Schema in one way, on purpose: an object may only carry fields that its schema (or one of
//! the schemas it combines with `allOf` / `oneOf`) names, unless it says `additionalProperties`,
//! so a field sent but not documented is reported.

use serde_json::Value;

/// One documented operation.
pub struct Operation<'a> {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path as documented, e.g. `/queue/status`.
    pub path: &'a str,
    /// The Operation Object.
    pub spec: &'a Value,
}

impl Operation<'_> {
    /// `GET /path`, for messages.
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The documented responses, by status.
    pub fn responses(&self) -> &serde_json::Map<String, Value> {
        self.spec["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{} documents its responses", self.name()))
    }

    /// The documented parameters located `in` (`query`, `header`).
    pub fn parameters(&self, location: &str) -> Vec<&Value> {
        self.spec["parameters"]
            .as_array()
            .map(|all| all.iter().filter(|p| p["in"] == location).collect())
            .unwrap_or_default()
    }

    /// Whether the operation requires a security scheme.
    pub fn is_secured(&self) -> bool {
        self.spec["security"]
            .as_array()
            .is_some_and(|requirements| !requirements.is_empty())
    }
}

/// Every operation of `doc`, sorted by path then method.
pub fn operations(doc: &Value) -> Vec<Operation<'_>> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let paths = doc["paths"].as_object().expect("the document has paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(spec) = item.get(method) {
                operations.push(Operation {
                    method: method.to_uppercase(),
                    path,
                    spec,
                });
            }
        }
    }
    operations
}

/// The schema `schema` stands for, following a local `$ref`.
pub fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{reference} is a local reference"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} resolves"));
            resolve(doc, target)
        }
        None => schema,
    }
}

/// Every `$ref` string anywhere in `value`.
pub fn references(value: &Value) -> Vec<&str> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, value)| match (key.as_str(), value) {
                ("$ref", Value::String(reference)) => vec![reference.as_str()],
                _ => references(value),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(references).collect(),
        _ => Vec::new(),
    }
}

/// Checks `value` against `schema` (resolved in `doc`); the error names the offending location.
pub fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    check(doc, schema, value, at)?;
    match value {
        Value::Object(fields) if !is_open(doc, schema) => {
            let named = property_names(doc, schema);
            match fields.keys().find(|field| !named.contains(field)) {
                Some(field) => Err(format!("{at}: field {field} is not documented")),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Whether an object schema allows fields it does not name.
fn is_open(doc: &Value, schema: &Value) -> bool {
    let schema = resolve(doc, schema);
    schema.get("additionalProperties").is_some()
        || (schema.get("properties").is_none() && combined(schema).next().is_none())
}

/// The schemas `schema` combines with `allOf`, `oneOf` or `anyOf`.
fn combined(schema: &Value) -> impl Iterator<Item = &Value> {
    ["allOf", "oneOf", "anyOf"]
        .into_iter()
        .filter_map(|keyword| schema[keyword].as_array())
        .flatten()
}

/// The field names `schema` documents, those of the schemas it combines included.
fn property_names(doc: &Value, schema: &Value) -> Vec<String> {
    let schema = resolve(doc, schema);
    let own = schema["properties"].as_object().into_iter().flatten();
    own.map(|(name, _)| name.clone())
        .chain(combined(schema).flat_map(|part| property_names(doc, part)))
        .collect()
}

/// Checks the JSON Schema keywords, leaving the undocumented-field rule to [`validate`].
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    for part in schema["allOf"].as_array().into_iter().flatten() {
        check(doc, part, value, at)?;
    }
    if let Some(choices) = schema["oneOf"].as_array() {
        let matching = choices
            .iter()
            .filter(|choice| check(doc, choice, value, at).is_ok())
            .count();
        if matching != 1 {
            return Err(format!(
                "{at}: {value} matches {matching} of the oneOf schemas"
            ));
        }
    }
    check_type(schema, value, at)?;
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    match value {
        Value::Number(number) => check_range(schema, number, at),
        Value::String(text) => check_length(schema, text.chars().count(), at),
        Value::Array(items) => match schema.get("items") {
            Some(item_schema) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| validate(doc, item_schema, item, &format!("{at}[{i}]"))),
            None => Ok(()),
        },
        Value::Object(fields) => {
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap_or_default();
                if !fields.contains_key(name) {
                    return Err(format!("{at}: required field {name} is missing"));
                }
            }
            let properties = schema["properties"].as_object().into_iter().flatten();
            for (name, field_schema) in properties {
                if let Some(field) = fields.get(name) {
                    validate(doc, field_schema, field, &format!("{at}.{name}"))?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_type(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    let matches = |name: &str| match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    };
    if types.iter().any(|name| matches(name)) {
        Ok(())
    } else {
        Err(format!("{at}: {value} is not of type {types:?}"))
    }
}

/// Integers are compared as integers: as floats, 2^53 + 1 would pass a maximum of 2^53.
fn check_range(schema: &Value, number: &serde_json::Number, at: &str) -> Result<(), String> {
    let within = |keyword: &str, holds: fn(std::cmp::Ordering) -> bool| {
        let Some(bound) = schema.get(keyword) else {
            return true;
        };
        let order = match (number.as_i128(), bound.as_i64()) {
            (Some(n), Some(b)) => Some(n.cmp(&i128::from(b))),
            _ => (number.as_f64())
                .zip(bound.as_f64())
                .and_then(|(n, b)| n.partial_cmp(&b)),
        };
        order.is_some_and(holds)
    };
    let in_range = within("minimum", std::cmp::Ordering::is_ge)
        && within("maximum", std::cmp::Ordering::is_le)
        && within("exclusiveMaximum", std::cmp::Ordering::is_lt);
    if in_range {
        Ok(())
    } else {
        Err(format!("{at}: {number} is outside the documented range"))
    }
}

fn check_length(schema: &Value, chars: usize, at: &str) -> Result<(), String> {
    let bound = |keyword: &str| schema[keyword].as_u64().map(|n| n as usize);
    if bound("minLength").is_none_or(|min| chars >= min)
        && bound("maxLength").is_none_or(|max| chars <= max)
    {
        Ok(())
    } else {
        Err(format!(
            "{at}: a length of {chars} is outside the documented range"
        ))
    }
}
