//! Control-room commands, parsed once into an enum before anything runs.

/// The prefix other bots use; optional in the control room.
pub const PREFIX: &str = "!gk";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `help [command]`: what Gatekeeper does and which commands exist.
    Help { topic: Option<String> },
    /// Anything else: answered with a one-line error and the usage.
    Unknown { word: String },
}

/// `None` when the text is not addressed to Gatekeeper at all (empty, or
/// only the prefix), so that chatter in the control room is not answered.
pub fn parse(text: &str) -> Option<Command> {
    let mut words = text.split_whitespace().peekable();
    if words.peek().is_some_and(|w| w.eq_ignore_ascii_case(PREFIX)) {
        words.next();
    }
    let first = words.next()?;
    let rest: Vec<&str> = words.collect();
    let cmd = match first.to_ascii_lowercase().as_str() {
        "help" | "?" => match rest.as_slice() {
            [] => Command::Help { topic: None },
            [topic] => Command::Help {
                topic: Some(topic.to_ascii_lowercase()),
            },
            _ => Command::Unknown {
                word: text.trim().to_owned(),
            },
        },
        _ => Command::Unknown {
            word: first.to_owned(),
        },
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
    fn parses_every_form() {
        let help = |t: Option<&str>| {
            Some(Command::Help {
                topic: t.map(str::to_owned),
            })
        };
        let unknown = |w: &str| Some(Command::Unknown { word: w.to_owned() });
        check("help", help(None));
        check("  HELP  ", help(None));
        check("!gk help", help(None));
        check("!GK help", help(None));
        check("?", help(None));
        check("help Pending", help(Some("pending")));
        check("help a b", unknown("help a b"));
        check("frobnicate now", unknown("frobnicate"));
        check("!gk", None);
        check("", None);
        check("   ", None);
    }
}
