//! What Gatekeeper answers in the control room: help, the refusal of a
//! command's arguments, and each command's answer.

use jiff::tz::TimeZone;

use super::{Text, UNREADABLE, escape_html, format_duration, format_time, list, one_line, plain, plural};
use crate::commands::Spec;
use crate::schedule::local_time;
use crate::state::{AllowSource, Contact, Deferred, HeldRoom, Notify, OwnerState, PendingEntry, Unreadable, WaveKind};
use crate::subject::Subject;

/// Every command, one line each, in the order given.
pub fn help_overview(commands: &[&Spec]) -> Text {
    let mut plain = String::from(
        "Gatekeeper commands (type them here; a `!gk` or `!gatekeeper` prefix, or a mention of me, is optional). \
         <target> is a user ID, *:server for everyone on a server, or a number from `pending`:\n",
    );
    let mut html = String::from(
        "<p>Gatekeeper commands (type them here; a <code>!gk</code> or <code>!gatekeeper</code> prefix, \
         or a mention of me, is optional). \
         <code>&lt;target&gt;</code> is a user ID, <code>*:server</code> for everyone on a server, \
         or a number from <code>pending</code>:</p><ul>",
    );
    for spec in commands {
        plain.push_str(&format!("• {} — {}\n", spec.usage, spec.summary));
        html.push_str(&format!("<li><code>{}</code> — {}</li>", escape_html(spec.usage), escape_html(spec.summary)));
    }
    html.push_str("</ul>");
    Text { plain: plain.trim_end().to_owned(), html }
}

/// `help <command>`.
pub fn help_topic(spec: &Spec) -> Text {
    Text {
        plain: format!("{} — {}.", spec.usage, spec.summary),
        html: format!("<p><code>{}</code> — {}.</p>", escape_html(spec.usage), escape_html(spec.summary)),
    }
}

/// A one-line refusal of a command's arguments, with its usage.
pub fn invalid(message: &str, usage: &str) -> Text {
    Text {
        plain: format!("{message} Usage: {usage}"),
        html: format!("<p>{} Usage: <code>{}</code></p>", escape_html(message), escape_html(usage)),
    }
}

pub fn nobody_waiting() -> Text {
    Text {
        plain: "Nobody is waiting: no new contacts have written to you.".into(),
        html: "<p>Nobody is waiting: no new contacts have written to you.</p>".into(),
    }
}

/// One waiting sender in `pending`, numbered `n`, with their first group
/// invitation if any. `tz` is the owner's time zone.
pub fn pending_entry(n: usize, e: &PendingEntry, invite: Option<&str>, tz: &TimeZone) -> Text {
    let count = match e.messages {
        0 => "no messages yet".to_owned(),
        1 => "1 message".to_owned(),
        n => format!("{n} messages"),
    };
    let (first, last) = (local_time(e.first_ms, tz), local_time(e.last_ms, tz));
    let when = if first == last { first } else { format!("{first} – {last}") };
    let shown = super::who_flagged(e.sender.as_str(), e.name.as_deref(), e.imitates.as_deref());
    let mut plain = format!("{n}. {shown} — {count}, {when}");
    // The number is written out, not left to an <ol>: later pages and gaps
    // (someone decided meanwhile) keep the numbers of the whole list.
    let mut html = format!("<p><b>{n}.</b> <code>{}</code> — {count}, {when}", escape_html(&shown));
    if let Some(s) = &e.subject {
        let s = super::subject_heading(s);
        plain.push_str(&format!("\n  {}", s.plain));
        html.push_str(&format!("<br>{}", s.html));
    }
    let card = super::card_line(&e.card);
    plain.push_str(&format!("\n  {card}"));
    html.push_str(&format!("<br><small>{}</small>", escape_html(&card)));
    if let Some(what) = invite {
        plain.push_str(&format!("\n  {what}"));
        html.push_str(&format!("<br>{}", escape_html(what)));
    }
    if let Some(p) = &e.preview {
        plain.push_str(&format!("\n  “{p}”"));
        html.push_str(&format!("<br><i>“{}”</i>", escape_html(p)));
    }
    if let Some(why) = e.unreadable {
        plain.push_str(&format!("\n  {}", unreadable(why)));
        html.push_str(&format!("<br>{}", unreadable(why)));
    }
    let counted = super::not_kept(e.invites_not_held, e.messages_not_kept);
    if !counted.is_empty() {
        plain.push_str(&format!("\n  {counted}"));
        html.push_str(&format!("<br>{}", escape_html(&counted)));
    }
    if let Some(kind) = e.wave {
        plain.push_str(&format!("\n  {}", wave(kind)));
        html.push_str(&format!("<br>{}", wave(kind)));
    }
    plain.push('\n');
    html.push_str("</p>");
    Text { plain, html }
}

