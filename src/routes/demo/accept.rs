//! Just enough `Accept` negotiation (RFC 9110 §12.5.1) to tell a browser from an API client.
//!
//! `GET /` has two representations: the JSON index and the HTML demo page. JSON is the default,
//! so curl (`*/*`), scripts that send no `Accept` and API tools (`application/json`) keep the
//! original behaviour; the page is chosen only when `text/html` is strictly preferred, which is
//! what every browser's navigation request says (`text/html,...,*/*;q=0.8`).

/// Whether the client, by its `Accept` header, strictly prefers `text/html` to `application/json`.
pub fn prefers_html(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let html = quality(accept, "text", "html");
    html > 0 && html > quality(accept, "application", "json")
}

/// The quality (0..=1000) that `accept` gives `kind/subtype`: the `q` of the most specific range
/// matching it (`kind/subtype` over `kind/*` over `*/*`), 0 when none matches.
fn quality(accept: &str, kind: &str, subtype: &str) -> u16 {
    accept
        .split(',')
        .filter_map(MediaRange::parse)
        .filter_map(|range| range.specificity(kind, subtype).map(|s| (s, range.quality)))
        .max()
        .map_or(0, |(_, quality)| quality)
}

/// One element of an `Accept` list.
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    /// `q` scaled to 0..=1000, so it compares exactly.
    quality: u16,
}

impl<'a> MediaRange<'a> {
    /// Parses `type/subtype;param=value;q=0.8`; `None` for an element that is not a media range
    /// or has an unreadable `q` (such an element is ignored rather than guessed at).
    fn parse(element: &'a str) -> Option<Self> {
        let mut parts = element.split(';');
        let (kind, subtype) = parts.next()?.trim().split_once('/')?;
        let (kind, subtype) = (kind.trim(), subtype.trim());
        if kind.is_empty() || subtype.is_empty() {
            return None;
        }
        let mut quality = 1000;
        for param in parts {
            if let Some((name, value)) = param.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                quality = parse_quality(value.trim())?;
            }
        }
        Some(Self {
            kind,
            subtype,
            quality,
        })
    }

    /// How specifically this range names `kind/subtype` (2 exact, 1 `kind/*`, 0 `*/*`), or
    /// `None` when it does not match it.
    fn specificity(&self, kind: &str, subtype: &str) -> Option<u8> {
        match (self.kind, self.subtype) {
            ("*", "*") => Some(0),
            (k, "*") if k.eq_ignore_ascii_case(kind) => Some(1),
            (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(subtype) => Some(2),
            _ => None,
        }
    }
}

/// Parses a `qvalue` (`0`, `0.8`, `1.000`) into thousandths.
fn parse_quality(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The digits padded with zeros to three: "8" is 800, "25" is 250.
    let thousandths = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, digit| n * 10 + u16::from(digit - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,\
                          image/avif,image/webp,image/apng,*/*;q=0.8";
    const FIREFOX: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    #[test]
    fn browsers_prefer_html() {
        assert!(prefers_html(Some(CHROME)));
        assert!(prefers_html(Some(FIREFOX)));
        assert!(prefers_html(Some("text/html")));
        assert!(prefers_html(Some("TEXT/*")));
    }

    #[test]
    fn api_clients_get_json() {
        assert!(!prefers_html(None), "no Accept header");
        assert!(!prefers_html(Some("*/*")), "curl");
        assert!(!prefers_html(Some("")));
        assert!(!prefers_html(Some("application/json")));
        assert!(
            !prefers_html(Some("application/json, text/plain, */*")),
            "axios"
        );
    }

    #[test]
    fn equal_preference_keeps_the_json_default() {
        assert!(!prefers_html(Some("application/json, text/html")));
        assert!(!prefers_html(Some("text/html;q=0.5, application/*;q=0.5")));
    }

    #[test]
    fn quality_values_decide() {
        assert!(!prefers_html(Some("text/html;q=0.9, application/json")));
        assert!(prefers_html(Some("text/html, application/json;q=0.9")));
        assert!(
            !prefers_html(Some("text/html;q=0, */*")),
            "q=0 means not acceptable"
        );
    }

    #[test]
    fn the_most_specific_range_wins() {
        // `*/*` allows HTML at 1, but the exact `text/html` range lowers it below JSON.
        assert!(!prefers_html(Some("*/*, text/html;q=0.1")));
        assert!(prefers_html(Some("text/html, */*;q=0.5")));
    }

    #[test]
    fn malformed_elements_are_ignored() {
        assert!(!prefers_html(Some("text/html;q=high")));
        assert!(!prefers_html(Some("text/html;q=1.5")));
        assert!(!prefers_html(Some("html, /, garbage")));
        assert!(prefers_html(Some(
            "garbage, text/html ; charset=utf-8 ; q=0.700"
        )));
    }

    #[test]
    fn quality_parsing_follows_the_grammar() {
        assert_eq!(parse_quality("1"), Some(1000));
        assert_eq!(parse_quality("1.000"), Some(1000));
        assert_eq!(parse_quality("0.8"), Some(800));
        assert_eq!(parse_quality("0.05"), Some(50));
        assert_eq!(parse_quality("0"), Some(0));
        assert_eq!(parse_quality("1.001"), None);
        assert_eq!(parse_quality("0.0001"), None);
        assert_eq!(parse_quality("-0.5"), None);
        assert_eq!(parse_quality(".5"), None);
    }
}
