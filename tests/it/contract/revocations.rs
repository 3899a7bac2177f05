//! What every [`RevocationStore`] promises: a revoked token is revoked until it expires,
//! revoking twice says so, an expired token takes no room, a purge forgets only what expired,
//! a full list refuses and keeps what it holds, concurrent logouts of one token succeed once,
//! and a failure changes nothing.
//!
//! Times are far from the verification leeway (an hour and more), so these hold whatever it is.

use backflow::auth::{Revocation, RevocationStore, RevokeError, RevokedToken};
use backflow::clock;
use futures_util::future::join_all;

use super::Backend;

contract!(every backend:
    a_revoked_token_is_revoked_until_it_expires,
    revoking_twice_says_already_revoked,
    an_expired_token_is_not_kept,
    a_purge_forgets_only_expired_entries,
    a_full_list_refuses_and_keeps_its_entries,
    concurrent_revocations_of_one_token_succeed_once,
);
contract!(embedded, redis: a_failed_change_changes_nothing);

/// An hour, in the seconds tokens are dated in.
const HOUR: u64 = 3600;

fn token(exp: u64) -> RevokedToken {
    RevokedToken {
        jti: uuid::Uuid::new_v4(),
        exp,
    }
}

async fn revoked(list: &dyn RevocationStore, token: RevokedToken, at: u64) -> bool {
    list.is_revoked(token.jti, at).await.expect("checked")
}

async fn a_revoked_token_is_revoked_until_it_expires(backend: Backend) {
    let subject = backend.open(&[]).await;
    let list = &*subject.stores.revocations;
    let now = clock::unix_seconds();
    let (logged_out, other) = (token(now + HOUR), token(now + HOUR));
    assert_eq!(list.revoke(logged_out, now).await, Ok(Revocation::Revoked));
    assert!(revoked(list, logged_out, now).await);
    assert!(!revoked(list, other, now).await, "only the token revoked");
    assert_eq!(list.len(), 1);
    assert!(
        !revoked(list, logged_out, logged_out.exp + HOUR).await,
        "expired, it is refused by verification and no longer revoked"
    );
}

async fn revoking_twice_says_already_revoked(backend: Backend) {
    let subject = backend.open(&[]).await;
    let list = &*subject.stores.revocations;
    let now = clock::unix_seconds();
    let t = token(now + HOUR);
    assert_eq!(list.revoke(t, now).await, Ok(Revocation::Revoked));
    assert_eq!(list.revoke(t, now).await, Ok(Revocation::AlreadyRevoked));
    assert_eq!(list.len(), 1);
}

async fn an_expired_token_is_not_kept(backend: Backend) {
    let subject = backend.open(&[("REVOCATION_LIST_MAX", "1")]).await;
    let list = &*subject.stores.revocations;
    let now = clock::unix_seconds();
    let expired = token(now - HOUR);
    assert_eq!(list.revoke(expired, now).await, Ok(Revocation::Revoked));
    assert!(!revoked(list, expired, now).await);
    assert_eq!(list.len(), 0);
    let live = token(now + HOUR);
    assert_eq!(
        list.revoke(live, now).await,
        Ok(Revocation::Revoked),
        "the expired token took no room"
    );
}

async fn a_purge_forgets_only_expired_entries(backend: Backend) {
    let subject = backend.open(&[]).await;
    let list = &*subject.stores.revocations;
    let now = clock::unix_seconds();
    let (short, long) = (token(now + 60), token(now + 10 * HOUR));
    for t in [short, long] {
        list.revoke(t, now).await.expect("room");
    }
    assert_eq!(list.purge_expired(now).await, Ok(0), "nothing expired yet");
    assert_eq!(list.len(), 2);
    let later = short.exp + HOUR;
    assert_eq!(list.purge_expired(later).await, Ok(1));
    assert_eq!(list.len(), 1);
    assert!(revoked(list, long, later).await);
    assert!(
        !revoked(list, short, now).await,
        "forgotten, not merely expired"
    );
}

