//! What the owner is shown about a stranger beyond their messages: the
//! subject (the one line they gave for why they write) and the card (where
//! they come from, what else they did, what their messages contain), and
//! how a stranger's links are shown: as text that does not link.

use super::{Text, escape_html, is_invisible, one_line, visible};

/// The longest subject shown, in characters.
pub const SUBJECT_CHARS: usize = 120;

/// The characters a browser or a mail client reads as a host's dots.
fn is_dot(c: char) -> bool {
    matches!(c, '.' | '\u{3002}' | '\u{FF0E}' | '\u{FF61}')
}

/// A word a client might make a link of: it names a scheme (`https://`),
/// or a dot stands between a letter or digit and a name of two letters or
/// more (`example.com`, `cv.pdf`, `bob@mail.example`).
fn linky(word: &str) -> bool {
    if word.contains("://") {
        return true;
    }
    let chars: Vec<char> = word.chars().collect();
    chars.iter().enumerate().any(|(i, c)| {
        is_dot(*c)
            && i > 0
            && chars[i - 1].is_alphanumeric()
            && chars[i + 1..].iter().take_while(|c| c.is_alphabetic()).count() >= 2
    })
}

/// A stranger's text with every link made dead: `https://example.com/x`
/// reads `https[:]//example[.]com/x`, which no client or mail reader turns
/// into a link. Gatekeeper's own links and the owner's commands are never
/// passed through this.
pub fn defang(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if linky(word) {
            for c in word.replace("://", "[:]//").chars() {
                if is_dot(c) { out.push_str("[.]") } else { out.push(c) }
            }
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A subject as it is shown: one line, no invisible characters, links
/// dead, at most [`SUBJECT_CHARS`] characters. Only a bounded prefix of
/// what the stranger wrote is looked at.
pub fn subject_line(text: &str) -> String {
    let head: String = text.chars().take(SUBJECT_CHARS * 4).collect();
    one_line(&defang(&visible(&head)), SUBJECT_CHARS)
}

/// `Subject: …` as the first line of an entry.
pub fn subject_heading(line: &str) -> Text {
    let s = format!("Subject: “{line}”");
    Text { plain: s.clone(), html: format!("<b>Subject:</b> “{}”", escape_html(line)) }
}

/// The subject of a sender's entry: the reason of their first invitation
/// that gave one, else their first line after the etiquette reply, else
/// their first message; shown by [`subject_line`]. `None` when they have
/// said nothing readable.
pub fn subject_of<'a>(
    rooms: impl IntoIterator<Item = &'a crate::HeldRoom>,
    messages: impl IntoIterator<Item = &'a crate::Deferred>,
) -> Option<String> {
    let mut rooms: Vec<&crate::HeldRoom> = rooms.into_iter().collect();
    rooms.sort_by_key(|h| h.invited_at_ms);
    let line = |t: &str| Some(subject_line(t)).filter(|s| !s.is_empty());
    if let Some(reason) = rooms.iter().find_map(|h| h.reason.as_deref().and_then(line)) {
        return Some(reason);
    }
    if let Some(said) = rooms.iter().find_map(|h| h.said.as_deref().and_then(line)) {
        return Some(said);
    }
    let mut messages: Vec<&crate::Deferred> =
        messages.into_iter().filter(|m| !m.encrypted && m.media.is_none() && m.msgtype != "m.notice").collect();
    messages.sort_by_key(|m| (m.ts_ms, m.received_ms));
    messages.iter().find_map(|m| line(&m.body))
}

/// What `show` says of a sender above their messages: the subject, if
/// any, and the card.
pub fn show_intro(subject: Option<&str>, card: &Card) -> Text {
    let line = card_line(card);
    match subject {
        Some(s) => {
            let s = subject_heading(s);
            Text {
                plain: format!("{}\n{line}\n", s.plain),
                html: format!("<p>{}<br><small>{}</small></p>", s.html, escape_html(&line)),
            }
        }
        None => Text { plain: format!("{line}\n"), html: format!("<p><small>{}</small></p>", escape_html(&line)) },
    }
}

/// What a stranger's messages contain that the owner should know of before
/// reading them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Contains {
    pub links: bool,
    pub phone: bool,
    pub crypto: bool,
}

impl Contains {
    /// Looks through `text` (a bounded prefix of it).
    pub fn of(text: &str) -> Contains {
        let head: String = text.chars().take(20_000).collect();
        Contains {
            links: head.split_whitespace().any(linky),
            phone: has_phone(&head),
            crypto: head.split(|c: char| !c.is_ascii_alphanumeric()).any(is_crypto_address),
        }
    }