/// A page of `pending`: `items` from [`pending_entry`], page `page` of
/// `pages`, `waiting` people in all.
pub fn pending_page(items: &[Text], page: usize, pages: usize, waiting: usize) -> Text {
    let heading = if pages > 1 {
        format!("Page {page} of {pages}, {} waiting:", people_count(waiting))
    } else {
        format!("{} waiting:", people(waiting))
    };
    let mut plain = format!("{heading}\n");
    let mut html = format!("<p>{}</p>", escape_html(&heading));
    for item in items {
        plain.push_str(&item.plain);
        html.push_str(&item.html);
    }
    plain.push_str("Act on them with `allow 1`, `deny 1`, `block 1`, or `show 1` to read everything.");
    html.push_str("<p>Act on them with <code>allow 1</code>, <code>deny 1</code>, <code>block 1</code>, or <code>show 1</code> to read everything.</p>");
    if page < pages {
        let next = page + 1;
        plain.push_str(&format!(" `pending {next}` shows the next page; the numbers stay the same."));
        html.push_str(&format!("<p><code>pending {next}</code> shows the next page; the numbers stay the same.</p>"));
    }
    Text { plain, html }
}

/// The longest header and footer a `pending` page can have, for paging.
pub fn pending_frame() -> Text {
    pending_page(&[], usize::MAX - 1, usize::MAX, usize::MAX)
}

/// A page beyond the last; `asks_for` is how a page is asked for, before
/// its number (`pending`, `show @x:y.org page`).
pub fn no_such_page(page: usize, pages: usize, asks_for: &str) -> Text {
    let there = if pages == 1 { "There is only 1 page".to_owned() } else { format!("There are {pages} pages") };
    plain(&format!("{there}, so there is no page {page}; `{asks_for} {pages}` shows the last one."))
}

fn people_count(n: usize) -> String {
    if n == 1 { "1 person".into() } else { format!("{n} people") }
}

fn people(n: usize) -> String {
    if n == 1 { "1 person is".into() } else { format!("{n} people are") }
}

pub fn unknown_command(word: &str) -> Text {
    Text {
        plain: format!("I don't know the command \"{word}\". Send `help` for the list."),
        html: format!(
            "<p>I don't know the command \"{}\". Send <code>help</code> for the list.</p>",
            escape_html(word)
        ),
    }
}

// ---- Why a command's arguments were refused (the message of `Command::Invalid`) ----

pub fn takes_no_arguments() -> String {
    "This command takes no arguments.".into()
}

pub fn one_topic_at_a_time() -> String {
    "Ask about one command at a time.".into()
}

pub fn one_sender_at_a_time() -> String {
    "Show one sender at a time; `show 2 page 3` for a later page.".into()
}

pub fn one_page_number() -> String {
    "Give one page number, e.g. `pending 2`.".into()
}

pub fn not_a_page_number(given: &str) -> String {
    format!("`{}` is not a page number (1, 2, …).", one_line(given, 40))
}

pub fn say_who() -> String {
    "Say who: a user ID, *:server or a number from `pending`.".into()
}

pub fn not_a_list_number(given: &str) -> String {
    format!("`{given}` is not a number from the list.")
}

pub fn not_a_server_pattern(given: &str) -> String {
    format!("`{given}` is not a server pattern like *:example.org")
}

