//! The words Gatekeeper says, in plain text and in HTML. Any text that came
//! from a user goes through [`escape_html`] before it reaches HTML.

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

/// A display name made safe to show: no control or bidirectional-override
/// characters, whitespace collapsed, at most 40 characters. Empty when
/// nothing is left.
pub fn clean_name(name: &str) -> String {
    let kept: String = name
        .chars()
        .filter(|c| !c.is_control() && !matches!(*c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'))
        .collect();
    one_line(&kept, 40)
}

/// Who someone is: the user ID always, their display name never alone
/// (anyone can call themselves "Alice" or "@alice:example.org").
pub fn who(user: &str, name: Option<&str>) -> String {
    // A name that only repeats the user ID (or its local part) adds nothing.
    let localpart = user.trim_start_matches('@').split(':').next().unwrap_or_default();
    match name.map(clean_name).filter(|n| !n.is_empty() && n != user && !n.eq_ignore_ascii_case(localpart)) {
        Some(n) => format!("{user} (“{n}”)"),
        None => user.to_owned(),
    }
}

pub fn greeting() -> Text {
    Text {
        plain: "Hello! I'm your Gatekeeper, and this chat is where you talk to me.\n\n\
                From now on, when someone you have not talked to before sends you an invite or a message, \
                I keep it quietly for you instead of letting it interrupt you. They get one friendly note \
                explaining that you read messages from new contacts in a daily summary, and you get that \
                summary here. People you already have direct chats with are unaffected.\n\n\
                Send `pending` to see who is waiting, `help` for everything else, and `stop` (or leave this room) \
                to switch me off."
            .into(),
        html: "<p>Hello! I'm your Gatekeeper, and this chat is where you talk to me.</p>\
               <p>From now on, when someone you have not talked to before sends you an invite or a message, \
               I keep it quietly for you instead of letting it interrupt you. They get one friendly note \
               explaining that you read messages from new contacts in a daily summary, and you get that \
               summary here. People you already have direct chats with are unaffected.</p>\
               <p>Send <code>pending</code> to see who is waiting, <code>help</code> for everything else, and \
               <code>stop</code> (or leave this room) to switch me off.</p>"
            .into(),
    }
}

pub fn moved_control_room() -> Text {
    Text {
        plain: "You opened a new chat with me, so I'll talk to you there from now on. Goodbye from this one!".into(),
        html: "<p>You opened a new chat with me, so I'll talk to you there from now on. Goodbye from this one!</p>"
            .into(),
    }
}

pub fn refusal(server_name: &str) -> Text {
    let server = escape_html(server_name);
    Text {
        plain: format!(
            "Hello! I'm a Gatekeeper bot, and I can only look after accounts that the administrators \
             of {server_name} have enabled for me. Yours isn't one of them, so I'll leave this chat now. \
             Nothing was changed on your account."
        ),
        html: format!(
            "<p>Hello! I'm a Gatekeeper bot, and I can only look after accounts that the administrators \
             of {server} have enabled for me. Yours isn't one of them, so I'll leave this chat now. \
             Nothing was changed on your account.</p>"
        ),
    }
}

pub const NOT_A_DM_REASON: &str =
    "Gatekeeper only works in a direct chat with you: start a direct message with me instead.";

pub fn help(topic: Option<&str>) -> Text {
    use super::command::*;
    let all: [(&str, &str, &str); 16] = [
        ("pending", USAGE_PENDING, "who is waiting, numbered, with how many messages and since when"),
        ("digest", USAGE_DIGEST, "the digest of everything new, now; the daily one still comes as planned"),
        ("show", USAGE_SHOW, "every held message from one sender"),
        ("allow", USAGE_ALLOW, "let them reach you directly and release what they sent; `for 30d` makes it temporary"),
        ("deny", USAGE_DENY, "not this time: leave their rooms quietly and drop what they sent"),
        ("block", USAGE_BLOCK, "decline their invites now and in future, without a reply"),
        ("unblock", USAGE_UNBLOCK, "undo a block"),
        ("allowed", USAGE_ALLOWED, "who may reach you directly"),
        ("blocked", USAGE_BLOCKED, "who is blocked"),
        ("reply", USAGE_REPLY, "see or change the automatic reply new contacts get"),
        ("settings", USAGE_SETTINGS, "your settings"),
        ("set", USAGE_SET, "change a setting"),
        ("pause", USAGE_PAUSE, "stop holding for a while: invites ring again"),
        ("resume", USAGE_RESUME, "hold again after a pause"),
        ("stop", USAGE_STOP, "switch Gatekeeper off and undo everything it changed"),
        ("help", USAGE_HELP, "this overview, or details about one command"),
    ];
    match topic {
        None => {
            let mut plain = String::from(
                "Gatekeeper commands (type them here; the `!gk` prefix is optional). \
                 <target> is a user ID, *:server for everyone on a server, or a number from `pending`:\n",
            );
            let mut html = String::from(
                "<p>Gatekeeper commands (type them here; the <code>!gk</code> prefix is optional). \
                 <code>&lt;target&gt;</code> is a user ID, <code>*:server</code> for everyone on a server, \
                 or a number from <code>pending</code>:</p><ul>",
            );
            for (_, usage, what) in all {
                plain.push_str(&format!("• {usage} — {what}\n"));
                html.push_str(&format!("<li><code>{}</code> — {}</li>", escape_html(usage), escape_html(what)));
            }
            html.push_str("</ul>");
            Text { plain: plain.trim_end().to_owned(), html }
        }
        Some(name) => match all.iter().find(|(n, _, _)| *n == name) {
            Some((_, usage, what)) => Text {
                plain: format!("{usage} — {what}."),
                html: format!("<p><code>{}</code> — {}.</p>", escape_html(usage), escape_html(what)),
            },
            None => unknown_command(name),
        },
    }
}

/// A one-line refusal of a command's arguments, with its usage.
pub fn invalid(message: &str, usage: &str) -> Text {
    Text {
        plain: format!("{message} Usage: {usage}"),
        html: format!("<p>{} Usage: <code>{}</code></p>", escape_html(message), escape_html(usage)),
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

/// Durations read back the way the commands accept them.
pub use gatekeeper_common::duration::format as format_duration;

pub fn verification_email(code: &str) -> Text {
    Text {
        plain: format!(
            "Your Gatekeeper verification code is {code}.\n\nType `verify {code}` in your Gatekeeper chat on Matrix \
             within an hour, and your daily digests will also be e-mailed here.\n\nIf you did not ask for this, \
             ignore this message: nothing will be sent to this address."
        ),
        html: email_document(&format!(
            "<p>Your Gatekeeper verification code is <b>{code}</b>.</p><p>Type <code>verify {code}</code> in your \
             Gatekeeper chat on Matrix within an hour, and your daily digests will also be e-mailed here.</p>\
             <p>If you did not ask for this, ignore this message: nothing will be sent to this address.</p>"
        )),
    }
}

/// A whole, plain HTML document around a body of Gatekeeper's own markup.
pub fn email_document(body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Gatekeeper</title></head>\
         <body style=\"font-family: sans-serif; max-width: 40em; line-height: 1.5\">{body}</body></html>"
    )
}

pub fn you_are_allowed(name: &str) -> Text {
    plain(&format!("Good news: {name} has added you to their contacts, so your messages now reach them directly."))
}

/// The default etiquette reply. `{name}` is the owner, `{email_sentence}`
/// becomes a sentence with the owner's address, or nothing.
pub const DEFAULT_REPLY: &str = "Hi, and thank you for your message! It has been kept, and {name} will read it. \
{name} reads first messages from new contacts once a day, in a summary, rather than as instant messages: \
a chat message asks for attention right now in a way a short email doesn't. You may hear back after that.{email_sentence}\n\n\
(An automatic note from {name}'s Gatekeeper, sent once.)";

/// Renders the etiquette reply from the owner's template (or the default).
/// Only the owner's own text reaches it, and it is escaped for HTML.
pub fn etiquette(template: Option<&str>, name: &str, email: Option<&str>, encrypted: bool) -> Text {
    let email_sentence = email.map(|e| format!(" If it can't wait, you can also write to {e}.")).unwrap_or_default();
    let mut plain = template
        .unwrap_or(DEFAULT_REPLY)
        .replace("{email_sentence}", &email_sentence)
        .replace("{email}", email.unwrap_or(""))
        .replace("{name}", name);
    if encrypted {
        plain.push_str(
            "\n\n(Your message was end-to-end encrypted, so this note could not include it; that you wrote is noted.)",
        );
    }
    let html = plain
        .split("\n\n")
        .map(|para| format!("<p>{}</p>", escape_html(para).replace('\n', "<br>")))
        .collect::<String>();
    Text { plain, html }
}

pub fn reply_preview(rendered: &Text, custom: bool, interval: &str) -> Text {
    let which = if custom { "your own text" } else { "the default" };
    Text {
        plain: format!(
            "New contacts get this note ({which}), at most once every {interval} each:\n\n{}\n\nChange it with `reply set <text>`, or go back with `reply reset`.",
            rendered.plain
        ),
        html: format!(
            "<p>New contacts get this note ({which}), at most once every {interval} each:</p><blockquote>{}</blockquote>\
             <p>Change it with <code>reply set &lt;text&gt;</code>, or go back with <code>reply reset</code>.</p>",
            rendered.html
        ),
    }
}

/// `client_mode`: Gatekeeper runs as the owner's own device, so starting
/// again is a login, not an invitation.
pub fn stopped(client_mode: bool) -> Text {
    let again = if client_mode {
        "To start again, log Gatekeeper's device out and in again (`gatekeeper logout`, then `gatekeeper login`)."
    } else {
        "Invite me to a direct chat again whenever you like."
    };
    let done = "Gatekeeper is off. Rooms I was holding are normal rooms again, and every notification rule and tag I set is gone.";
    Text { plain: format!("{done} {again}"), html: format!("<p>{done} {}</p>", escape_html(again)) }
}

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
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max.saturating_sub(1)).collect::<String>())
    }
}

