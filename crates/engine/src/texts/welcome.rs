//! Opting in and out: the greeting, the refusal, the farewell.

use super::{Text, escape_html};

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
