//! How many sockets each user has open on this gateway, so that one user
//! (any visitor can get a customer token) cannot hold an unbounded share of
//! its connections. A slot is held for as long as its guard lives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct UserSockets {
    counts: Mutex<HashMap<String, usize>>,
}

/// One open socket of a user; dropping it gives the slot back.
pub struct SocketSlot {
    owner: Arc<UserSockets>,
    user_id: String,
}

impl UserSockets {
    /// A slot for `user_id`, or None when it already has `cap` sockets.
    pub fn take(self: &Arc<Self>, user_id: &str, cap: usize) -> Option<SocketSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(user_id.to_owned()).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(SocketSlot {
            owner: self.clone(),
            user_id: user_id.to_owned(),
        })
    }

    pub fn open(&self, user_id: &str) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(user_id).copied().unwrap_or(0)
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.user_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_at_most_cap_slots_and_they_come_back() {
        let sockets = Arc::new(UserSockets::default());
        let first = sockets.take("u1", 2).expect("first");
        let _second = sockets.take("u1", 2).expect("second");
        assert!(sockets.take("u1", 2).is_none());
        assert!(sockets.take("u2", 2).is_some(), "others have their own");
        drop(first);
        assert_eq!(sockets.open("u1"), 1);
        assert!(sockets.take("u1", 2).is_some());
    }
}
