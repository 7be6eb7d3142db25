//! The words Gatekeeper says, in plain text and in HTML. Any text that came
//! from a user goes through [`escape_html`] before it reaches HTML.
//!
//! Every sentence Gatekeeper says lives under this module, so that wording
//! is reviewed in one place and rules only decide (a test reads the rules'
//! sources and refuses sentences there). A function returns [`Text`] for a
//! whole message; one that returns `String` gives a single plain line (a
//! line of a multi-subject answer, a list item, the reason inside a
//! refusal) that a combinator here ([`lines`], [`list`], [`invalid`])
//! escapes once when it builds the message.

mod card;
mod commands;
pub mod digest;
mod gate;
mod mail;
mod native;
mod policy;
mod urgent;
mod welcome;

pub use card::*;
pub use commands::*;
pub use gate::*;
pub use mail::*;
pub use native::*;
pub use policy::*;
pub use urgent::*;
pub use welcome::*;

/// A message in both forms a Matrix client may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub plain: String,
    pub html: String,
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Characters that change how text around them is shown without being
/// seen: bidirectional controls and zero-width characters. A sender's text
/// loses them everywhere it is shown, so it cannot reorder or hide what
/// Gatekeeper writes around it.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// A sender's text that may span lines (a message body): line breaks kept,
/// other control characters and invisible ones dropped.
pub fn visible(text: &str) -> String {
    text.chars().filter(|c| *c == '\n' || (!c.is_control() && !is_invisible(*c))).collect()
}

/// A display name made safe to show: no control or bidirectional-override
/// characters, whitespace collapsed, at most 40 characters. Empty when
/// nothing is left.
pub fn clean_name(name: &str) -> String {
    one_line(name, 40)
}

/// What a display name looks like once letters that imitate others are
/// mapped to them: lower case, only letters and digits, Cyrillic and Greek
/// look-alikes and full-width forms as the Latin letters they imitate.
fn skeleton(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'а' | 'α' => 'a',
            'в' | 'β' => 'b',
            'с' | 'ϲ' => 'c',
            'ԁ' => 'd',
            'е' | 'ε' => 'e',
            'һ' => 'h',
            'і' | 'ι' | 'ı' => 'i',
            '1' | '|' => 'l',
            'ј' => 'j',
            'к' | 'κ' => 'k',
            'м' => 'm',
            'п' | 'η' => 'n',
            'о' | 'ο' | '0' => 'o',
            'р' | 'ρ' => 'p',
            'ѕ' | '5' => 's',
            'т' | 'τ' => 't',
            'υ' => 'u',
            'ν' => 'v',
            'ш' | 'ω' => 'w',
            'х' | 'χ' => 'x',
            'у' | 'γ' => 'y',
            c => c,
        })
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// Whom a stranger's display name imitates, if anyone: the owner (by their
/// display name or user name) or one of their contacts (by user name), with
/// look-alike letters counted as the letters they imitate. Said next to
/// the stranger's ID so that "Alice" from another ID is not taken for her.
pub fn imitates(name: Option<&str>, owner: &crate::OwnerState, contacts: &[&ruma::UserId]) -> Option<String> {
    Likeness::new(owner, contacts).of(name)
}

/// The names a stranger must not imitate, worked out once for many names.
pub struct Likeness<'a> {
    owner: Vec<String>,
    contacts: std::collections::HashMap<String, &'a ruma::UserId>,
}

