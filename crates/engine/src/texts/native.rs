//! What Gatekeeper says about the homeserver's own defences: the commands
//! clients discover (MSC4332), reports to the admins, the invite filter.

use super::*;
use crate::Subject;
use crate::native::ReportVia;
use ruma::OwnedUserId;

/// The description of a command's variable in the published commands;
/// `None` for a name no usage should have (a test holds every usage to it).
pub fn variable_description(name: &str) -> Option<&'static str> {
    Some(match name {
        "target" => "A user ID (@someone:example.org), a whole server (*:example.org), or a number from the last list",
        "duration" => "A duration such as 30d, 12h or 1h30m",
        "command" => "The name of a command",
        "page" | "n" => "A page number",
        "text" => "Your text; it may span several lines",
        "value" => "The setting's new value",
        "code" => "The code from the e-mail",
        "reason" => "Why, in a few words",
        "list" => "A ban list: its address (#name:server) or room ID (!id:server)",
        _ => return None,
    })
}

/// A command's help line as a sentence, for clients that list commands.
pub fn command_description(summary: &str) -> String {
    let mut chars = summary.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

pub fn report_needs_a_user() -> String {
    "A report is about one user: give their user ID or their number from `pending`.".into()
}

pub fn reporting(user: &OwnedUserId) -> String {
    format!("Reporting {user} to your homeserver's admins.")
}

pub fn reported(user: &OwnedUserId, via: ReportVia) -> Text {
    plain(&match via {
        ReportVia::User => format!("Reported {user} to your homeserver's admins (a user report)."),
        ReportVia::Event => format!(
            "Reported {user}'s latest message to your homeserver's admins (your homeserver takes no reports of users)."
        ),
        ReportVia::UserAndEvent => format!(
            "Reported {user} to your homeserver's admins (a user report, and one of their latest message, \
             as they are on another server)."
        ),
        ReportVia::Nothing => format!(
            "{user} could not be reported: your homeserver takes no reports of users, and I keep no message of theirs."
        ),
    })
}

pub fn still_in_your_invite_filter(subject: &Subject) -> String {
    format!(
        "{subject} is still blocked by your homeserver's invite filter, where you set it yourself: \
         change it in your app's settings if you want their invites to reach me."
    )
}

pub fn invite_filter_stable() -> Text {
    plain(
        "One of your apps set your homeserver's invite setting (`m.invite_permission_config`). While it is \
         there, your homeserver ignores the list I keep your blocks in (`org.matrix.msc4155.invite_permission_config`), \
         so blocked senders are turned away by me only, not also by the server while I am down. Nothing else changes.",
    )
}

pub fn invite_filter_blocks_all() -> Text {
    plain(
        "Your homeserver's invite filter (set by one of your apps) blocks every invitation. \
         Strangers are then turned away by the server itself and never reach me, so they get no reply \
         and never appear in your digest. Change it in your app's settings if you want me to see them.",
    )
}
