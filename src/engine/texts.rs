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

pub fn greeting() -> Text {
    Text {
        plain: "Hello! I'm your Gatekeeper, and this chat is where you talk to me.\n\n\
                From now on, when someone you have not talked to before sends you an invite or a message, \
                I keep it quietly for you instead of letting it interrupt you. They get one friendly note \
                explaining that you read messages from new contacts in a daily summary, and you get that \
                summary here. People you already have direct chats with are unaffected.\n\n\
                Send `help` to see what you can tell me. Leave this room at any time to switch me off."
            .into(),
        html: "<p>Hello! I'm your Gatekeeper, and this chat is where you talk to me.</p>\
               <p>From now on, when someone you have not talked to before sends you an invite or a message, \
               I keep it quietly for you instead of letting it interrupt you. They get one friendly note \
               explaining that you read messages from new contacts in a daily summary, and you get that \
               summary here. People you already have direct chats with are unaffected.</p>\
               <p>Send <code>help</code> to see what you can tell me. Leave this room at any time to switch me off.</p>"
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
    match topic {
        None => Text {
            plain: "Gatekeeper commands (type them here; the `!gk` prefix is optional):\n\
                    • help [command] — this overview, or details about one command\n\n\
                    To switch Gatekeeper off, leave this room."
                .into(),
            html: "<p>Gatekeeper commands (type them here; the <code>!gk</code> prefix is optional):</p>\
                   <ul><li><code>help [command]</code> — this overview, or details about one command</li></ul>\
                   <p>To switch Gatekeeper off, leave this room.</p>"
                .into(),
        },
        Some("help") => Text {
            plain: "help [command] — shows the list of commands, or what one command does.".into(),
            html: "<p><code>help [command]</code> — shows the list of commands, or what one command does.</p>".into(),
        },
        Some(other) => unknown_command(other),
    }
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
    fn user_text_is_escaped_in_html() {
        let t = unknown_command("<img src=x onerror=alert(1)>&\"'");
        assert!(!t.html.contains("<img"));
        assert!(
            t.html
                .contains("&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#39;")
        );
        assert!(t.plain.contains("<img"));
    }
}