impl<'a> Likeness<'a> {
    pub fn new(owner: &crate::OwnerState, contacts: &[&'a ruma::UserId]) -> Self {
        let owner = owner.displayname.iter().map(String::as_str).chain([owner.user_id.localpart()]).map(skeleton);
        Likeness { owner: owner.collect(), contacts: contacts.iter().map(|c| (skeleton(c.localpart()), *c)).collect() }
    }

    /// Whom `name` imitates, if anyone (see [`imitates`]).
    pub fn of(&self, name: Option<&str>) -> Option<String> {
        let mine = skeleton(name?);
        if mine.len() < 3 {
            return None;
        }
        if self.owner.contains(&mine) {
            return Some("uses your own name".to_owned());
        }
        self.contacts.get(&mine).map(|c| format!("uses the name of your contact {c}"))
    }
}

/// Who someone is: the user ID always, their display name never alone
/// (anyone can call themselves "Alice" or "@alice:example.org").
pub fn who(user: &str, name: Option<&str>) -> String {
    // A name that only repeats the user ID (or its local part) adds nothing.
    let localpart = user.trim_start_matches('@').split(':').next().unwrap_or_default();
    match name.map(clean_name).filter(|n| !n.is_empty() && n != user && !n.eq_ignore_ascii_case(localpart)) {
        Some(n) => format!("{user} (“{}”)", defang(&n)),
        None => user.to_owned(),
    }
}

/// The users among an owner's contacts, whose names a stranger may imitate.
pub fn contact_users(contacts: &std::collections::BTreeMap<crate::Subject, crate::Contact>) -> Vec<&ruma::UserId> {
    contacts
        .keys()
        .filter_map(|s| match s {
            crate::Subject::User(u) => Some(&**u),
            crate::Subject::Server(_) => None,
        })
        .collect()
}

/// [`who`], flagged when the name imitates someone (see [`imitates`]).
pub fn who_flagged(user: &str, name: Option<&str>, imitation: Option<&str>) -> String {
    match imitation {
        Some(what) => format!("{} ⚠ {what}", who(user, name)),
        None => who(user, name),
    }
}

/// Gatekeeper's own sentence, which may quote user-supplied text.
pub fn plain(text: &str) -> Text {
    Text { plain: text.to_owned(), html: format!("<p>{}</p>", escape_html(text).replace('\n', "<br>")) }
}

/// Several sentences, one per line.
pub fn lines(lines: &[String]) -> Text {
    Text {
        plain: lines.join("\n"),
        html: format!("<p>{}</p>", lines.iter().map(|l| escape_html(l)).collect::<Vec<_>>().join("<br>")),
    }
}

/// An introduction and a bulleted list.
pub fn list(intro: &str, items: &[String]) -> Text {
    let mut plain = format!("{intro}\n");
    let mut html = format!("<p>{}</p><ul>", escape_html(intro));
    for item in items {
        plain.push_str(&format!("• {item}\n"));
        html.push_str(&format!("<li>{}</li>", escape_html(item)));
    }
    html.push_str("</ul>");
    Text { plain: plain.trim_end().to_owned(), html }
}

/// A notice that does not fit one event (only owner-set text can make one:
/// a long reply template, a huge unknown command word) cut to the longest
/// plain prefix that fits, with a note; its HTML is then the plain text
/// escaped. Anything listing stranger data is paged before it gets here.
pub fn fitted(text: Text, client_mode: bool) -> Text {
    if crate::limits::fits(&text.plain, &text.html, client_mode) {
        return text;
    }
    let chars: Vec<char> = text.plain.chars().collect();
    let cut = |n: usize| {
        let kept: String = chars[..n].iter().collect();
        let plain = format!("{kept}… {SHORTENED}");
        let html = format!("<p>{}</p>", escape_html(&plain).replace('\n', "<br>"));
        Text { plain, html }
    };
    // The longest prefix that fits: fitting only gets harder as it grows.
    let (mut lo, mut hi) = (0, chars.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let t = cut(mid);
        if crate::limits::fits(&t.plain, &t.html, client_mode) { lo = mid } else { hi = mid - 1 }
    }
    cut(lo)
}

const SHORTENED: &str = "(shortened: too long for one message)";

/// What one character of user text costs in a notice: once in the plain
/// body, once escaped in the HTML (a line break there is `<br>`).
fn char_cost(c: char) -> usize {
    use crate::limits::escaped_char_len;
    // What `escape_html` and the line breaks make of it, without building it.
    let html = match c {
        '\n' => "<br>".len(),
        '&' | '\'' => 5,
        '<' | '>' => 4,
        '"' => 6,
        c => escaped_char_len(c),
    };
    escaped_char_len(c) + html
}

/// The longest prefix of `text` that costs at most `budget` bytes in a
/// notice (plain and HTML, JSON-escaped), and how many characters were
/// left out. Bounds by bytes, so neither 4-byte characters nor quotes and
/// control characters (6 bytes each once escaped) can overflow a page.
pub fn trim_to_cost(text: &str, budget: usize) -> (String, usize) {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        used += char_cost(c);
        if used > budget {
            return (text[..i].to_owned(), text[i..].chars().count());
        }
    }
    (text.to_owned(), 0)
}

/// Splits `items` into pages: each page takes items while the next still
/// fits beside `frame` (the page's header and footer at their longest).
/// A page holds at least one item. Returns the index ranges of the pages.
pub fn paginate(items: &[Text], frame: &Text, client_mode: bool) -> Vec<std::ops::Range<usize>> {
    use crate::limits::Meter;
    let mut pages = Vec::new();
    let mut start = 0;
    let mut meter = Meter::new(client_mode, &[(&frame.plain, &frame.html)]);
    for (i, item) in items.iter().enumerate() {
        if !meter.take(Meter::cost(&item.plain, &item.html)) && i > start {
            pages.push(start..i);
            start = i;
            meter = Meter::new(client_mode, &[(&frame.plain, &frame.html)]);
            meter.take(Meter::cost(&item.plain, &item.html));
        }
    }
    if start < items.len() {
        pages.push(start..items.len());
    }
    pages
}

