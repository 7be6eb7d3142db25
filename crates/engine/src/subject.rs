//! Who a decision is about: one user, or every user of a server
//! (`*:example.org`). Contacts and commands use the same string forms.

use std::fmt;
use std::str::FromStr;

use ruma::{OwnedServerName, OwnedUserId, UserId};

use crate::texts;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    User(OwnedUserId),
    Server(OwnedServerName),
}

impl Subject {
    pub fn covers(&self, user: &UserId) -> bool {
        match self {
            Subject::User(u) => u == user,
            Subject::Server(s) => user.server_name() == s,
        }
    }

    /// The `event_match` glob on `sender` that matches this subject.
    pub fn sender_pattern(&self) -> String {
        match self {
            Subject::User(u) => u.to_string(),
            Subject::Server(s) => format!("@*:{s}"),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(u) => write!(f, "{u}"),
            Subject::Server(s) => write!(f, "*:{s}"),
        }
    }
}

impl FromStr for Subject {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(server) = s.strip_prefix("*:") {
            return ruma::ServerName::parse(server).map(Subject::Server).map_err(|_| texts::not_a_server_pattern(s));
        }
        if s.starts_with('@') {
            return OwnedUserId::try_from(s).map(Subject::User).map_err(|_| texts::not_a_user_id(s));
        }
        Err(texts::not_a_target(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_users_and_servers_and_says_what_is_wrong() {
        let alice: Subject = "@alice:example.org".parse().unwrap();
        assert!(alice.covers(ruma::user_id!("@alice:example.org")));
        assert!(!alice.covers(ruma::user_id!("@bob:example.org")));
        let server: Subject = "*:example.org".parse().unwrap();
        assert!(server.covers(ruma::user_id!("@bob:example.org")));
        assert!(!server.covers(ruma::user_id!("@bob:example.org.evil")));
        assert_eq!(server.to_string(), "*:example.org");
        assert_eq!(server.sender_pattern(), "@*:example.org");
        for bad in ["alice", "@alice", "*:", "*:bad server", "#room:x"] {
            assert!(bad.parse::<Subject>().is_err(), "{bad}");
        }
    }
}
