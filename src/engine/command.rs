//! Control-room commands, parsed once into an enum before anything runs.
//! The doc comment of each variant is its help text.

/// The prefix other bots use; optional in the control room.
pub const PREFIX: &str = "!gk";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `help [command]`: what Gatekeeper does and which commands exist.
    Help { topic: Option<String> },
    /// `pending`: who is waiting, how many messages, since when.
    Pending,
    /// `reply`: show the automatic reply strangers get, as they would see it.
    ReplyShow,
    /// `reply set <text>`: use your own reply; `{name}` and `{email}` are filled in.
    ReplySet { text: String },
    /// `reply reset`: go back to the default reply.
    ReplyReset,
    /// `stop`: switch Gatekeeper off and undo everything it changed.
    Stop,
    /// A known command with arguments it does not take.
    BadArgs { usage: &'static str },
    /// Anything else: answered with a one-line error and the usage.
    Unknown { word: String },
}

pub const USAGE_HELP: &str = "help [command]";
pub const USAGE_PENDING: &str = "pending";
pub const USAGE_REPLY: &str = "reply | reply set <text> | reply reset";
pub const USAGE_STOP: &str = "stop";

/// Longest reply template accepted: it must fit a notification preview's
/// spirit and a Matrix event with room to spare.
pub const MAX_TEMPLATE: usize = 2000;

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
    let no_args = |cmd: Command, usage| if args.is_empty() { cmd } else { Command::BadArgs { usage } };
    let cmd = match word.to_ascii_lowercase().as_str() {
        "help" | "?" => match args.split_whitespace().collect::<Vec<_>>().as_slice() {
            [] => Command::Help { topic: None },
            [topic] => Command::Help { topic: Some(topic.to_ascii_lowercase()) },
            _ => Command::BadArgs { usage: USAGE_HELP },
        },
        "pending" => no_args(Command::Pending, USAGE_PENDING),
        "stop" => no_args(Command::Stop, USAGE_STOP),
        "reply" => {
            let (sub, text) = match args.split_once(char::is_whitespace) {
                Some((s, t)) => (s, t.trim()),
                None => (args, ""),
            };
            match (sub.to_ascii_lowercase().as_str(), text) {
                ("", _) => Command::ReplyShow,
                ("reset", "") => Command::ReplyReset,
                ("set", t) if !t.is_empty() && t.chars().count() <= MAX_TEMPLATE => {
                    Command::ReplySet { text: t.to_owned() }
                }
                _ => Command::BadArgs { usage: USAGE_REPLY },
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

    #[test]
    fn parses_every_form_and_every_error() {
        let help = |t: Option<&str>| Some(Command::Help { topic: t.map(str::to_owned) });
        let unknown = |w: &str| Some(Command::Unknown { word: w.to_owned() });
        let bad = |usage| Some(Command::BadArgs { usage });
        check("help", help(None));
        check("  HELP  ", help(None));
        check("!gk help", help(None));
        check("!GK   help", help(None));
        check("?", help(None));
        check("help Pending", help(Some("pending")));
        check("help a b", bad(USAGE_HELP));
        check("pending", Some(Command::Pending));
        check("!gk pending", Some(Command::Pending));
        check("pending now", bad(USAGE_PENDING));
        check("stop", Some(Command::Stop));
        check("stop it", bad(USAGE_STOP));
        check("reply", Some(Command::ReplyShow));
        check("reply reset", Some(Command::ReplyReset));
        check("reply reset now", bad(USAGE_REPLY));
        check(
            "reply set Hello {name}!\nSecond line",
            Some(Command::ReplySet { text: "Hello {name}!\nSecond line".into() }),
        );
        check("reply set", bad(USAGE_REPLY));
        check("reply frob", bad(USAGE_REPLY));
        check(&format!("reply set {}", "x".repeat(MAX_TEMPLATE + 1)), bad(USAGE_REPLY));
        check("frobnicate now", unknown("frobnicate"));
        check("!gk", None);
        check("", None);
        check("   ", None);
    }
}
