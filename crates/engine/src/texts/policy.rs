//! What Gatekeeper says about shared ban lists (policy rooms).

use ruma::{OwnedRoomId, RoomId};

use super::{Text, escape_html, list, plain, plural};

/// Whose account joins a list, as the answer says it.
fn joiner(client_mode: bool) -> &'static str {
    if client_mode { "your account" } else { "Gatekeeper's bot" }
}

pub fn joining_list(name: &str, client_mode: bool) -> Text {
    plain(&format!("Joining the ban list {name} ({} joins it, to read its rules)…", joiner(client_mode)))
}

pub fn list_followed(name: &str, room: &RoomId, rules: usize, ignored: u32, client_mode: bool) -> Text {
    let more =
        if ignored > 0 { format!(" ({ignored} more not kept: a list keeps at most 10,000)") } else { String::new() };
    plain(&format!(
        "Following the ban list {name} ({room}): {}{more}. {} joined it and applies its changes within a minute. \
         Invitations from accounts it bans are declined without a reply; people you allowed still reach you.",
        plural(rules, "ban rule"),
        capitalised(joiner(client_mode)),
    ))
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

pub fn list_not_followed(name: &str, why: &str) -> Text {
    plain(&format!("Could not follow the ban list {name}: {}", super::one_line(why, 200)))
}

pub fn too_many_lists() -> Text {
    plain(&format!(
        "You follow {} ban lists already, the most there can be; `unsubscribe` one first.",
        crate::policy::MAX_LISTS_PER_OWNER
    ))
}

pub fn already_following(name: &str) -> Text {
    plain(&format!("You follow the ban list {name} already; `subscriptions` lists them."))
}

pub fn not_following(name: &str) -> Text {
    plain(&format!("You do not follow a ban list {name}; `subscriptions` lists the ones you do."))
}

pub fn operator_list(name: &str) -> Text {
    plain(&format!("{name} is followed for everyone here by this server's operator; you cannot unsubscribe from it."))
}

pub fn unfollowed(name: &str) -> Text {
    plain(&format!("No longer following the ban list {name}. What it decided stays decided."))
}

pub fn not_a_list(s: &str) -> String {
    format!("{s} is neither a room alias (#list:example.org) nor a room ID (!abc:example.org)")
}

/// One line of `subscriptions`.
pub fn subscription(name: &str, room: &OwnedRoomId, rules: Option<(usize, u32)>, operator: bool) -> String {
    let counted = match rules {
        Some((n, 0)) => plural(n, "ban rule"),
        Some((n, ignored)) => format!("{} ({ignored} more not kept)", plural(n, "ban rule")),
        None => "not read yet".to_owned(),
    };
    let by = if operator { ", followed for everyone by the operator" } else { "" };
    let shown = if name == room.as_str() { name.to_owned() } else { format!("{name} ({room})") };
    format!("{shown}: {counted}{by}")
}

pub fn subscriptions(lines: &[String], ignore: bool) -> Text {
    let mode = if ignore {
        "Invitations from accounts they ban are left unanswered (`set banned decline` declines them)."
    } else {
        "Invitations from accounts they ban are declined without a reason (`set banned ignore` leaves them unanswered)."
    };
    if lines.is_empty() {
        return plain("You follow no ban lists. `subscribe #list:example.org` follows one.");
    }
    let mut text = list("Ban lists you follow:", lines);
    text.plain.push_str(&format!("\n{mode}"));
    text.html.push_str(&format!("<p>{}</p>", escape_html(mode)));
    text
}

/// The digest's line on invitations a ban list declined since the last one.
pub fn banned_in_digest(n: u32, ignore: bool) -> String {
    let done = if ignore { "left unanswered" } else { "declined" };
    if n == 1 {
        format!("1 invitation from an account on your ban lists was {done}; `show banned`.")
    } else {
        format!("{n} invitations from accounts on your ban lists were {done}; `show banned`.")
    }
}

pub fn banned_senders(senders: &[String], total: u32) -> Text {
    if senders.is_empty() {
        return plain("No invitation was declined because of a ban list.");
    }
    list(&format!("Declined because a ban list names them ({total} invitations in all), newest last:"), senders)
}

pub fn banned_sender(user: &str, at: &str) -> String {
    format!("{user}, {at}")
}

pub fn banned_is_decline_or_ignore() -> String {
    "`set banned` takes `decline` or `ignore`".to_owned()
}

pub fn banned_set(ignore: bool) -> Text {
    plain(if ignore {
        "Invitations from accounts on your ban lists are now left unanswered."
    } else {
        "Invitations from accounts on your ban lists are now declined without a reason."
    })
}

pub fn sharing_blocks(room: &str, rules: usize) -> Text {
    plain(&format!(
        "Your blocks are published as a ban list in {room} ({}), kept current as you block and unblock. \
         Anyone may join and read it (public join rule), and follow it: `subscribe {room}` in their Gatekeeper, \
         or Draupnir/Meowlnir. `share blocks off` stops.",
        plural(rules, "rule")
    ))
}

pub fn sharing_started() -> Text {
    plain("Making a ban list of your blocks…")
}

pub fn not_sharing() -> Text {
    plain("Your blocks are not shared. `share blocks` publishes them as a ban list.")
}

pub fn sharing_stopped(room: &str) -> Text {
    plain(&format!("Your blocks are no longer kept current in {room}. The room and what it lists stay as they are."))
}

pub fn share_what() -> String {
    "`share blocks` publishes your blocks; `share blocks off` stops".to_owned()
}
