//! Typed identifiers. Each wraps a UUIDv7 so ids sort by creation time, which makes
//! them usable as stable pagination cursors. They travel as lowercase hyphenated text
//! (the store keeps them as TEXT on both backends).

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }

            pub fn from_uuid(id: Uuid) -> Self {
                $name(id)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.as_hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }
    };
}

typed_id!(TenantId);
typed_id!(UserId);
typed_id!(GroupId);
typed_id!(RoleId);
typed_id!(CredentialId);
typed_id!(AuditEventId);
typed_id!(SessionId);
typed_id!(
    /// Identifies one running Gatehouse process, so a node can ignore its own events
    /// when they come back over the cross-node transport.
    NodeId
);
typed_id!(EventId);
typed_id!(
    /// A partner's identity provider configured for a tenant.
    ConnectionId
);
typed_id!(FederatedIdentityId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_sort_by_creation() {
        let first = UserId::new();
        let second = UserId::new();
        assert!(first.to_string() < second.to_string());
        assert_eq!(first.to_string().parse::<UserId>().unwrap(), first);
        assert!("not-a-uuid".parse::<UserId>().is_err());
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let id = TenantId::new();
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{id}\""));
    }
}
