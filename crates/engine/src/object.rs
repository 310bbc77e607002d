//! One Stripe object as the apply path writes it: its id, `created`, its JSON as compact text,
//! and the embedded child lists the mirror keeps apart (`subscription.items`, `invoice.lines`).
//!
//! List pages arrive as JSON text ([`sm_stripe::RawPage`]); reading only the few fields the
//! mirror needs from that text, and keeping the text itself, costs a fraction of building a
//! tree of every object and printing it again. Events and single reads, which come as trees,
//! are turned into the same form.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// An object ready to be written.
#[derive(Debug, Clone)]
pub(crate) struct Object {
    pub(crate) id: String,
    pub(crate) created: Option<i64>,
    /// The object as Stripe sent it, compact.
    pub(crate) json: String,
    /// The embedded lists asked for, by field, when the object has them.
    pub(crate) embedded: Vec<(&'static str, EmbeddedList)>,
}

/// An embedded sub-list: its first page, and where the rest is.
#[derive(Debug, Clone)]
pub(crate) struct EmbeddedList {
    pub(crate) items: Vec<Object>,
    pub(crate) has_more: bool,
    pub(crate) url: Option<String>,
}

/// What a JSON text did not give.
#[derive(Debug)]
pub(crate) struct NotAnObject(String);

impl fmt::Display for NotAnObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a Stripe object: {}", self.0)
    }
}

impl Object {
    /// Reads an object from its JSON text, with the embedded lists named in `fields`.
    pub(crate) fn from_raw(raw: &RawValue, fields: &[&'static str]) -> Result<Object, NotAnObject> {
        let text = raw.get();
        let head = Head::parse(text, fields).map_err(|e| NotAnObject(e.to_string()))?;
        let id = head
            .id
            .ok_or_else(|| NotAnObject("it has no id".into()))?
            .into_owned();
        let mut embedded = Vec::new();
        for (field, list) in head.lists {
            embedded.push((field, EmbeddedList::from_raw(list)?));
        }
        Ok(Object {
            id,
            created: head.created,
            json: compact(text),
            embedded,
        })
    }

    /// The same from a tree (an event's object, a single read).
    pub(crate) fn from_value(value: &Value, fields: &[&'static str]) -> Option<Object> {
        let id = value["id"].as_str()?.to_owned();
        let embedded = fields
            .iter()
            .filter(|field| value[**field].is_object())
            .map(|field| {
                let list = &value[*field];
                let items = list["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|item| Object::from_value(item, &[]))
                    .collect();
                (
                    *field,
                    EmbeddedList {
                        items,
                        has_more: list["has_more"] == Value::Bool(true),
                        url: list["url"].as_str().map(str::to_owned),
                    },
                )
            })
            .collect();
        Some(Object {
            id,
            created: value["created"].as_i64(),
            json: serde_json::to_string(value).unwrap_or_default(),
            embedded,
        })
    }
}

impl EmbeddedList {
    fn from_raw(raw: &RawValue) -> Result<EmbeddedList, NotAnObject> {
        #[derive(serde::Deserialize)]
        struct List<'a> {
            #[serde(borrow, default)]
            data: Vec<&'a RawValue>,
            #[serde(default)]
            has_more: bool,
            #[serde(default)]
            url: Option<String>,
        }
        let list: List = serde_json::from_str(raw.get()).map_err(|e| NotAnObject(e.to_string()))?;
        let items = list
            .data
            .into_iter()
            .map(|item| Object::from_raw(item, &[]))
            .collect::<Result<_, _>>()?;
        Ok(EmbeddedList {
            items,
            has_more: list.has_more,
            url: list.url,
        })
    }
}

/// The fields of an object the mirror reads; everything else is skipped without being built.
struct Head<'a> {
    id: Option<Cow<'a, str>>,
    created: Option<i64>,
    lists: Vec<(&'static str, &'a RawValue)>,
}

impl<'a> Head<'a> {
    fn parse(text: &'a str, fields: &[&'static str]) -> serde_json::Result<Head<'a>> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let head = HeadSeed { fields }.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(head)
    }
}

struct HeadSeed<'f> {
    fields: &'f [&'static str],
}

