//! Whether a notice fits in one Matrix event, measured the way the
//! homeserver measures it: on the serialized event, not on the text.
//!
//! Synapse refuses an event whose canonical JSON (content, envelope,
//! hashes, signatures) exceeds 65,536 bytes, and a refused send fails for
//! good. Gatekeeper keeps everything it sends at or below
//! [`MAX_EVENT_BYTES`], leaving room for what the homeserver adds beyond
//! our estimate. Renderers that list unbounded data (`pending`, `show`,
//! the digest, the lists) fill a notice with [`Meter`] and `decide` checks
//! every notice once more with [`fits`] before it leaves the engine.

use serde_json::json;

/// The most Gatekeeper lets one event weigh: 64 KiB less a margin of
/// 5,536 bytes for the homeserver's own fields we do not model
/// (`prev_events` and `auth_events` lists, `hashes`, `signatures`, `depth`).
pub const MAX_EVENT_BYTES: usize = 60_000;

// The margin stays real if anyone raises the bound.
const _: () = assert!(MAX_EVENT_BYTES + 5_000 < 65_536);

/// What the homeserver wraps around the content, budgeted generously:
/// `sender`, `room_id` and `event_id` of up to 255 characters each, `type`,
/// `origin_server_ts`, `unsigned` (`age`, `transaction_id` of ~60) and the
/// JSON punctuation around them come to ~1,000 bytes.
pub const ENVELOPE_BYTES: usize = 1_500;

/// The largest `m.room.message` content (as JSON) in appservice mode.
pub const MAX_CONTENT_BYTES: usize = MAX_EVENT_BYTES - ENVELOPE_BYTES;

/// The largest plaintext content in client mode, where notices may be
/// encrypted. Megolm encrypts `{"type":…,"content":<C>,"room_id":<255>}`
/// (C + ~300 bytes), adds ~100 bytes (version, index, AES-CBC padding, MAC,
/// Ed25519 signature) and base64s it (4/3); the `m.room.encrypted` content
/// adds `algorithm`, `sender_key`, `session_id` and a `device_id` (~500
/// bytes budgeted), then the envelope. So
/// `4/3 × (C + 400) + 500 + 1,500 ≤ 60,000`, i.e. `C ≤ 43,100`.
pub const MAX_ENCRYPTED_CONTENT_BYTES: usize = 43_000;

/// The bound on the content JSON that [`fits`] applies.
pub fn max_content_bytes(client_mode: bool) -> usize {
    if client_mode { MAX_ENCRYPTED_CONTENT_BYTES } else { MAX_CONTENT_BYTES }
}

/// The content of a notice exactly as the connectors send it
/// (`RoomMessageEventContent::notice_html` with empty `m.mentions`; built
/// by hand because the engine does not link ruma's event types).
pub fn notice_content(plain: &str, html: &str) -> serde_json::Value {
    json!({
        "msgtype": "m.notice",
        "body": plain,
        "format": "org.matrix.custom.html",
        "formatted_body": html,
        "m.mentions": {},
    })
}

/// Bytes of the notice's content once serialized.
pub fn content_bytes(plain: &str, html: &str) -> usize {
    // Serializing a `Value` of strings cannot fail.
    serde_json::to_vec(&notice_content(plain, html)).map(|v| v.len()).unwrap_or(usize::MAX)
}

/// Whether a notice of this plain text and HTML can be sent as one event.
/// The one test every notice passes before it leaves the engine.
pub fn fits(plain: &str, html: &str, client_mode: bool) -> bool {
    content_bytes(plain, html) <= max_content_bytes(client_mode)
}

/// Bytes `s` takes inside a JSON string, as serde_json writes it: `"` and
/// `\` and the short control escapes take 2, other control characters 6
/// (`\u0001`), everything else its UTF-8 length (non-ASCII is not escaped).
/// Additive over concatenation, so a renderer can meter pieces; a test
/// holds it equal to serde_json.
pub fn escaped_len(s: &str) -> usize {
    s.chars().map(escaped_char_len).sum()
}

/// [`escaped_len`] of one character.
pub fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0C}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Fills one notice piece by piece: knows how much of the bound is used.
#[derive(Debug, Clone)]
pub struct Meter {
    used: usize,
    max: usize,
}

impl Meter {
    /// A notice whose fixed parts (header, footer, at their longest) are
    /// `reserved`, in plain and HTML.
    pub fn new(client_mode: bool, reserved: &[(&str, &str)]) -> Self {
        let used = content_bytes("", "") + reserved.iter().map(|(p, h)| escaped_len(p) + escaped_len(h)).sum::<usize>();
        Meter { used, max: max_content_bytes(client_mode) }
    }

    /// What a piece costs.
    pub fn cost(plain: &str, html: &str) -> usize {
        escaped_len(plain) + escaped_len(html)
    }

    /// Whether a piece of this cost still fits.
    pub fn has_room(&self, cost: usize) -> bool {
        self.used + cost <= self.max
    }

    /// Takes the piece if it fits; says whether it did.
    pub fn take(&mut self, cost: usize) -> bool {
        let room = self.has_room(cost);
        if room {
            self.used += cost;
        }
        room
    }

    /// Bytes still free.
    pub fn room(&self) -> usize {
        self.max.saturating_sub(self.used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_len_is_what_serde_json_writes() {
        let mut all = String::new();
        for c in (0u32..0x300).chain([0x2028, 0x2029, 0xFEFF, 0x1F600, 0x10FFFF]).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(escaped_len(&s), serde_json::to_string(&s).unwrap().len() - 2, "{c:?}");
            all.push(c);
        }
        assert_eq!(escaped_len(&all), serde_json::to_string(&all).unwrap().len() - 2);
    }

    #[test]
    fn the_content_is_measured_as_serialized_json() {
        let empty = content_bytes("", "");
        assert_eq!(
            empty,
            r#"{"body":"","format":"org.matrix.custom.html","formatted_body":"","m.mentions":{},"msgtype":"m.notice"}"#
                .len()
        );
        assert_eq!(content_bytes("\"\u{1}", "é😀"), empty + 2 + 6 + 2 + 4);
        let at_bound = "x".repeat(MAX_CONTENT_BYTES - empty);
        assert!(fits(&at_bound, "", false));
        assert!(!fits(&at_bound, "x", false));
        assert!(!fits(&at_bound, "", true));
        // Quotes double in JSON: text that fits by length may not once escaped.
        let quotes = "\"".repeat((MAX_CONTENT_BYTES - empty) / 2 + 1);
        assert!(quotes.len() < MAX_CONTENT_BYTES && !fits(&quotes, "", false));
    }

    #[test]
    fn the_encrypted_bound_leaves_room_for_megolm_and_the_envelope() {
        let payload = MAX_ENCRYPTED_CONTENT_BYTES + 400;
        let base64 = payload.div_ceil(3) * 4;
        assert!(base64 + 500 + ENVELOPE_BYTES <= MAX_EVENT_BYTES, "{base64}");
    }
}
