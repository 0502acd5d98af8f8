//! A JSON value that satisfies a JSON Schema, as a model under a structured-output
//! grammar would produce it, for the subset of JSON Schema that OpenAI's structured
//! outputs (`response_format: {"type": "json_schema", …}`) accept.

use serde_json::{Map, Value};

/// The sentence every string field gets.
pub const SENTENCE: &str = "Help the user set up and deliver their project step by step";

/// Fills `schema`: an object gets every property filled, an array one filled item, a
/// string [`SENTENCE`], an integer `1`, a number `1.0`, a boolean `true`, `null` null;
/// `enum` and `const` give their (first) value; a type list like `["string", "null"]`
/// and `anyOf` / `oneOf` take the first non-null alternative. A schema with no type
/// (or one not handled, such as a `$ref`) is filled as a string.
///
/// ```
/// use pipeline_bench::schema_fill::fill;
/// use serde_json::json;
///
/// let schema = json!({"type": "object", "properties": {
///     "steps": {"type": "array", "items": {"type": "integer"}},
///     "done": {"type": ["boolean", "null"]},
/// }});
/// assert_eq!(fill(&schema), json!({"steps": [1], "done": true}));
/// ```
pub fn fill(schema: &Value) -> Value {
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|values| values.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alternatives) = schema.get(key).and_then(Value::as_array) {
            let pick = alternatives
                .iter()
                .find(|alt| alt.get("type").and_then(Value::as_str) != Some("null"))
                .or_else(|| alternatives.first());
            if let Some(alt) = pick {
                return fill(alt);
            }
        }
    }
    let ty = match schema.get("type") {
        Some(Value::String(ty)) => Some(ty.as_str()),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|ty| *ty != "null")
            .or(Some("null")),
        _ => None,
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    if ty == Some("object") || (ty.is_none() && properties.is_some()) {
        let filled: Map<String, Value> = properties
            .into_iter()
            .flatten()
            .map(|(name, sub)| (name.clone(), fill(sub)))
            .collect();
        return Value::Object(filled);
    }
    match ty {
        Some("array") => {
            let item = schema.get("items").map_or_else(|| fill(&Value::Null), fill);
            Value::Array(vec![item])
        }
        Some("integer") => Value::from(1),
        Some("number") => Value::from(1.0),
        Some("boolean") => Value::Bool(true),
        Some("null") => Value::Null,
        _ => Value::from(SENTENCE),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_task_schema_gets_three_sentences() {
        let schema = json!({
            "type": "object",
            "properties": {
                "task_name": {"type": "string"},
                "task_description": {"type": "string"},
                "context": {"type": "string"},
            },
            "required": ["task_name", "task_description", "context"],
            "additionalProperties": false,
        });
        assert_eq!(
            fill(&schema),
            json!({"task_name": SENTENCE, "task_description": SENTENCE, "context": SENTENCE})
        );
    }

    #[test]
    fn scalars_enums_and_nullable_types() {
        assert_eq!(fill(&json!({"type": "integer"})), json!(1));
        assert_eq!(fill(&json!({"type": "number"})), json!(1.0));
        assert_eq!(fill(&json!({"type": "boolean"})), json!(true));
        assert_eq!(fill(&json!({"type": ["null", "string"]})), json!(SENTENCE));
        assert_eq!(fill(&json!({"type": ["null"]})), json!(null));
        assert_eq!(
            fill(&json!({"type": "string", "enum": ["low", "high"]})),
            json!("low")
        );
        assert_eq!(
            fill(&json!({"anyOf": [{"type": "null"}, {"type": "integer"}]})),
            json!(1)
        );
        assert_eq!(fill(&json!({})), json!(SENTENCE));
    }

    #[test]
    fn nested_objects_and_arrays() {
        let schema = json!({"properties": {"plan": {"type": "object", "properties": {
            "steps": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            "tags": {"type": "array"},
        }}}});
        assert_eq!(
            fill(&schema),
            json!({"plan": {"steps": [{"n": 1}], "tags": [SENTENCE]}})
        );
    }
}
