//! Who may call what: the scopes a token carries and the route groups `PROTECTED_ROUTES` can
//! put behind a bearer token.
//!
//! A user's scopes come from `AUTH_USERS` (`name:secret:enqueue+consume`; none listed means all
//! of them) and travel in the token's `scope` claim, space-separated as in OAuth 2.0 (RFC 6749
//! section 3.3). Both are small bit sets, so checking a scope on a request is one `AND`. This
//! module knows nothing of HTTP: the routes say which group and scope each handler needs.

use std::fmt;

/// One permission a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `POST /enqueue`.
    Enqueue,
    /// Taking work: `/dequeue`, leases, acknowledgements, nacks, extensions, the dead-letter
    /// list, `GET /tasks/{id}`.
    Consume,
    /// The CPU-heavy routes.
    Compute,
}

impl Scope {
    /// Every scope, in the order they are written.
    pub const ALL: [Self; 3] = [Self::Enqueue, Self::Consume, Self::Compute];

    /// The scope's name in `AUTH_USERS` and in the `scope` claim.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enqueue => "enqueue",
            Self::Consume => "consume",
            Self::Compute => "compute",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == name)
    }
}

/// A set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope at all.
    pub const NONE: Self = Self(0);
    /// Every scope: what a user configured without a scope list gets.
    pub const ALL: Self = Self(Scope::Enqueue.bit() | Scope::Consume.bit() | Scope::Compute.bit());

    /// Whether `scope` is in the set.
    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The scopes in both sets.
    #[must_use]
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// The `+`-separated list of `AUTH_USERS` (`enqueue+consume`); `Err` names the first word
    /// that is not a scope.
    pub fn parse_list(list: &str) -> Result<Self, String> {
        list.split('+').try_fold(Self::NONE, |set, name| {
            Scope::parse(name.trim())
                .map(|scope| Self(set.0 | scope.bit()))
                .ok_or_else(|| name.to_owned())
        })
    }

    /// The space-separated `scope` claim of a token. Unknown words are ignored (a token from a
    /// newer version may name scopes this one does not know, and they grant nothing here).
    pub fn from_claim(claim: &str) -> Self {
        claim
            .split(' ')
            .filter_map(Scope::parse)
            .fold(Self::NONE, |set, scope| Self(set.0 | scope.bit()))
    }

    fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

/// The `scope` claim: names separated by one space.
impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

/// A group of routes that `PROTECTED_ROUTES` can put behind a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGroup {
    /// `/enqueue`, `/dequeue`, `/queue/*`, `/tasks/*`.
    Queue,
    /// `/heavy-task-*`.
    Compute,
    /// `/stream`.
    Stream,
    /// `/notifications`.
    Notifications,
}

impl RouteGroup {
    /// Every group.
    pub const ALL: [Self; 4] = [
        Self::Queue,
        Self::Compute,
        Self::Stream,
        Self::Notifications,
    ];

    /// The group's name in `PROTECTED_ROUTES`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Compute => "compute",
            Self::Stream => "stream",
            Self::Notifications => "notifications",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The groups that need a bearer token (`PROTECTED_ROUTES`).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtectedRoutes(u8);

impl ProtectedRoutes {
    /// Nothing protected: the development default, where every original curl works as before.
    pub const NONE: Self = Self(0);
    /// The production default: whatever changes or costs something needs a token.
    pub const PRODUCTION: Self = Self(RouteGroup::Queue.bit() | RouteGroup::Compute.bit());

    /// Whether `group` needs a token.
    pub const fn contains(self, group: RouteGroup) -> bool {
        self.0 & group.bit() != 0
    }

    /// A comma-separated list of group names, or `none`; `Err` names the first unknown word.
    pub fn parse(list: &str) -> Result<Self, String> {
        if list.trim() == "none" {
            return Ok(Self::NONE);
        }
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .try_fold(Self::NONE, |set, name| {
                RouteGroup::ALL
                    .into_iter()
                    .find(|group| group.as_str() == name)
                    .map(|group| Self(set.0 | group.bit()))
                    .ok_or_else(|| name.to_owned())
            })
    }
}

impl fmt::Debug for ProtectedRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                RouteGroup::ALL
                    .into_iter()
                    .filter(|g| self.contains(*g))
                    .map(RouteGroup::as_str),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_and_claims_round_trip() {
        let set = Scopes::parse_list("consume+enqueue").expect("valid");
        assert!(set.contains(Scope::Enqueue) && set.contains(Scope::Consume));
        assert!(!set.contains(Scope::Compute));
        assert_eq!(set.to_string(), "enqueue consume");
        assert_eq!(Scopes::from_claim(&set.to_string()), set);
        assert_eq!(Scopes::ALL.to_string(), "enqueue consume compute");
        assert_eq!(Scopes::parse_list("enqueue+admin"), Err("admin".into()));
        assert_eq!(Scopes::from_claim("admin compute"), {
            Scopes::parse_list("compute").expect("valid")
        });
        assert_eq!(Scopes::from_claim(""), Scopes::NONE);
    }

    #[test]
    fn protected_route_lists_name_groups_or_none() {
        let set = ProtectedRoutes::parse("queue, stream").expect("valid");
        assert!(set.contains(RouteGroup::Queue) && set.contains(RouteGroup::Stream));
        assert!(!set.contains(RouteGroup::Compute));
        assert_eq!(ProtectedRoutes::parse("none"), Ok(ProtectedRoutes::NONE));
        assert_eq!(ProtectedRoutes::parse("queue,admin"), Err("admin".into()));
        assert!(ProtectedRoutes::PRODUCTION.contains(RouteGroup::Compute));
        assert!(!ProtectedRoutes::PRODUCTION.contains(RouteGroup::Notifications));
    }
}