/// Durations read back the way the commands accept them.
pub use gatekeeper_common::duration::format as format_duration;

/// A UTC timestamp as `2026-11-25 19:52 UTC` (time zones come with the digest).
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let (hh, mm) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02} UTC")
}

/// One line of at most `max` characters, for previews.
pub fn one_line(text: &str, max: usize) -> String {
    let seen: String = text.chars().filter(|c| !is_invisible(*c)).collect();
    let flat: String = seen
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max.saturating_sub(1)).collect::<String>())
    }
}

/// `1 room`, `2 rooms`.
fn plural(n: usize, one: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {one}s") }
}

/// What stands for a message that could not be decrypted, where it is listed.
const UNREADABLE: &str = "(an encrypted message Gatekeeper could not read)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(1_764_100_320_000), "2025-11-25 19:52 UTC");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn etiquette_reply_fills_in_and_escapes() {
        let t = etiquette(None, "Alice <3", Some("alice@example.org"), false, "");
        assert!(t.plain.contains("Alice <3 will read it"));
        assert!(t.plain.contains("alice@example.org"));
        assert!(t.html.contains("Alice &lt;3"));
        assert!(!t.html.contains("<3"));
        let without = etiquette(None, "Alice", None, false, "");
        assert!(!without.plain.contains("write to"));
        assert!(!without.plain.contains('{'));
        let custom = etiquette(Some("Back soon. — {name}\n\n<b>bye</b> {email}"), "Al", None, true, "");
        assert!(custom.plain.starts_with("Back soon. — Al"));
        assert!(custom.html.contains("&lt;b&gt;bye&lt;/b&gt;"));
        assert!(custom.plain.contains("encrypted"));
    }

    #[test]
    fn default_reply_is_short_and_never_scolds() {
        let t = etiquette(None, "Alice", None, false, "");
        assert!(t.plain.chars().count() < 600, "{}", t.plain.chars().count());
        for word in ["spam", "blocked", "filter", "not allowed", "must", "allowlist"] {
            assert!(!t.plain.to_lowercase().contains(word), "{word}");
        }
        assert!(t.plain.contains("thank"));
    }

    #[test]
    fn display_names_are_shown_only_beside_the_user_id_and_cleaned() {
        assert_eq!(who("@a:x.org", None), "@a:x.org");
        assert_eq!(who("@a:x.org", Some("Ann")), "@a:x.org (“Ann”)");
        assert_eq!(who("@ann:x.org", Some("Ann B.")), "@ann:x.org (“Ann B.”)");
        assert_eq!(who("@a:x.org", Some("@a:x.org")), "@a:x.org");
        assert_eq!(who("@ann:x.org", Some("ann")), "@ann:x.org");
        assert_eq!(who("@a:x.org", Some("\u{202E}gro.x:a@\n")), "@a:x.org (“gro.x:a@”)");
        assert_eq!(who("@a:x.org", Some("\u{200B}")), "@a:x.org");
        assert!(who("@a:x.org", Some(&"x".repeat(100))).chars().count() < 60);
    }

    #[test]
    fn a_characters_cost_is_what_it_adds_to_a_notice() {
        for c in ['a', '"', '\\', '\n', '\u{1}', '<', '>', '&', '\'', 'é', '😀', '\u{2028}'] {
            let s = c.to_string();
            let html = escape_html(&s).replace('\n', "<br>");
            assert_eq!(char_cost(c), crate::limits::escaped_len(&s) + crate::limits::escaped_len(&html), "{c:?}");
        }
        let (kept, cut) = trim_to_cost("ab\"c", 2 + 2 + 8);
        assert_eq!((kept.as_str(), cut), ("ab\"", 1));
    }

    #[test]
    fn one_line_trims_and_flattens() {
        assert_eq!(one_line("a\n b   c", 10), "a b c");
        assert_eq!(one_line("abcdefghijkl", 5), "abcd…");
    }

    #[test]
    fn user_text_is_escaped_in_html() {
        let t = unknown_command("<img src=x onerror=alert(1)>&\"'");
        assert!(!t.html.contains("<img"));
        assert!(t.html.contains("&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#39;"));
        assert!(t.plain.contains("<img"));
    }
}
