//! Control-room commands, parsed once into an enum before anything runs:
//! every argument is validated here, so a command that reaches the engine's
//! handlers is well-formed. The doc comment of each variant is its help.

use std::sync::OnceLock;

use super::subject::Subject;

/// The prefix other bots use; optional in the control room.
pub const PREFIX: &str = "!gk";

/// Someone (or a whole server) a command is about, or a number from the
/// list the owner saw last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Subject(Subject),
    Number(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    Reply(String),
    ReplyInterval(u64),
    Email(Option<String>),
    Timezone(String),
    DigestMinute(u16),
    Retention(u64),
    Notify(super::state::Notify),
    EmptyDigest(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `help [command]`: what Gatekeeper does and which commands exist.
    Help { topic: Option<String> },
    /// `pending`: who is waiting, numbered, with how many messages and since when.
    Pending,
    /// `digest`: the digest of everything new, now (the schedule stays as it is).
    Digest,
    /// `show <target>`: every held message from that sender.
    Show { targets: Vec<Target> },
    /// `allow <target>... [for <duration>]`: let them reach you directly, and release what they sent.
    Allow { targets: Vec<Target>, for_ms: Option<u64> },
    /// `deny <target>...`: not this time: leave their rooms quietly and drop what they sent.
    Deny { targets: Vec<Target> },
    /// `block <target>...`: reject them now and in future, without a reply.
    Block { targets: Vec<Target> },
    /// `unblock <target>...`: undo a block.
    Unblock { targets: Vec<Target> },
    /// `allowed`: who may reach you directly.
    Allowed,
    /// `blocked`: who is blocked.
    Blocked,
    /// `settings`: your settings.
    Settings,
    /// `set <key> <value>`: change a setting.
    Set(Setting),
    /// `verify <code>`: confirm your e-mail address with the code sent to it.
    Verify { code: String },
    /// `reply`: show the automatic reply strangers get, as they would see it.
    ReplyShow,
    /// `reply reset`: go back to the default reply.
    ReplyReset,
    /// `pause [duration]`: stop holding for a while (invites ring again).
    Pause { for_ms: Option<u64> },
    /// `resume`: hold again.
    Resume,
    /// `stop`: switch Gatekeeper off and undo everything it changed.
    Stop,
    /// A known command with arguments it cannot take.
    Invalid { message: String, usage: &'static str },
    /// Anything else: answered with a one-line error and the usage.
    Unknown { word: String },
}

pub const USAGE_HELP: &str = "help [command]";
pub const USAGE_PENDING: &str = "pending";
pub const USAGE_DIGEST: &str = "digest";
pub const USAGE_SHOW: &str = "show <target>";
pub const USAGE_ALLOW: &str = "allow <target>... [for <duration>]";
pub const USAGE_DENY: &str = "deny <target>...";
pub const USAGE_BLOCK: &str = "block <target>...";
pub const USAGE_UNBLOCK: &str = "unblock <target>...";
pub const USAGE_ALLOWED: &str = "allowed";
pub const USAGE_BLOCKED: &str = "blocked";
pub const USAGE_SETTINGS: &str = "settings";
pub const USAGE_SET: &str =
    "set <reply|reply-interval|email|timezone|digest-time|retention|notify|empty-digest> <value>";
pub const USAGE_REPLY: &str = "reply | reply set <text> | reply reset";
pub const USAGE_PAUSE: &str = "pause [duration]";
pub const USAGE_VERIFY: &str = "verify <code>";
pub const USAGE_RESUME: &str = "resume";
pub const USAGE_STOP: &str = "stop";

/// Longest reply template accepted.
pub const MAX_TEMPLATE: usize = 2000;
/// Durations are written the same way in commands and in the config file.
pub use gatekeeper_common::duration::parse as parse_duration;

/// Whether `name` is an IANA time zone (from the bundled database, so the
/// answer does not depend on the host).
pub fn is_time_zone(name: &str) -> bool {
    static DB: OnceLock<jiff::tz::TimeZoneDatabase> = OnceLock::new();
    !name.is_empty() && DB.get_or_init(jiff::tz::TimeZoneDatabase::bundled).get(name).is_ok()
}

/// A plausible e-mail address, and nothing that could break a mail header.
pub fn check_email(s: &str) -> Result<String, String> {
    let bad = || format!("`{s}` is not an e-mail address like name@example.org");
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

fn parse_targets(args: &[&str], usage: &'static str) -> Result<Vec<Target>, Command> {
    if args.is_empty() {
        return Err(Command::Invalid {
            message: "Say who: a user ID, *:server or a number from `pending`.".into(),
            usage,
        });
    }
    args.iter()
        .map(|a| {
            let number = a.strip_prefix('#').unwrap_or(a);
            if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
                return match number.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(Target::Number(n)),
                    _ => Err(Command::Invalid { message: format!("`{a}` is not a number from the list."), usage }),
                };
            }
            a.parse::<Subject>().map(Target::Subject).map_err(|message| Command::Invalid { message, usage })
        })
        .collect()
}

fn parse_set(args: &str) -> Command {
    let invalid = |message: String| Command::Invalid { message, usage: USAGE_SET };
    let (key, value) = match args.split_once(char::is_whitespace) {
        Some((k, v)) => (k.to_ascii_lowercase(), v.trim()),
        None => (args.to_ascii_lowercase(), ""),
    };
    if value.is_empty() {
        return invalid(format!("`set {key}` needs a value."));
    }
    let setting = match key.as_str() {
        "reply" if value.chars().count() > MAX_TEMPLATE => {
            Err(format!("The reply is limited to {MAX_TEMPLATE} characters."))
        }
        "reply" => Ok(Setting::Reply(value.to_owned())),
        "reply-interval" => parse_duration(value).map(Setting::ReplyInterval),
        "email" if value.eq_ignore_ascii_case("off") => Ok(Setting::Email(None)),
        "email" => check_email(value).map(|e| Setting::Email(Some(e))),
        "timezone" if is_time_zone(value) => Ok(Setting::Timezone(value.to_owned())),
        "timezone" => Err(format!("`{value}` is not an IANA time zone like Europe/Berlin or America/New_York.")),
        "digest-time" => parse_clock(value).map(Setting::DigestMinute),
        "notify" => value.parse().map(Setting::Notify),
        "empty-digest" => match value.to_ascii_lowercase().as_str() {
            "on" => Ok(Setting::EmptyDigest(true)),
            "off" => Ok(Setting::EmptyDigest(false)),
            _ => Err("Use `set empty-digest on` or `off`.".into()),
        },
        "retention" => match parse_duration(value) {
            Ok(ms) if ms < 86_400_000 => Err("Keep messages at least a day (1d).".into()),
            Ok(ms) if ms > 365 * 86_400_000 => Err("Messages are kept a year at most (365d).".into()),
            other => other.map(Setting::Retention),
        },
        _ => Err(format!("There is no setting `{key}`.")),
    };
    setting.map(Command::Set).unwrap_or_else(invalid)
}

/// `HH:MM` on a 24-hour clock, as minutes after midnight.
fn parse_clock(s: &str) -> Result<u16, String> {
    let bad = || format!("`{s}` is not a time like 08:00 (24-hour clock).");
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

/// `None` when the text is not addressed to Gatekeeper at all (empty, or
/// only the prefix), so that chatter in the control room is not answered.
pub fn parse(text: &str) -> Option<Command> {
    let trimmed = text.trim();
    let rest = match trimmed.split_once(char::is_whitespace) {
        Some((first, rest)) if first.eq_ignore_ascii_case(PREFIX) => rest.trim_start(),
        None if trimmed.eq_ignore_ascii_case(PREFIX) => return None,
        _ => trimmed,
    };
    let (word, args) = match rest.split_once(char::is_whitespace) {
        Some((w, a)) => (w, a.trim()),
        None => (rest, ""),
    };
    if word.is_empty() {
        return None;
    }
    let words: Vec<&str> = args.split_whitespace().collect();
    let no_args = |cmd: Command, usage: &'static str| {
        if args.is_empty() {
            cmd
        } else {
            Command::Invalid { message: "This command takes no arguments.".into(), usage }
        }
    };
    let targets = |usage, make: fn(Vec<Target>) -> Command| match parse_targets(&words, usage) {
        Ok(t) => make(t),
        Err(e) => e,
    };
    let cmd = match word.to_ascii_lowercase().as_str() {
        "help" | "?" => match words.as_slice() {
            [] => Command::Help { topic: None },
            [topic] => Command::Help { topic: Some(topic.trim_start_matches(PREFIX).to_ascii_lowercase()) },
            _ => Command::Invalid { message: "Ask about one command at a time.".into(), usage: USAGE_HELP },
        },
        "pending" => no_args(Command::Pending, USAGE_PENDING),
        "digest" => no_args(Command::Digest, USAGE_DIGEST),
        "allowed" => no_args(Command::Allowed, USAGE_ALLOWED),
        "blocked" => no_args(Command::Blocked, USAGE_BLOCKED),
        "settings" => no_args(Command::Settings, USAGE_SETTINGS),
        "resume" => no_args(Command::Resume, USAGE_RESUME),
        "stop" => no_args(Command::Stop, USAGE_STOP),
        "show" => match words.as_slice() {
            [_] => targets(USAGE_SHOW, |targets| Command::Show { targets }),
            _ => Command::Invalid { message: "Show one sender at a time.".into(), usage: USAGE_SHOW },
        },
        "deny" => targets(USAGE_DENY, |targets| Command::Deny { targets }),
        "block" => targets(USAGE_BLOCK, |targets| Command::Block { targets }),
        "unblock" => targets(USAGE_UNBLOCK, |targets| Command::Unblock { targets }),
        "allow" => {
            let (who, for_ms) = match words.iter().position(|w| w.eq_ignore_ascii_case("for")) {
                Some(i) => match &words[i + 1..] {
                    [d] => match parse_duration(d) {
                        Ok(ms) => (&words[..i], Some(ms)),
                        Err(message) => return Some(Command::Invalid { message, usage: USAGE_ALLOW }),
                    },
                    _ => {
                        return Some(Command::Invalid {
                            message: "`for` takes one duration, e.g. `for 30d`.".into(),
                            usage: USAGE_ALLOW,
                        });
                    }
                },
                None => (&words[..], None),
            };
            match parse_targets(who, USAGE_ALLOW) {
                Ok(targets) => Command::Allow { targets, for_ms },
                Err(e) => e,
            }
        }
        "pause" => match words.as_slice() {
            [] => Command::Pause { for_ms: None },
            [d] => match parse_duration(d) {
                Ok(ms) => Command::Pause { for_ms: Some(ms) },
                Err(message) => Command::Invalid { message, usage: USAGE_PAUSE },
            },
            _ => Command::Invalid { message: "Pause takes one duration, e.g. `pause 2h`.".into(), usage: USAGE_PAUSE },
        },
        "set" => parse_set(args),
        "verify" => match words.as_slice() {
            [code] if code.len() <= 12 && code.bytes().all(|b| b.is_ascii_digit()) => {
                Command::Verify { code: (*code).to_owned() }
            }
            _ => {
                Command::Invalid { message: "The code is the number in the e-mail I sent.".into(), usage: USAGE_VERIFY }
            }
        },
        "reply" => {
            let (sub, text) = match args.split_once(char::is_whitespace) {
                Some((s, t)) => (s, t.trim()),
                None => (args, ""),
            };
            match (sub.to_ascii_lowercase().as_str(), text) {
                ("", _) => Command::ReplyShow,
                ("reset", "") => Command::ReplyReset,
                ("set", t) => parse_set(&format!("reply {t}")),
                _ => Command::Invalid { message: "Unknown reply subcommand.".into(), usage: USAGE_REPLY },
            }
        }
        _ => Command::Unknown { word: word.to_owned() },
    };
    Some(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<Command>) {
        assert_eq!(parse(text), expected, "parsing {text:?}");
    }

    fn user(s: &str) -> Target {
        Target::Subject(s.parse().unwrap())
    }

    fn invalid(text: &str, usage: &str) {
        match parse(text) {
            Some(Command::Invalid { usage: u, message }) => {
                assert_eq!(u, usage, "{text}");
                assert!(!message.is_empty());
            }
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn parses_every_command() {
        check("help", Some(Command::Help { topic: None }));
        check("  HELP  ", Some(Command::Help { topic: None }));
        check("!gk help", Some(Command::Help { topic: None }));
        check("!GK   help", Some(Command::Help { topic: None }));
        check("?", Some(Command::Help { topic: None }));
        check("help Pending", Some(Command::Help { topic: Some("pending".into()) }));
        check("pending", Some(Command::Pending));
        check("digest", Some(Command::Digest));
        check("allowed", Some(Command::Allowed));
        check("blocked", Some(Command::Blocked));
        check("settings", Some(Command::Settings));
        check("resume", Some(Command::Resume));
        check("stop", Some(Command::Stop));
        check("show 2", Some(Command::Show { targets: vec![Target::Number(2)] }));
        check("show @a:x.org", Some(Command::Show { targets: vec![user("@a:x.org")] }));
        check(
            "allow 1 #3 @x:y.org *:example.org",
            Some(Command::Allow {
                targets: vec![Target::Number(1), Target::Number(3), user("@x:y.org"), user("*:example.org")],
                for_ms: None,
            }),
        );
        check(
            "allow 2 for 30d",
            Some(Command::Allow { targets: vec![Target::Number(2)], for_ms: Some(30 * 86_400_000) }),
        );
        check("deny 1 2", Some(Command::Deny { targets: vec![Target::Number(1), Target::Number(2)] }));
        check("block *:spam.org", Some(Command::Block { targets: vec![user("*:spam.org")] }));
        check("unblock @a:x.org", Some(Command::Unblock { targets: vec![user("@a:x.org")] }));
        check("verify 123456", Some(Command::Verify { code: "123456".into() }));
        check("pause", Some(Command::Pause { for_ms: None }));
        check("pause 2h", Some(Command::Pause { for_ms: Some(7_200_000) }));
        check("reply", Some(Command::ReplyShow));
        check("reply reset", Some(Command::ReplyReset));
        check("reply set Hello {name}!\nSecond", Some(Command::Set(Setting::Reply("Hello {name}!\nSecond".into()))));
        check("set reply Hi", Some(Command::Set(Setting::Reply("Hi".into()))));
        check("set reply-interval 3d", Some(Command::Set(Setting::ReplyInterval(3 * 86_400_000))));
        check("set email a@example.org", Some(Command::Set(Setting::Email(Some("a@example.org".into())))));
        check("set email OFF", Some(Command::Set(Setting::Email(None))));
        check("set timezone Europe/Berlin", Some(Command::Set(Setting::Timezone("Europe/Berlin".into()))));
        check("set digest-time 8:05", Some(Command::Set(Setting::DigestMinute(485))));
        check("set retention 60d", Some(Command::Set(Setting::Retention(60 * 86_400_000))));
        check("set notify sound", Some(Command::Set(Setting::Notify(super::super::state::Notify::Sound))));
        check("frobnicate now", Some(Command::Unknown { word: "frobnicate".into() }));
        check("!gk", None);
        check("", None);
        check("   ", None);
    }

    #[test]
    fn every_bad_argument_is_refused_with_the_usage() {
        invalid("help a b", USAGE_HELP);
        invalid("pending now", USAGE_PENDING);
        invalid("stop it", USAGE_STOP);
        invalid("show", USAGE_SHOW);
        invalid("show 1 2", USAGE_SHOW);
        invalid("allow", USAGE_ALLOW);
        invalid("allow alice", USAGE_ALLOW);
        invalid("allow @alice", USAGE_ALLOW);
        invalid("allow 0", USAGE_ALLOW);
        invalid("allow 99999999999999999999999", USAGE_ALLOW);
        invalid("allow 1 for", USAGE_ALLOW);
        invalid("allow 1 for ever", USAGE_ALLOW);
        invalid("allow 1 for 2d 3d", USAGE_ALLOW);
        invalid("allow for 2d", USAGE_ALLOW);
        invalid("deny *:", USAGE_DENY);
        invalid("block #x", USAGE_BLOCK);
        invalid("unblock", USAGE_UNBLOCK);
        invalid("pause soon", USAGE_PAUSE);
        invalid("verify", USAGE_VERIFY);
        invalid("verify abc", USAGE_VERIFY);
        invalid("pause 1h 2h", USAGE_PAUSE);
        invalid("reply frob", USAGE_REPLY);
        invalid("reply set", USAGE_SET);
        invalid(&format!("reply set {}", "x".repeat(MAX_TEMPLATE + 1)), USAGE_SET);
        invalid("set", USAGE_SET);
        invalid("set colour blue", USAGE_SET);
        invalid("set timezone Mars/Olympus", USAGE_SET);
        invalid("set timezone", USAGE_SET);
        invalid("set digest-time 25:00", USAGE_SET);
        invalid("set digest-time 8", USAGE_SET);
        invalid("set digest-time 08:5", USAGE_SET);
        invalid("set reply-interval 0d", USAGE_SET);
        invalid("set retention 1h", USAGE_SET);
        invalid("set notify loud", USAGE_SET);
        invalid("set empty-digest maybe", USAGE_SET);
        invalid("set retention 400d", USAGE_SET);
        for bad in ["a", "a@b", "@b.org", "a@b.org\r\nBcc: x@y.org", "a b@c.org", "<a@b.org>", "a@b@c.org"] {
            invalid(&format!("set email {bad}"), USAGE_SET);
        }
    }
}