/// `tz` is the owner's time zone: times read as their clock shows them.
pub fn pending(entries: &[super::state::PendingEntry], invites: &[(String, String)], tz: &jiff::tz::TimeZone) -> Text {
    if entries.is_empty() {
        return Text {
            plain: "Nobody is waiting: no new contacts have written to you.".into(),
            html: "<p>Nobody is waiting: no new contacts have written to you.</p>".into(),
        };
    }
    let mut plain = format!("{} waiting:\n", people(entries.len()));
    let mut html = format!("<p>{} waiting:</p><ol>", people(entries.len()));
    for (n, e) in entries.iter().enumerate() {
        let n = n + 1;
        let count = match e.messages {
            0 => "no messages yet".to_owned(),
            1 => "1 message".to_owned(),
            n => format!("{n} messages"),
        };
        let (first, last) = (super::schedule::local_time(e.first_ms, tz), super::schedule::local_time(e.last_ms, tz));
        let when = if first == last { first } else { format!("{first} – {last}") };
        let invite = invites.iter().find(|(who, _)| who == e.sender.as_str()).map(|(_, what)| what.as_str());
        let shown = who(e.sender.as_str(), e.name.as_deref());
        plain.push_str(&format!("{n}. {shown} — {count}, {when}"));
        html.push_str(&format!("<li><code>{}</code> — {count}, {when}", escape_html(&shown)));
        if let Some(what) = invite {
            plain.push_str(&format!("\n  {what}"));
            html.push_str(&format!("<br>{}", escape_html(what)));
        }
        if let Some(p) = &e.preview {
            plain.push_str(&format!("\n  “{p}”"));
            html.push_str(&format!("<br><i>“{}”</i>", escape_html(p)));
        }
        plain.push('\n');
        html.push_str("</li>");
    }
    html.push_str("</ol>");
    plain.push_str("Act on them with `allow 1`, `deny 1`, `block 1`, or `show 1` to read everything.");
    html.push_str("<p>Act on them with <code>allow 1</code>, <code>deny 1</code>, <code>block 1</code>, or <code>show 1</code> to read everything.</p>");
    Text { plain, html }
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
        let t = etiquette(None, "Alice <3", Some("alice@example.org"), false);
        assert!(t.plain.contains("Alice <3 will read it"));
        assert!(t.plain.contains("alice@example.org"));
        assert!(t.html.contains("Alice &lt;3"));
        assert!(!t.html.contains("<3"));
        let without = etiquette(None, "Alice", None, false);
        assert!(!without.plain.contains("write to"));
        assert!(!without.plain.contains('{'));
        let custom = etiquette(Some("Back soon. — {name}\n\n<b>bye</b> {email}"), "Al", None, true);
        assert!(custom.plain.starts_with("Back soon. — Al"));
        assert!(custom.html.contains("&lt;b&gt;bye&lt;/b&gt;"));
        assert!(custom.plain.contains("encrypted"));
    }

    #[test]
    fn default_reply_is_short_and_never_scolds() {
        let t = etiquette(None, "Alice", None, false);
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
