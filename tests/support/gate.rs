//! Steps shared by the gate and decision scenarios.

use std::time::Duration;

use super::{Client, World, eventually};

pub const LONG: Duration = Duration::from_secs(60);
/// Synapse pushes within a fraction of a second; waiting this long for a
/// push that must not come is a generous bound.
pub const SETTLE: Duration = Duration::from_secs(3);

/// Opts `owner` in and waits until the invite-silencing rule is in place.
pub async fn opt_in(w: &World, owner: &Client) -> String {
    let control = owner.create_dm(&w.bot()).await;
    eventually("the greeting", LONG, || {
        let (o, c, bot) = (owner.clone(), control.clone(), w.bot());
        async move { o.notices_from(&c, &bot).await.into_iter().next() }
    })
    .await;
    eventually("the invite-silencing push rule", LONG, || {
        let o = owner.clone();
        async move { o.override_rule_ids().await.contains(&"gk.hold.invites".to_owned()).then_some(()) }
    })
    .await;
    control
}

/// Sends a command in the control room and returns Gatekeeper's answer.
pub async fn ask(w: &World, owner: &Client, control: &str, command: &str) -> String {
    let before = owner.notices_from(control, &w.bot()).await.len();
    owner.send_text(control, command).await;
    eventually(&format!("the answer to {command:?}"), LONG, || {
        let (o, c, bot) = (owner.clone(), control.to_owned(), w.bot());
        async move { o.notices_from(&c, &bot).await.get(before).cloned() }
    })
    .await
}

/// Waits until `client` sees `user`'s membership in `room` become `membership`.
pub async fn wait_membership(client: &Client, room: &str, user: &str, membership: &str) {
    eventually(&format!("{user} to be {membership} in {room}"), LONG, || {
        let (c, r, u) = (client.clone(), room.to_owned(), user.to_owned());
        let want = membership.to_owned();
        async move { (c.membership_of(&r, &u).await.as_deref() == Some(want.as_str())).then_some(()) }
    })
    .await;
}

/// Starts Gatekeeper and waits for its start-up ping to succeed.
pub async fn start(w: &mut World) {
    w.gatekeeper.start(&[]);
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;
}