    pub fn or(self, other: Contains) -> Contains {
        Contains {
            links: self.links || other.links,
            phone: self.phone || other.phone,
            crypto: self.crypto || other.crypto,
        }
    }
}

/// A run of 8 to 15 digits, written with spaces, dashes, dots, slashes or
/// brackets between them, that starts with `+` or `0` or has 10 digits or
/// more: what reads as a phone number.
fn has_phone(text: &str) -> bool {
    // Words with letters in them (a hex address, a date-time code) are
    // never part of one.
    let text: String = text
        .split_whitespace()
        .map(|w| if w.chars().any(char::is_alphabetic) { "x" } else { w })
        .collect::<Vec<_>>()
        .join(" ");
    let mut digits = 0;
    let mut plus_or_zero = false;
    let mut last_sep = true;
    let ends = |digits: usize, plus_or_zero: bool| (8..=15).contains(&digits) && (plus_or_zero || digits >= 10);
    for c in text.chars() {
        if c.is_ascii_digit() {
            if digits == 0 && c == '0' {
                plus_or_zero = true;
            }
            digits += 1;
            last_sep = false;
        } else if c == '+' && digits == 0 {
            plus_or_zero = true;
        } else if matches!(c, ' ' | '-' | '.' | '/' | '(' | ')') && digits > 0 && !last_sep {
            last_sep = true;
        } else {
            if ends(digits, plus_or_zero) {
                return true;
            }
            digits = 0;
            plus_or_zero = false;
            last_sep = true;
        }
    }
    ends(digits, plus_or_zero)
}

fn base58(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() && !matches!(c, '0' | 'O' | 'I' | 'l'))
}

/// Bitcoin (legacy and bech32), Ethereum, Litecoin, Tron and Monero
/// addresses, by shape.
fn is_crypto_address(w: &str) -> bool {
    let n = w.len();
    let mixed = w.chars().any(|c| c.is_ascii_digit()) && w.chars().any(|c| c.is_ascii_alphabetic());
    if let Some(hex) = w.strip_prefix("0x") {
        return hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    let lower = w.to_ascii_lowercase();
    if (lower.starts_with("bc1") || lower.starts_with("ltc1")) && (25..=90).contains(&n) {
        return w.chars().all(|c| c.is_ascii_alphanumeric()) && mixed;
    }
    let first = w.chars().next().unwrap_or(' ');
    match first {
        '1' | '3' | 'L' | 'M' | 'T' if (26..=35).contains(&n) => base58(w) && mixed,
        '4' | '8' if n == 95 => base58(w),
        _ => false,
    }
}

/// What the card says about a sender, in one line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Card {
    /// Their homeserver.
    pub server: String,
    /// Appservice mode: how many people on this server they had invited in
    /// the day up to their (latest) invitation to the owner.
    pub invited_here: Option<u32>,
    /// The rooms they share with the owner, when looked up.
    pub shared: Option<crate::SharedRooms>,
    /// Their display name holds invisible or direction-changing characters.
    pub hidden_in_name: bool,
    pub contains: Contains,
}

impl Card {
    /// The card of `sender`, named `name`, from their held rooms and kept
    /// messages: what `pending`, `show` and the digest all show.
    pub fn of(
        sender: &ruma::UserId,
        name: Option<&str>,
        rooms: &[&crate::HeldRoom],
        messages: &[&crate::Deferred],
    ) -> Card {
        let invited = rooms.iter().filter_map(|h| h.invited_here).max();
        let words = messages.iter().map(|m| m.body.as_str()).chain(rooms.iter().filter_map(|h| h.reason.as_deref()));
        let shared = rooms.iter().filter(|h| h.shared.is_some()).min_by_key(|h| h.invited_at_ms);
        Card { shared: shared.and_then(|h| h.shared.clone()), ..Card::new(sender, name, invited, words) }
    }

    /// The card of `sender`, named `name`, whose words are `texts`.
    pub fn new<'a>(
        sender: &ruma::UserId,
        name: Option<&str>,
        invited_here: Option<u32>,
        texts: impl IntoIterator<Item = &'a str>,
    ) -> Card {
        Card {
            server: sender.server_name().to_string(),
            invited_here,
            shared: None,
            hidden_in_name: name.is_some_and(|n| n.chars().any(is_invisible)),
            contains: texts.into_iter().fold(Contains::default(), |c, t| c.or(Contains::of(t))),
        }
    }
}

/// How many shared rooms the card names.
pub const SHARED_NAMES: usize = 3;
/// The longest shared room name shown, in characters.
const SHARED_NAME_CHARS: usize = 40;