async fn a_full_list_refuses_and_keeps_its_entries(backend: Backend) {
    let subject = backend.open(&[("REVOCATION_LIST_MAX", "2")]).await;
    let list = &*subject.stores.revocations;
    let now = clock::unix_seconds();
    let held = [token(now + 60), token(now + 60)];
    for t in held {
        assert_eq!(list.revoke(t, now).await, Ok(Revocation::Revoked));
    }
    let refused = token(now + 10 * HOUR);
    assert_eq!(
        list.revoke(refused, now).await,
        Err(RevokeError::Full { capacity: 2 })
    );
    assert_eq!(
        list.revoke(held[0], now).await,
        Ok(Revocation::AlreadyRevoked),
        "a repeated logout is still recognised when full"
    );
    for t in held {
        assert!(revoked(list, t, now).await, "nothing held is forgotten");
    }
    assert!(
        !revoked(list, refused, now).await,
        "the refusal revoked nothing"
    );
    assert_eq!((list.len(), list.capacity()), (2, 2));

    let later = held[0].exp + HOUR;
    assert_eq!(list.purge_expired(later).await, Ok(2));
    assert_eq!(
        list.revoke(refused, later).await,
        Ok(Revocation::Revoked),
        "room again once the held entries expired"
    );
}

async fn concurrent_revocations_of_one_token_succeed_once(backend: Backend) {
    const LOGOUTS: usize = 16;
    let subject = backend.open(&[]).await;
    let now = clock::unix_seconds();
    let shared = token(now + HOUR);
    let logouts = (0..LOGOUTS).map(|_| {
        let list = subject.stores.revocations.clone();
        tokio::spawn(async move {
            let own = token(now + HOUR);
            let outcomes = (
                list.revoke(shared, now).await.expect("room"),
                list.revoke(own, now).await.expect("room"),
            );
            assert!(list.is_revoked(own.jti, now).await.expect("checked"));
            outcomes
        })
    });
    let outcomes: Vec<(Revocation, Revocation)> = join_all(logouts)
        .await
        .into_iter()
        .map(|logout| logout.expect("a logout ends without panicking"))
        .collect();
    let winners = outcomes
        .iter()
        .filter(|(shared, _)| *shared == Revocation::Revoked)
        .count();
    assert_eq!(winners, 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|(_, own)| *own == Revocation::Revoked));
    let list = &*subject.stores.revocations;
    assert!(revoked(list, shared, now).await);
    // A networked list's length is the size it saw last: the purge (of nothing) refreshes it.
    list.purge_expired(now).await.expect("purged");
    assert_eq!(list.len(), LOGOUTS + 1);
}

async fn a_failed_change_changes_nothing(backend: Backend) {
    let mut subject = backend.open(&[]).await;
    let now = clock::unix_seconds();
    let (kept, expiring) = (token(now + 10 * HOUR), token(now + 60));
    for t in [kept, expiring] {
        let list = &*subject.stores.revocations;
        list.revoke(t, now).await.expect("room");
    }

    subject.fail();
    let list = &*subject.stores.revocations;
    let refused = token(now + HOUR);
    assert!(matches!(
        list.revoke(refused, now).await,
        Err(RevokeError::Store(_))
    ));
    let later = expiring.exp + HOUR;
    assert!(list.purge_expired(later).await.is_err());

    subject.recover().await;
    let list = &*subject.stores.revocations;
    assert!(revoked(list, kept, now).await);
    assert!(revoked(list, expiring, now).await);
    assert!(
        !revoked(list, refused, now).await,
        "the refused logout revoked nothing"
    );
    assert_eq!(list.len(), 2);
    assert_eq!(
        list.purge_expired(later).await,
        Ok(1),
        "the failed purge forgot nothing: this one finds the expired entry"
    );
}
