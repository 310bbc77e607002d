//! Test-only validator: checks emulator JSON responses against the schemas of Stripe's OpenAPI spec (spec3.json).
//!
//! Deliberately small and dependency-light (serde_json only). It understands the subset of
//! OpenAPI 3.0 that Stripe's `components.schemas` actually use for response objects:
//! `$ref` (to `#/components/schemas/X`), `anyOf`/`oneOf`, `nullable`, `type`, `enum`,
//! `required`, `properties`, `items` and `additionalProperties`. Everything else
//! (`maxLength`, `pattern`, `format`, `x-*` extensions, descriptions) is ignored.
//!
//! Policy choices, made to catch emulator mistakes rather than to be lenient:
//! * a key not listed in `properties` is an error unless the schema has `additionalProperties`
//!   (invented fields are bugs);
//! * `enum` violations are errors even though Stripe marks some enums as open
//!   (`x-stripeBypassValidation`);
//! * `integer` means a JSON integer literal (`1`, not `1.0`).
//!
//! Quirks of the spec worth knowing: list objects (`{"object":"list","data":[...]}`) have no
//! named schema, they only appear inline (e.g. `subscription.items`), so a caller validating a
//! top-level list response validates each element of `data` itself; and deleted objects carry
//! the live object's `object` value (`deleted_customer` has `"object": "customer"`), so the
//! caller picks the `deleted_*` schema when `deleted: true`.

#![allow(dead_code)] // each integration test uses a different part of this module

use serde_json::{Map, Value};
use std::path::Path;

/// The parsed `components.schemas` of a Stripe OpenAPI spec.
pub struct Spec {
    schemas: Map<String, Value>,
}

/// Guard against schemas that reference themselves without consuming any of the value
/// (Stripe has none, but a cycle like `A = anyOf[$ref A]` must not overflow the stack).
/// Each call ($ref hop, anyOf branch, field, item) nests one level; real responses stay far
/// below this, and it keeps a runaway cycle well inside a test thread's 2 MiB stack.
const MAX_DEPTH: usize = 200;

const REF_PREFIX: &str = "#/components/schemas/";

