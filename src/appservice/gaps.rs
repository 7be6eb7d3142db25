//! Noticing a transaction the homeserver stranded (opt-in:
//! `appservice.refuse_transaction_gaps`). Synapse numbers an
//! appservice's transactions 1, 2, 3 … and sends them one at a time, oldest
//! first; a race in its sender can create one while it marks Gatekeeper as
//! down and then never send it while Gatekeeper is up. A jump in the
//! numbers shows it: refusing the next transaction once with a retryable
//! error makes the homeserver start its recoverer, which sends the oldest
//! unsent transaction first, then the refused one again.

/// What to do with a transaction, by its ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Transactions `missing.0 ..= missing.1` have not arrived: refuse this
    /// one, once, so that the homeserver sends them first.
    RefuseGap {
        missing: (u64, u64),
    },
}

/// The numbering seen so far. Non-numeric IDs (other homeservers) are
/// accepted and ignored.
#[derive(Debug, Clone, Default)]
pub struct Gaps {
    highest: Option<u64>,
    refused: Option<u64>,
    /// Off (the default): Synapse numbers the transactions of all its
    /// appservices from one sequence, so beside a bridge, skipped numbers
    /// are normal and refusing them would slow every transaction down.
    on: bool,
}

impl Gaps {
    /// After a restart: the highest number the store accepted.
    pub fn after(highest: Option<u64>) -> Self {
        Gaps { highest, refused: None, on: true }
    }

    /// Accepts everything (`appservice.refuse_transaction_gaps: false`).
    pub fn off() -> Self {
        Gaps::default()
    }

    pub fn check(&mut self, txn_id: &str) -> Verdict {
        if !self.on {
            return Verdict::Accept;
        }
        let (Ok(n), Some(high)) = (txn_id.parse::<u64>(), self.highest) else { return Verdict::Accept };
        if n <= high.saturating_add(1) || self.refused == Some(n) {
            // In order, a retry of an older one, or refused once already:
            // a homeserver that resends it has nothing older to send.
            return Verdict::Accept;
        }
        self.refused = Some(n);
        Verdict::RefuseGap { missing: (high + 1, n - 1) }
    }

    /// The store accepted `txn_id`.
    pub fn accepted(&mut self, txn_id: &str) {
        if let Ok(n) = txn_id.parse::<u64>() {
            self.highest = Some(self.highest.map_or(n, |h| h.max(n)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_is_refused_once_and_the_missing_one_then_accepted() {
        let mut g = Gaps::after(Some(29));
        assert_eq!(g.check("31"), Verdict::RefuseGap { missing: (30, 30) });
        assert_eq!(g.check("30"), Verdict::Accept);
        g.accepted("30");
        assert_eq!(g.check("31"), Verdict::Accept);
        g.accepted("31");
        assert_eq!(g.check("32"), Verdict::Accept);
    }

    #[test]
    fn a_gap_that_stays_is_accepted_on_the_second_try() {
        let mut g = Gaps::after(Some(10));
        assert_eq!(g.check("15"), Verdict::RefuseGap { missing: (11, 14) });
        assert_eq!(g.check("15"), Verdict::Accept, "nothing older came: the homeserver has none to send");
        g.accepted("15");
        assert_eq!(g.check("16"), Verdict::Accept);
    }

    #[test]
    fn off_accepts_every_jump() {
        let mut g = Gaps::off();
        g.accepted("29");
        assert_eq!(g.check("31"), Verdict::Accept);
    }

    #[test]
    fn first_contact_retries_and_other_numberings_are_accepted() {
        let mut fresh = Gaps::after(None);
        assert_eq!(fresh.check("500"), Verdict::Accept, "a new store knows no numbering yet");
        fresh.accepted("500");
        assert_eq!(fresh.check("499"), Verdict::Accept, "an older transaction is a retry");
        assert_eq!(fresh.check("m1702.7"), Verdict::Accept);
        fresh.accepted("m1702.7");
        assert_eq!(fresh.check("502"), Verdict::RefuseGap { missing: (501, 501) });
    }
}
