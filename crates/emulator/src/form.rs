//! Stripe's request encoding: `application/x-www-form-urlencoded` with brackets for nesting.
//!
//! `metadata[plan]=pro&items[0][price]=price_1&expand[]=customer` becomes
//! `{"metadata":{"plan":"pro"},"items":[{"price":"price_1"}],"expand":["customer"]}`. Values stay
//! strings; each operation coerces the fields it knows (see `params.rs`).

use serde_json::{Map, Value};

/// Why a form body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("Invalid request parameter `{0}`: unbalanced brackets")]
pub struct FormError(pub String);

/// Parses a query string or form body into a JSON object of strings, objects and arrays.
pub fn parse(input: &[u8]) -> Result<Map<String, Value>, FormError> {
    let mut root = Value::Object(Map::new());
    for (key, value) in form_urlencoded::parse(input) {
        let path = split_key(&key).ok_or_else(|| FormError(key.to_string()))?;
        insert(&mut root, &path, Value::String(value.into_owned()));
    }
    match root {
        Value::Object(map) => Ok(map),
        _ => unreachable!("root is an object"),
    }
}

/// `items[0][price]` → `["items", "0", "price"]`; `expand[]` → `["expand", ""]`.
fn split_key(key: &str) -> Option<Vec<&str>> {
    let (head, mut rest) = match key.find('[') {
        Some(at) => (&key[..at], &key[at..]),
        None => return Some(vec![key]),
    };
    let mut parts = vec![head];
    while !rest.is_empty() {
        let close = rest.find(']')?;
        if !rest.starts_with('[') {
            return None;
        }
        parts.push(&rest[1..close]);
        rest = &rest[close + 1..];
    }
    Some(parts)
}

fn insert(node: &mut Value, path: &[&str], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return;
    };
    // An empty or numeric segment addresses an array; anything else an object.
    let wants_array = first.is_empty() || first.bytes().all(|b| b.is_ascii_digit());
    if wants_array {
        if !node.is_array() {
            *node = Value::Array(Vec::new());
        }
        let items = node.as_array_mut().expect("just made an array");
        let index = if first.is_empty() {
            items.len()
        } else {
            first.parse::<usize>().unwrap_or(0)
        };
        // Stripe treats `items[3]` after `items[0]` as the next element, not a sparse index.
        let index = index.min(items.len());
        if index == items.len() {
            items.push(Value::Null);
        }
        insert(&mut items[index], rest, value);
    } else {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let map = node.as_object_mut().expect("just made an object");
        insert(
            map.entry(first.to_string()).or_insert(Value::Null),
            rest,
            value,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_keys_arrays_and_percent_encoding() {
        let parsed = parse(
            b"email=a%40b.co&metadata[plan]=pro&items[0][price]=p1&items[0][quantity]=2&items[1][price]=p2&expand[]=x&expand[]=y",
        )
        .unwrap();
        assert_eq!(
            Value::Object(parsed),
            json!({"email":"a@b.co","metadata":{"plan":"pro"},
                   "items":[{"price":"p1","quantity":"2"},{"price":"p2"}],"expand":["x","y"]})
        );
    }

    #[test]
    fn unbalanced_brackets_are_refused() {
        assert!(parse(b"metadata[plan=pro").is_err());
    }
}