impl Spec {
    /// Reads and parses the spec file, keeping only `components.schemas`.
    pub fn load(path: &Path) -> Result<Spec, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let mut doc: Value =
            serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
        match doc.pointer_mut("/components/schemas").map(Value::take) {
            Some(Value::Object(schemas)) => Ok(Spec { schemas }),
            _ => Err(format!("{}: no components.schemas object", path.display())),
        }
    }

    /// True if `components.schemas` has a schema with this exact name.
    pub fn has_schema(&self, name: &str) -> bool {
        self.schemas.contains_key(name)
    }

    /// Validates `value` against the schema named `schema` (e.g. "customer", "checkout.session",
    /// "deleted_customer", "error"). Returns every violation found, each prefixed with a JSON
    /// path such as `$.lines.data[3].period.end: expected integer, got string`. Empty = valid.
    pub fn validate(&self, schema: &str, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        match self.schemas.get(schema) {
            Some(s) => self.check(s, value, "$", 0, &mut errors),
            None => errors.push(format!("$: no schema named `{schema}` in the spec")),
        }
        errors
    }

    /// Resolves a `$ref` string to its schema.
    fn resolve(&self, reference: &str) -> Option<&Value> {
        reference
            .strip_prefix(REF_PREFIX)
            .and_then(|name| self.schemas.get(name))
    }

    /// Core recursive check of `value` (found at `path`) against the schema node `schema`.
    fn check(
        &self,
        schema: &Value,
        value: &Value,
        path: &str,
        depth: usize,
        errors: &mut Vec<String>,
    ) {
        if depth > MAX_DEPTH {
            errors.push(format!(
                "{path}: schema nesting deeper than {MAX_DEPTH} (cyclic $ref?)"
            ));
            return;
        }
        let Some(schema) = schema.as_object() else {
            return; // `true`/`{}`-like schemas accept anything
        };

        // `nullable: true` admits null whatever else the node says (including under anyOf).
        if value.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }

        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            match self.resolve(reference) {
                Some(target) => self.check(target, value, path, depth + 1, errors),
                None => errors.push(format!("{path}: unresolvable $ref `{reference}`")),
            }
            return; // OpenAPI 3.0: siblings of $ref are ignored
        }

        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = schema.get(key).and_then(Value::as_array) {
                self.check_any_of(branches, value, path, depth, errors);
            }
        }

        // `type`. A node with `properties` but no `type` is treated as an object.
        let ty = schema.get("type").and_then(Value::as_str);
        let ty = ty.or_else(|| schema.contains_key("properties").then_some("object"));
        if let Some(ty) = ty
            && !type_matches(ty, value)
        {
            errors.push(format!("{path}: expected {ty}, got {}", json_type(value)));
            return; // nothing below makes sense for a value of the wrong type
        }

        // `enum` (strings, and booleans like `deleted: enum [true]`).
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            errors.push(format!(
                "{path}: {value} is not one of [{}]",
                list.join(", ")
            ));
        }

        match value {
            Value::Array(elements) => {
                if let Some(items) = schema.get("items") {
                    for (i, element) in elements.iter().enumerate() {
                        self.check(items, element, &format!("{path}[{i}]"), depth + 1, errors);
                    }
                }
            }
            Value::Object(fields) => self.check_object(schema, fields, path, depth, errors),
            _ => {}
        }
    }

    /// `required`, `properties` and `additionalProperties` for an object value.
    fn check_object(
        &self,
        schema: &Map<String, Value>,
        fields: &Map<String, Value>,
        path: &str,
        depth: usize,
        errors: &mut Vec<String>,
    ) {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for key in required.iter().filter_map(Value::as_str) {
                if !fields.contains_key(key) {
                    errors.push(format!(
                        "{}: required property missing",
                        child_path(path, key)
                    ));
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        if properties.is_none() && additional.is_none() {
            return; // free-form object (e.g. `event.data.object`): anything goes
        }
        for (key, field) in fields {
            let field_path = child_path(path, key);
            if let Some(sub) = properties.and_then(|p| p.get(key)) {
                self.check(sub, field, &field_path, depth + 1, errors);
            } else {
                match additional {
                    // Explicit `false` or absent alongside `properties`: an invented field.
                    None | Some(Value::Bool(false)) => errors.push(format!(
                        "{field_path}: unknown property (not in the spec's schema)"
                    )),
                    Some(Value::Bool(true)) => {}
                    Some(sub) => self.check(sub, field, &field_path, depth + 1, errors),
                }
            }
        }
    }

    /// `anyOf`/`oneOf`: valid if any branch validates (we do not enforce oneOf's
    /// "exactly one"). Otherwise report the most plausible branch's errors: among branches
    /// whose top-level type fits the value, prefer one whose `object` enum matches the
    /// value's `object` field, then the one with the fewest errors. If no branch even has
    /// the right type, report a one-line summary.
    fn check_any_of(
        &self,
        branches: &[Value],
        value: &Value,
        path: &str,
        depth: usize,
        errors: &mut Vec<String>,
    ) {
        let mut best: Option<((bool, usize), Vec<String>)> = None;
        for branch in branches {
            if !self.shape_fits(branch, value, depth) {
                continue;
            }
            let mut branch_errors = Vec::new();
            self.check(branch, value, path, depth + 1, &mut branch_errors);
            if branch_errors.is_empty() {
                return;
            }
            let score = (!self.object_tag_fits(branch, value), branch_errors.len());
            if best
                .as_ref()
                .is_none_or(|(best_score, _)| score < *best_score)
            {
                best = Some((score, branch_errors));
            }
        }
        match best {
            Some((_, branch_errors)) => errors.extend(branch_errors),
            None => {
                let names: Vec<String> = branches.iter().map(|b| self.describe(b)).collect();
                errors.push(format!(
                    "{path}: expected one of {}, got {}",
                    names.join(" | "),
                    json_type(value)
                ));
            }
        }
    }

    /// Follows `$ref`s to the schema that actually has content.
    fn deref<'a>(&'a self, mut schema: &'a Value, depth: usize) -> &'a Value {
        for _ in depth..MAX_DEPTH {
            match schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| self.resolve(r))
            {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    /// Cheap pre-check for anyOf: could this branch accept a value of this JSON type at all?
    fn shape_fits(&self, branch: &Value, value: &Value, depth: usize) -> bool {
        let schema = self.deref(branch, depth);
        if value.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return true;
        }
        if let Some(inner) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        {
            return depth < MAX_DEPTH && inner.iter().any(|b| self.shape_fits(b, value, depth + 1));
        }
        match schema.get("type").and_then(Value::as_str) {
            Some(ty) => type_matches(ty, value),
            None if schema.get("properties").is_some() => value.is_object(),
            None => true,
        }
    }

    /// True unless both the branch and the value name an `object` type and they disagree.
    fn object_tag_fits(&self, branch: &Value, value: &Value) -> bool {
        let tags = self
            .deref(branch, 0)
            .pointer("/properties/object/enum")
            .and_then(Value::as_array);
        match (tags, value.get("object")) {
            (Some(tags), Some(tag)) => tags.contains(tag),
            _ => true,
        }
    }

    /// Short human name of a schema node, for "expected one of …" messages.
    fn describe(&self, schema: &Value) -> String {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.strip_prefix(REF_PREFIX).unwrap_or(reference);
            let ty = self
                .deref(schema, 0)
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("object");
            return format!("{ty}({name})");
        }
        match schema.get("type").and_then(Value::as_str) {
            Some(ty) => ty.to_string(),
            None => "schema".to_string(),
        }
    }
}

/// Does a JSON value have the OpenAPI `type`? Unknown type names are not enforced.
fn type_matches(ty: &str, value: &Value) -> bool {
    match ty {
        "string" => value.is_string(),
        // An integer literal: `is_i64`/`is_u64` are false for `1.0` and `1e3`.
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    }
}

/// The JSON type of a value, in OpenAPI vocabulary (integers and fractions told apart).
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `$.a` + `b` -> `$.a.b`; keys that are not plain identifiers (metadata keys may contain
/// anything) are written `$.a["b c"]`.
fn child_path(path: &str, key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_string()))
    }
}
