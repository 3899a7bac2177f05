//! Wall-clock helpers shared by the event bus, the stream, the queue, authentication and the
//! stores.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The current UTC time as an ISO-8601 / RFC 3339 string, e.g. `2026-11-23T14:05:09.123456Z`.
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// `at` as an RFC 3339 string.
pub fn format_rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .expect("a UTC date between years 0 and 9999 always formats as RFC 3339")
}

/// Seconds since the Unix epoch, the unit of JWT times.
pub fn unix_seconds() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> u64 {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    u64::try_from(nanos / 1_000_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_back() {
        let text = now_rfc3339();
        assert!(OffsetDateTime::parse(&text, &Rfc3339).is_ok(), "{text}");
        assert!(text.ends_with('Z'));
    }

    #[test]
    fn unix_millis_is_after_2025() {
        assert!(unix_millis() > 1_735_689_600_000);
    }
}