pub fn not_a_user_id(given: &str) -> String {
    format!("`{given}` is not a valid user ID")
}

pub fn not_a_target(given: &str) -> String {
    format!("`{given}` is neither a user ID (@name:server), a server (*:server) nor a number from the list")
}

pub fn for_takes_one_duration() -> String {
    "`for` takes one duration, e.g. `for 30d`.".into()
}

pub fn pause_takes_one_duration() -> String {
    "Pause takes one duration, e.g. `pause 2h`.".into()
}

pub fn code_is_the_number() -> String {
    "The code is the number in the e-mail I sent.".into()
}

pub fn unknown_reply_subcommand() -> String {
    "Unknown reply subcommand.".into()
}

pub fn needs_a_value(key: &str) -> String {
    format!("`set {key}` needs a value.")
}

pub fn no_such_setting(key: &str) -> String {
    format!("There is no setting `{key}`.")
}

pub fn reply_too_long(max_chars: usize) -> String {
    format!("The reply is limited to {max_chars} characters.")
}

pub fn not_an_email(given: &str) -> String {
    format!("`{given}` is not an e-mail address like name@example.org")
}

pub fn not_a_time_zone(given: &str) -> String {
    format!("`{given}` is not an IANA time zone like Europe/Berlin or America/New_York.")
}

pub fn not_a_clock_time(given: &str) -> String {
    format!("`{given}` is not a time like 08:00 (24-hour clock).")
}

pub fn not_a_notify_mode(given: &str) -> String {
    format!("`{given}` is not one of quiet, sound, off.")
}

pub fn empty_digest_is_on_or_off() -> String {
    "Use `set empty-digest on` or `off`.".into()
}

pub fn retention_too_short() -> String {
    "Keep messages at least a day (1d).".into()
}

pub fn retention_too_long() -> String {
    "Messages are kept a year at most (365d).".into()
}

// ---- Answers ----

/// A `<target>` number beyond the list the owner saw last.
pub fn no_such_number(n: usize) -> Text {
    plain(&format!("There is no number {n} in your last list; send `pending` to see the current one."))
}

/// What `pending` says about one held message.
pub fn pending_preview(m: &Deferred) -> String {
    if m.encrypted {
        "(an encrypted message)".to_owned()
    } else if let Some(media) = &m.media {
        format!("(sent {})", super::subject_line(&one_line(&media.name, 60)))
    } else {
        super::subject_line(&one_line(&m.body, 80))
    }
}

/// What `pending` says about a held room Gatekeeper gave up reading (no
/// user text: safe in HTML as it is).
pub fn unreadable(why: Unreadable) -> &'static str {
    match why {
        Unreadable::NoAnswer => "could not be read: their server does not answer",
        Unreadable::Refused => "could not be read: their server refused to let you in",
        Unreadable::NotSilenced => "could not be read: it could not be silenced, so it was not joined",
    }
}

/// What `pending` says about a wave sender (no user text: safe in HTML).
pub fn wave(kind: WaveKind) -> &'static str {
    match kind {
        WaveKind::Server => "part of a wave from their server: no automatic reply",
        WaveKind::Sender => "invited several people at once: no automatic reply",
    }
}

/// What `pending` says about an invitation to a group room.
pub fn group_invite(held: &HeldRoom) -> String {
    let name = held.name.as_deref().map(|n| super::defang(&one_line(n, 60))).unwrap_or_else(|| "a room".to_owned());
    let size = held.members.map(|n| format!(" ({n} members)")).unwrap_or_default();
    let reason = held.reason.as_ref().map(|r| format!(": “{}”", super::defang(&one_line(r, 80)))).unwrap_or_default();
    format!("invited you to {name}{size}{reason}")
}

/// The most one message may cost on a `show` page (plain and HTML,
/// JSON-escaped): longer ones are trimmed with a note, so that a page holds
/// at least three whatever the bodies are.
pub const SHOW_MESSAGE_BUDGET: usize = 12_000;