impl<'de> DeserializeSeed<'de> for HeadSeed<'_> {
    type Value = Head<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Head<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeadSeed<'_> {
    type Value = Head<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Head<'de>, A::Error> {
        let mut head = Head {
            id: None,
            created: None,
            lists: Vec::new(),
        };
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "id" => head.id = map.next_value::<Option<Cow<'de, str>>>()?,
                "created" => head.created = map.next_value::<Option<i64>>()?,
                other => match self.fields.iter().find(|field| **field == other) {
                    Some(field) => {
                        let value: &'de RawValue = map.next_value()?;
                        // `null` (an object without that list) is no list.
                        if value.get() != "null" {
                            head.lists.push((field, value));
                        }
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
            }
        }
        Ok(head)
    }
}

/// A key, borrowed from the text unless it has escapes (Stripe's never do).
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// `text` without the whitespace between tokens (Stripe sends indented JSON; the emulator does
/// not, and then this is a copy).
pub(crate) fn compact(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut scanner = Scanner::default();
    // Most text has no whitespace to drop: find the first, and copy up to it in one go.
    let Some(start) = bytes
        .iter()
        .position(|&b| scanner.is_space_between_tokens(b))
    else {
        return text.to_owned();
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..start]);
    out.extend(
        bytes[start..]
            .iter()
            .filter(|&&b| !scanner.is_space_between_tokens(b)),
    );
    // Only ASCII whitespace outside strings was dropped: still UTF-8.
    String::from_utf8(out).expect("compacting keeps UTF-8")
}

/// Where a byte-by-byte walk of JSON text is: inside a string, and after a backslash there.
#[derive(Default)]
struct Scanner {
    in_string: bool,
    escaped: bool,
}

impl Scanner {
    /// Takes the next byte; whether it is whitespace outside every string.
    fn is_space_between_tokens(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            false
        } else if b == b'"' {
            self.in_string = true;
            false
        } else {
            matches!(b, b' ' | b'\n' | b'\r' | b'\t')
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacting_keeps_strings_and_drops_indentation() {
        let pretty =
            "{\n  \"id\": \"cus_1\",\n  \"name\": \"A  \\\" b\\\\\",\n  \"list\": [ 1, 2 ]\n}";
        let compacted = compact(pretty);
        assert_eq!(
            compacted,
            r#"{"id":"cus_1","name":"A  \" b\\","list":[1,2]}"#
        );
        let value: Value = serde_json::from_str(pretty).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&compacted).unwrap(), value);
        assert_eq!(compact(&compacted), compacted);
    }

    #[test]
    fn raw_and_tree_forms_agree() {
        let text = r#"{"id":"sub_1","object":"subscription","created":1700000000,"items":{"object":"list","data":[{"id":"si_1","created":1700000001,"price":{"id":"p"}}],"has_more":true,"url":"/v1/subscription_items?subscription=sub_1"},"metadata":{"items":"x"},"lines":null}"#;
        let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
        let from_raw = Object::from_raw(&raw, &["items", "lines"]).unwrap();
        let value: Value = serde_json::from_str(text).unwrap();
        let from_value = Object::from_value(&value, &["items", "lines"]).unwrap();
        let embedded = |object: &Object, field: &str| {
            object
                .embedded
                .iter()
                .find(|(name, _)| *name == field)
                .map(|(_, list)| list.clone())
        };
        for object in [&from_raw, &from_value] {
            assert_eq!(object.id, "sub_1");
            assert_eq!(object.created, Some(1_700_000_000));
            assert_eq!(serde_json::from_str::<Value>(&object.json).unwrap(), value);
            let items = embedded(object, "items").unwrap();
            assert!(items.has_more);
            assert_eq!(
                items.url.as_deref(),
                Some("/v1/subscription_items?subscription=sub_1")
            );
            assert_eq!(items.items.len(), 1);
            assert_eq!(items.items[0].id, "si_1");
            assert!(embedded(object, "lines").is_none());
        }
        let no_id: Box<RawValue> = serde_json::from_str(r#"{"object":"x"}"#).unwrap();
        assert!(Object::from_raw(&no_id, &[]).is_err());
    }
}
