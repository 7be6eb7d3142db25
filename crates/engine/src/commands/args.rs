//! What commands' arguments look like: targets, durations, clock times,
//! time zones and e-mail addresses, each checked once, at parse time.

use std::sync::OnceLock;

use crate::subject::Subject;
use crate::texts;

/// Durations are written the same way in commands and in the config file.
pub use gatekeeper_common::duration::parse as parse_duration;

/// The words after a command's name.
pub struct Args<'a> {
    /// Everything after the name, trimmed; line breaks kept (`reply set`).
    pub text: &'a str,
    pub words: Vec<&'a str>,
}

impl Args<'_> {
    /// For commands that take no arguments: refuses any.
    pub fn none(&self) -> Result<(), String> {
        if self.text.is_empty() { Ok(()) } else { Err(texts::takes_no_arguments()) }
    }
}

/// Someone (or a whole server) a command is about, or a number from the
/// list the owner saw last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Subject(Subject),
    Number(usize),
}

/// One `<target>`: a user ID, `*:server`, or a list number (`2`, `#2`).
pub fn target(word: &str) -> Result<Target, String> {
    let number = word.strip_prefix('#').unwrap_or(word);
    if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
        return match number.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Target::Number(n)),
            _ => Err(texts::not_a_list_number(word)),
        };
    }
    word.parse::<Subject>().map(Target::Subject)
}

/// A page number: 1 or more.
pub fn page(word: &str) -> Result<usize, String> {
    match word.parse::<usize>() {
        Ok(n) if n > 0 && word.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(texts::not_a_page_number(word)),
    }
}

/// `<target>...`: at least one.
pub fn targets(words: &[&str]) -> Result<Vec<Target>, String> {
    if words.is_empty() {
        return Err(texts::say_who());
    }
    words.iter().map(|w| target(w)).collect()
}

/// Whether `name` is an IANA time zone (from the bundled database, so the
/// answer does not depend on the host).
pub fn is_time_zone(name: &str) -> bool {
    static DB: OnceLock<jiff::tz::TimeZoneDatabase> = OnceLock::new();
    !name.is_empty() && DB.get_or_init(jiff::tz::TimeZoneDatabase::bundled).get(name).is_ok()
}

/// A plausible e-mail address, and nothing that could break a mail header.
pub fn check_email(s: &str) -> Result<String, String> {
    let bad = || texts::not_an_email(s);
    if s.len() > 254
        || s.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | ',' | ';' | '"'))
    {
        return Err(bad());
    }
    let (local, domain) = s.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(bad());
    }
    Ok(s.to_owned())
}

/// `HH:MM` on a 24-hour clock, as minutes after midnight.
pub fn clock_time(s: &str) -> Result<u16, String> {
    let bad = || texts::not_a_clock_time(s);
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}
