//! Writes items straight into a byte buffer, in JSON-array or NDJSON framing.
//!
//! An item has a fixed shape with no string that needs escaping (`"Item <id>"`, an RFC 3339
//! timestamp), so it is written field by field with `itoa`/`ryu` into the caller's buffer: no
//! intermediate value, no allocation per item. The unit tests parse the output back with
//! `serde_json` to keep the hand-written framing honest.

use bytes::BytesMut;

use super::Format;

/// Bytes an item takes at most, to reserve a whole chunk at once: `{"id":` (6) + id (<= 20) +
/// `,"name":"Item ` (14) + id (<= 20) + `","value":` (11) + value (<= 24) + `,"timestamp":"` (14)
/// + timestamp (<= 35) + `"}` (2) + separator and closing bracket (<= 4), rounded up.
pub const MAX_ITEM_BYTES: usize = 160;

/// One item of the stream, borrowed for the time it takes to write it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Item<'a> {
    /// Position in the stream, from 1.
    pub id: u64,
    /// A finite number in `0..1000`.
    pub value: f64,
    /// RFC 3339 time the item's chunk was produced.
    pub timestamp: &'a str,
}

/// Appends `item` to `out`, with the framing that goes around it.
///
/// `total` is the number of items in the whole stream: the JSON array opens before item 1 and
/// closes after item `total`. Items are separated by `,\n` so every chunk ends a line and a
/// terminal shows whole items as they arrive.
pub fn write_item(out: &mut BytesMut, format: Format, item: Item<'_>, total: u64) {
    let mut ints = itoa::Buffer::new();
    let mut floats = ryu::Buffer::new();
    if format == Format::Json && item.id == 1 {
        out.extend_from_slice(b"[\n");
    }
    let id = ints.format(item.id).as_bytes();
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id);
    out.extend_from_slice(b",\"name\":\"Item ");
    out.extend_from_slice(id);
    out.extend_from_slice(b"\",\"value\":");
    out.extend_from_slice(floats.format_finite(item.value).as_bytes());
    out.extend_from_slice(b",\"timestamp\":\"");
    out.extend_from_slice(item.timestamp.as_bytes());
    out.extend_from_slice(b"\"}");
    let closing: &[u8] = match format {
        Format::Ndjson => b"\n",
        Format::Json if item.id == total => b"\n]\n",
        Format::Json => b",\n",
    };
    out.extend_from_slice(closing);
}

/// The whole body of an empty stream.
pub fn empty_body(format: Format) -> &'static [u8] {
    match format {
        Format::Json => b"[]\n",
        Format::Ndjson => b"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMESTAMP: &str = "2026-11-23T14:05:09.123456789Z";

    fn encode(format: Format, values: &[f64]) -> String {
        let mut out = BytesMut::new();
        let total = values.len() as u64;
        for (index, value) in values.iter().enumerate() {
            let item = Item {
                id: index as u64 + 1,
                value: *value,
                timestamp: TIMESTAMP,
            };
            write_item(&mut out, format, item, total);
        }
        if values.is_empty() {
            out.extend_from_slice(empty_body(format));
        }
        String::from_utf8(out.to_vec()).expect("UTF-8")
    }

    #[test]
    fn json_framing_is_one_valid_array() {
        let values = [0.0, 999.999_999_999_9, 1.5e-7, 42.0];
        let text = encode(Format::Json, &values);
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&text).expect(&text);
        assert_eq!(parsed.len(), 4);
        for (index, item) in parsed.iter().enumerate() {
            let id = index as u64 + 1;
            assert_eq!(item["id"], id);
            assert_eq!(item["name"], format!("Item {id}"));
            assert_eq!(item["value"].as_f64(), Some(values[index]));
            assert_eq!(item["timestamp"], TIMESTAMP);
        }
        assert!(
            text.starts_with("[\n{") && text.ends_with("}\n]\n"),
            "{text}"
        );
    }

    #[test]
    fn a_single_item_opens_and_closes_the_array() {
        let text = encode(Format::Json, &[1.0]);
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&text).expect(&text);
        assert_eq!(parsed.len(), 1);
    }

    #[test]
    fn empty_json_stream_is_an_empty_array() {
        let parsed: Vec<serde_json::Value> =
            serde_json::from_str(&encode(Format::Json, &[])).expect("valid JSON");
        assert!(parsed.is_empty());
        assert_eq!(encode(Format::Ndjson, &[]), "");
    }

    #[test]
    fn ndjson_is_one_object_per_line() {
        let text = encode(Format::Ndjson, &[1.0, 2.0, 3.0]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        for (index, line) in lines.iter().enumerate() {
            let item: serde_json::Value = serde_json::from_str(line).expect(line);
            assert_eq!(item["id"], index as u64 + 1);
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn the_largest_item_fits_the_reservation() {
        let mut out = BytesMut::new();
        let item = Item {
            id: u64::MAX,
            value: 123.456_789_012_345_67,
            timestamp: "-9999-12-31T23:59:59.999999999+23:59",
        };
        write_item(&mut out, Format::Json, item, u64::MAX);
        assert!(out.len() <= MAX_ITEM_BYTES, "{} bytes", out.len());
    }
}