/// One message in `show`, trimmed to [`SHOW_MESSAGE_BUDGET`].
pub fn show_item(m: &Deferred) -> Text {
    let (what, cut) = if m.encrypted {
        (UNREADABLE.to_owned(), 0)
    } else if let Some(media) = &m.media {
        let (name, url) = (super::defang(&one_line(&media.name, 200)), super::defang(&one_line(&media.url, 300)));
        (format!("(sent {name}: {url})"), 0)
    } else {
        // Links made dead before the budget is counted: what is shown fits.
        super::trim_to_cost(&super::defang(&super::visible(&m.body)), SHOW_MESSAGE_BUDGET)
    };
    let edited = if m.edited { " (edited)" } else { "" };
    let mut note = if cut > 0 { format!(" … ({cut} more characters not shown)") } else { String::new() };
    if let Some(by) = &m.redacted_by {
        note.push_str(&format!(" (removed from the room by {by}, not by its sender)"));
    }
    let line = format!("{}{edited} — {what}{note}", format_time(m.received_ms));
    Text { plain: format!("• {line}\n"), html: format!("<li>{}</li>", escape_html(&line).replace('\n', "<br>")) }
}

/// A page of `show`: `items` from [`show_item`], `total` messages from
/// `subject` in all, in the order they came.
pub fn show_page(subject: &Subject, intro: &Text, items: &[Text], page: usize, pages: usize, total: usize) -> Text {
    let messages = if total == 1 { "1 message".to_owned() } else { format!("{total} messages") };
    let heading = if pages > 1 {
        format!("{messages} from {subject}, page {page} of {pages}:")
    } else {
        format!("{messages} from {subject}:")
    };
    let mut plain = format!("{heading}\n{}", intro.plain);
    let mut html = format!("<p>{}</p>{}<ul>", escape_html(&heading), intro.html);
    for item in items {
        plain.push_str(&item.plain);
        html.push_str(&item.html);
    }
    html.push_str("</ul>");
    if page < pages {
        let next = format!("show {subject} page {}", page + 1);
        plain.push_str(&format!("`{next}` shows the next page."));
        html.push_str(&format!("<p><code>{}</code> shows the next page.</p>", escape_html(&next)));
    }
    Text { plain: plain.trim_end().to_owned(), html }
}

/// The longest header and footer a `show` page about `subject` can have.
pub fn show_frame(subject: &Subject, intro: &Text) -> Text {
    show_page(subject, intro, &[], usize::MAX - 1, usize::MAX, usize::MAX)
}

pub fn nothing_waiting_from(subject: &Subject) -> String {
    format!("Nothing from {subject} is waiting.")
}

pub fn cannot_allow_yourself() -> String {
    "You are always allowed to reach yourself.".into()
}

/// `allow` for one subject: until when, and how many held rooms it released.
pub fn allowed(subject: &Subject, until_ms: Option<u64>, released_rooms: usize) -> String {
    let until = until_ms.map(|u| format!(" until {}", format_time(u))).unwrap_or_default();
    let released =
        if released_rooms == 0 { String::new() } else { format!("; released {}", plural(released_rooms, "room")) };
    format!("Allowed {subject}{until}{released}.")
}

pub fn cannot_deny_yourself() -> String {
    "You cannot block or deny yourself.".into()
}

fn left_and_dropped(rooms: usize, messages: usize) -> String {
    format!("left {} and dropped {}", plural(rooms, "room"), plural(messages, "message"))
}

pub fn denied(subject: &Subject, rooms: usize, messages: usize) -> String {
    format!("Denied {subject}: {}. Next time they are a new contact again.", left_and_dropped(rooms, messages))
}

pub fn blocked(subject: &Subject, rooms: usize, messages: usize) -> String {
    format!("Blocked {subject}: {}. Their invites will be declined without a reply.", left_and_dropped(rooms, messages))
}

pub fn unblocked(subject: &Subject) -> String {
    format!("Unblocked {subject}: they are a new contact again.")
}

pub fn was_not_blocked(subject: &Subject) -> String {
    format!("{subject} was not blocked.")
}

/// Entries listed by `allowed` and `blocked`; the rest are counted.
const LIST_LIMIT: usize = 100;