/// A shared room's name as the card shows it: one line, nothing invisible,
/// links dead, bounded. The name is anyone's text (the stranger may have
/// named a room they share with the owner).
pub fn shared_room_name(name: Option<&str>) -> String {
    let head: String = name.unwrap_or_default().chars().take(SHARED_NAME_CHARS * 4).collect();
    let shown = one_line(&defang(&visible(&head)), SHARED_NAME_CHARS);
    if shown.trim().is_empty() { "a room without a name".to_owned() } else { format!("“{shown}”") }
}

fn shared_part(s: &crate::SharedRooms) -> String {
    if s.count == 0 {
        return if s.complete {
            "shares no room with you".to_owned()
        } else {
            "shares none of the rooms of yours looked at".to_owned()
        };
    }
    let rooms = if s.count == 1 { "1 room".to_owned() } else { format!("{} rooms", s.count) };
    let more = s.count.saturating_sub(s.names.len() as u32);
    let mut names = s.names.join(", ");
    if more > 0 {
        names.push_str(&format!(" and {more} more"));
    }
    let at_least = if s.complete { "" } else { "at least " };
    format!("shares {at_least}{rooms} with you: {names}")
}

/// The card as one line (user text only where flattened and bounded: the
/// server name, a checked part of a user ID, and shared rooms' names).
pub fn card_line(card: &Card) -> String {
    let mut parts = vec![format!("from {}", defang(&card.server))];
    if let Some(shared) = &card.shared {
        parts.push(shared_part(shared));
    }
    if let Some(n) = card.invited_here {
        parts.push(if n == 1 {
            "invited 1 person on this server in the last 24 hours".to_owned()
        } else {
            format!("invited {n} people on this server in the last 24 hours")
        });
    }
    if card.hidden_in_name {
        parts.push("⚠ their name hides invisible characters".to_owned());
    }
    let c = card.contains;
    let found: Vec<&str> = [(c.links, "links"), (c.phone, "a phone number"), (c.crypto, "a cryptocurrency address")]
        .into_iter()
        .filter_map(|(yes, what)| yes.then_some(what))
        .collect();
    if !found.is_empty() {
        parts.push(format!("their messages contain {}", found.join(", ")));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_made_dead_and_nothing_else_changes() {
        assert_eq!(defang("see https://example.com/path?a=b now"), "see https[:]//example[.]com/path?a=b now");
        assert_eq!(defang("www.evil.example"), "www[.]evil[.]example");
        assert_eq!(defang("mail bob@evil.example."), "mail bob@evil[.]example[.]");
        assert_eq!(defang("ftp://10.0.0.1/x"), "ftp[:]//10[.]0[.]0[.]1/x");
        assert_eq!(defang("evil\u{3002}com"), "evil[.]com");
        for same in ["Hi. I am Bob, e.g. from 3.14 v1.2.3", "end.", "a . b", "line\n\nbreaks  kept"] {
            assert_eq!(defang(same), same);
        }
        assert!(!defang("javascript://%0aalert(1)").contains("://"));
    }

    #[test]
    fn subjects_are_one_bounded_line() {
        assert_eq!(
            subject_line("  Bob from\nAccounting\u{202E} about   the invoice "),
            "Bob from Accounting about the invoice"
        );
        assert!(subject_line(&"x".repeat(100_000)).chars().count() <= SUBJECT_CHARS);
        assert_eq!(subject_line("pay at pay.example/now"), "pay at pay[.]example/now");
        assert!(!subject_line("1\n2. @friend:example.org — forged").contains('\n'));
    }

    #[test]
    fn links_phone_numbers_and_crypto_addresses_are_noticed() {
        let c = Contains::of("call +49 30 1234567 or see example.com");
        assert_eq!(c, Contains { links: true, phone: true, crypto: false });
        assert!(Contains::of("send to 0x52908400098527886E0F7030069857D2E4169EE7").crypto);
        assert!(Contains::of("btc: 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2 thanks").crypto);
        assert!(Contains::of("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq").crypto);
        assert_eq!(Contains::of("Meeting on 2026-11-25, 3 people, version 1.2.3. Thanks!"), Contains::default());
        assert!(Contains::of("ring 030 1234 5678").phone);
    }

    #[test]
    fn the_card_says_where_from_and_what_to_beware_of() {
        let sender: &ruma::UserId = "@mallory:evil.example".try_into().unwrap();
        let card = Card::new(sender, Some("Al\u{200B}ice"), Some(37), ["see https://x.example", "hello"]);
        let line = card_line(&card);
        assert_eq!(
            line,
            "from evil[.]example · invited 37 people on this server in the last 24 hours · \
             ⚠ their name hides invisible characters · their messages contain links"
        );
        assert_eq!(card_line(&Card::new(sender, None, None, ["hi"])), "from evil[.]example");
    }
}
