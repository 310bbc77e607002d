//! Stripe's `application/x-www-form-urlencoded` parameters (API.md §1): pairs with nested keys
//! (`metadata[k]=v`, `expand[]=a`, `items[0][price]=x`) encoded for a query string or a POST body.
#![warn(missing_docs)]

use serde_json::Value;

/// Encodes `pairs` in order as `k=v&k=v`: keys and values are percent-encoded, except that the
/// brackets of nested keys stay readable (`metadata[order]=6735`), as Stripe's own libraries send them.
pub fn encode(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (key, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        for part in form_urlencoded::byte_serialize(key.as_bytes()) {
            out.push_str(&part.replace("%5B", "[").replace("%5D", "]"));
        }
        out.push('=');
        out.extend(form_urlencoded::byte_serialize(value.as_bytes()));
    }
    out
}

/// Builds owned pairs from anything pair-like: `params([("limit", "100"), ("expand[]", "data.customer")])`.
pub fn params<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Vec<(String, String)>
where
    K: Into<String>,
    V: Into<String>,
{
    pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// Flattens a JSON object into Stripe's nested pairs: objects become `a[b]`, arrays of scalars
/// `a[]`, arrays of objects `a[0][b]`; `null`, `[]` and `{}` become an empty value (which Stripe
/// reads as "unset"). A non-object top level gives no pairs.
pub fn pairs_from_json(value: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Value::Object(map) = value {
        for (key, value) in map {
            flatten(key.clone(), value, &mut out);
        }
    }
    out
}

fn flatten(prefix: String, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => out.push((prefix, String::new())),
        Value::Bool(b) => out.push((prefix, b.to_string())),
        Value::Number(n) => out.push((prefix, n.to_string())),
        Value::String(s) => out.push((prefix, s.clone())),
        Value::Array(items) if items.is_empty() => out.push((prefix, String::new())),
        Value::Array(items) => {
            let scalars = items.iter().all(|v| !v.is_array() && !v.is_object());
            for (i, item) in items.iter().enumerate() {
                let key = if scalars {
                    format!("{prefix}[]")
                } else {
                    format!("{prefix}[{i}]")
                };
                flatten(key, item, out);
            }
        }
        Value::Object(map) if map.is_empty() => out.push((prefix, String::new())),
        Value::Object(map) => {
            for (key, item) in map {
                flatten(format!("{prefix}[{key}]"), item, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_nested_keys_readably_and_values_safely() {
        let pairs = params([
            ("metadata[order id]", "a&b=c"),
            ("expand[]", "data.customer"),
            ("items[0][price]", "price_1"),
            ("description", "café ünïcode/+"),
        ]);
        assert_eq!(
            encode(&pairs),
            "metadata[order+id]=a%26b%3Dc&expand[]=data.customer&items[0][price]=price_1\
             &description=caf%C3%A9+%C3%BCn%C3%AFcode%2F%2B"
        );
        assert_eq!(encode(&[]), "");
        // What a form decoder reads back is what was meant.
        let decoded: Vec<(String, String)> = form_urlencoded::parse(encode(&pairs).as_bytes())
            .into_owned()
            .collect();
        assert_eq!(decoded, pairs);
    }

    #[test]
    fn flattens_json_the_way_stripe_reads_it() {
        let value = serde_json::json!({
            "customer": "cus_1",
            "metadata": {"k": "v", "n": 3},
            "expand": ["a", "b"],
            "items": [{"price": "x", "quantity": 2}],
            "cancel_at_period_end": true,
            "description": null,
            "default_tax_rates": []
        });
        assert_eq!(
            pairs_from_json(&value),
            params([
                ("customer", "cus_1"),
                ("metadata[k]", "v"),
                ("metadata[n]", "3"),
                ("expand[]", "a"),
                ("expand[]", "b"),
                ("items[0][price]", "x"),
                ("items[0][quantity]", "2"),
                ("cancel_at_period_end", "true"),
                ("description", ""),
                ("default_tax_rates", ""),
            ])
        );
    }
}