/// `allowed` (or, with `allowed` false, `blocked`): the owner's entries of
/// that kind with when and why, and whether a temporary allow has ended.
pub fn contacts<'a>(
    contacts: impl IntoIterator<Item = (&'a Subject, &'a Contact)>,
    allowed: bool,
    now_ms: u64,
    client_mode: bool,
) -> Text {
    let mut items: Vec<String> = contacts
        .into_iter()
        .filter_map(|(subject, c)| match (c, allowed) {
            (Contact::Allowed { since_ms, source, until_ms }, true) => {
                let how = match source {
                    AllowSource::Imported => "an existing chat",
                    AllowSource::OwnerStarted => "you wrote first",
                    AllowSource::Command => "allowed by you",
                };
                let until = match until_ms {
                    Some(u) if *u <= now_ms => " — expired".to_owned(),
                    Some(u) => format!(" — until {}", format_time(*u)),
                    None => String::new(),
                };
                Some(format!("{subject} — since {} ({how}){until}", format_time(*since_ms)))
            }
            (Contact::Blocked { since_ms }, false) => Some(format!("{subject} — since {}", format_time(*since_ms))),
            _ => None,
        })
        .collect();
    let what = if allowed { "allowed" } else { "blocked" };
    if items.is_empty() {
        return plain(&format!("Nobody is {what}."));
    }
    let total = items.len();
    let entries = if total == 1 { "1 entry".to_owned() } else { format!("{total} entries") };
    let intro = format!("{entries} {what}:");
    // At most LIST_LIMIT, and only as many as fit one event with the
    // "… and N more" line (255-character IDs make 100 too many).
    let frame = list(&intro, &[format!("… and {total} more")]);
    let mut meter = crate::limits::Meter::new(client_mode, &[(&frame.plain, &frame.html)]);
    let shown = items
        .iter()
        .take(LIST_LIMIT)
        .take_while(|i| {
            let html = escape_html(i);
            meter.take(crate::limits::Meter::cost(i, &html) + crate::limits::escaped_len("• \n<li></li>"))
        })
        .count();
    items.truncate(shown);
    if total > shown {
        items.push(format!("… and {} more", total - shown));
    }
    list(&intro, &items)
}

/// `settings`. The two durations are the owner's or, unset, the deployment's.
pub fn settings(o: &OwnerState, reply_interval_ms: u64, retention_ms: u64, now_ms: u64) -> Text {
    let minute = o.digest_minute.unwrap_or(crate::schedule::DEFAULT_MINUTE);
    let items = vec![
        format!(
            "reply: {}",
            if o.reply_template.is_some() { "your own text (see `reply`)" } else { "the default (see `reply`)" }
        ),
        format!("reply-interval: {}", format_duration(reply_interval_ms)),
        format!("email (digests, never shown): {}", o.email.as_deref().unwrap_or("off")),
        format!("contact (shown in your reply): {}", o.contact.as_deref().unwrap_or("off")),
        match &o.email_unconfirmed {
            Some(a) => format!(
                "an earlier address, {a}, was never confirmed, so it is neither mailed nor shown: `set email {a}` confirms it for digests, `set contact {a}` shows it in your reply"
            ),
            None => String::new(),
        },
        format!("timezone: {}", o.timezone.as_deref().unwrap_or("UTC")),
        format!("digest-time: {:02}:{:02}", minute / 60, minute % 60),
        format!("retention: {}", format_duration(retention_ms)),
        format!("notify: {}", o.notify.unwrap_or(Notify::Quiet).as_str()),
        format!("empty-digest: {}", if o.digest_when_empty { "on" } else { "off" }),
        super::urgent_setting(
            o.urgent,
            o.urgent_per_sender_ms.unwrap_or(crate::urgent::DEFAULT_PER_SENDER_MS),
            o.urgent_per_day.unwrap_or(crate::urgent::DEFAULT_PER_DAY),
        ),
        match o.paused_until_ms {
            Some(u) if u == u64::MAX => "paused: until you send `resume`".to_owned(),
            Some(u) if u > now_ms => format!("paused: until {}", format_time(u)),
            _ => "paused: no".to_owned(),
        },
    ];
    let items: Vec<String> = items.into_iter().filter(|i| !i.is_empty()).collect();
    list("Your settings (change one with `set <key> <value>`):", &items)
}

pub fn reply_interval_set(ms: u64) -> Text {
    plain(&format!("New contacts get the automatic reply at most once every {}.", format_duration(ms)))
}

/// `set email` where e-mail is set up: the address must prove itself first.
/// `set email` too soon after the last code: when it may be asked again.
pub fn code_wait(from_ms: u64) -> Text {
    plain(&format!(
        "A code was mailed a short while ago; use that one with `verify <code>`, or ask for a new one after {}.",
        format_time(from_ms)
    ))
}

pub fn code_sent(address: &str) -> Text {
    plain(&format!(
        "I sent a code to {address}. Answer with `verify <code>` within an hour; until then nothing else is e-mailed there."
    ))
}

/// `set email` where e-mail is not set up: the address only goes into the reply.
/// `set email` where e-mail is not set up: nothing could confirm it.
pub fn no_mail_here() -> Text {
    plain(
        "E-mail is not set up on this server, so digests stay here and no address is kept. To show strangers an address in your automatic reply, use `set contact <address>`.",
    )
}

pub fn email_removed() -> Text {
    plain("Your digest address is removed: no more e-mailed digests.")
}

/// `set contact`: what strangers are shown from now on.
pub fn contact_set(contact: Option<&str>) -> Text {
    match contact {
        Some(c) => plain(&format!(
            "Strangers now see “{c}” in your automatic reply, as a way to reach you (`reply` shows it; `set contact off` removes it)."
        )),
        None => plain("Your automatic reply no longer shows a way to reach you."),
    }
}

pub fn contact_too_long(max: usize) -> String {
    format!("A contact is one line of at most {max} characters: an address, or a few words.")
}

pub fn time_zone_set(zone: &str) -> Text {
    plain(&format!("Your time zone is now {zone}."))
}

pub fn digest_time_set(minute: u16) -> Text {
    plain(&format!("Your digest time is now {:02}:{:02}.", minute / 60, minute % 60))
}

pub fn notify_set(mode: Notify) -> Text {
    plain(match mode {
        Notify::Quiet => "Digests and my answers now notify you quietly (no sound).",
        Notify::Sound => "Digests and my answers now notify you like any direct message.",
        Notify::Off => "Digests and my answers no longer notify you; they wait here.",
    })
}

pub fn empty_digest_set(on: bool) -> Text {
    plain(if on {
        "On days with nothing new, the digest says so in one line."
    } else {
        "On days with nothing new, there is no digest."
    })
}

pub fn retention_set(ms: u64) -> Text {
    plain(&format!("Messages you have not decided about are kept for {}.", format_duration(ms)))
}

pub fn no_code_waiting() -> Text {
    plain("There is no address waiting for a code; use `set email <address>`.")
}

pub fn code_expired() -> Text {
    plain("That code has expired; send `set email <address>` again for a new one.")
}

pub fn code_does_not_match(tries_left: u32) -> Text {
    plain(&format!("That code does not match ({tries_left} tries left)."))
}

pub fn email_verified(address: &str) -> Text {
    plain(&format!("Verified: your digests will also be e-mailed to {address}."))
}

/// `pause <duration>`: `until_ms` is when holding starts again.
pub fn paused_until(until_ms: u64) -> Text {
    plain(&format!(
        "Paused until {}: invites ring as they used to. Send `resume` to hold again sooner.",
        format_time(until_ms)
    ))
}

pub fn paused_until_resumed() -> Text {
    plain("Paused: invites ring as they used to until you send `resume`.")
}

pub fn not_paused() -> Text {
    plain("Gatekeeper is not paused.")
}

pub fn holding_again() -> Text {
    plain("Holding again: new contacts' invites wait for you.")
}

/// A timed pause ended by itself.
pub fn pause_over() -> Text {
    plain("Your pause is over: holding again.")
}
