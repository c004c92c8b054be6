//! The domain-event bus.
//!
//! Features react to each other through events instead of calling each other's
//! internals: a withdrawn consent, a disabled user or a rotated key is published once
//! and every interested cache or revocation job on every node hears it.
//!
//! Delivery: subscribers on the publishing node get the event at once, in-process.
//! With a cross-node [`EventTransport`] (PostgreSQL `LISTEN/NOTIFY`, provided by the
//! identity store) the event is also sent to every other node; each node drops the
//! copies that come back to it. Delivery across nodes is at-most-once: when a
//! transport loses its connection, or a subscriber falls behind, it receives
//! [`DomainEvent::Resync`] and must drop everything it cached.

use std::fmt::Debug;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::Error;
use crate::ids::{EventId, NodeId, SessionId, TenantId, UserId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DomainEvent {
    /// Tenant settings (name, hosts, theme, policy) changed.
    TenantChanged { tenant: TenantId },
    /// A user's attributes, status or memberships changed.
    UserChanged { tenant: TenantId, user: UserId },
    /// A user was deactivated or deleted: their sessions and tokens must stop working.
    UserDeactivated { tenant: TenantId, user: UserId },
    /// A password, passkey or second factor was added, removed or reset.
    CredentialsChanged { tenant: TenantId, user: UserId },
    /// A tenant's signing keys were rotated or pruned: reload its key ring.
    SigningKeysChanged { tenant: TenantId },
    /// An OAuth client was registered, changed or deleted.
    ClientChanged { tenant: TenantId, client_id: String },
    /// Sessions ended (sign-out, expiry by an administrator, password change): relying
    /// parties with a back-channel logout URI are told, by the node that ended them.
    SessionsEnded {
        tenant: TenantId,
        user: UserId,
        sessions: Vec<SessionId>,
    },
    /// A user withdrew consent for a purpose (or revoked an app: one event per
    /// purpose). The grants that depended on it are already revoked in the database;
    /// nodes drop whatever they cached about the user's consent.
    ConsentWithdrawn {
        tenant: TenantId,
        user: UserId,
        client_id: String,
        purpose: String,
    },
    /// A user gave consent for a purpose: nodes drop whatever they cached about the
    /// user's consent, so a policy decision right after the consent page sees it.
    ConsentGranted {
        tenant: TenantId,
        user: UserId,
        client_id: String,
        purpose: String,
    },
    /// OAuth grants were revoked for a reason other than their session ending (a
    /// consent withdrawn, an app revoked): the relying parties' sessions built on
    /// them are told to end (back-channel logout), by the node that revoked them.
    GrantsRevoked {
        tenant: TenantId,
        user: UserId,
        grants: Vec<String>,
    },
    /// Events may have been missed (transport reconnected, subscriber lagged):
    /// drop every cache.
    Resync,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub id: EventId,
    pub origin: NodeId,
    pub event: DomainEvent,
}

impl EventEnvelope {
    pub fn to_json(&self) -> Result<String, Error> {
        serde_json::to_string(self).map_err(|e| Error::Event(e.to_string()))
    }

    pub fn from_json(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|e| Error::Event(e.to_string()))
    }
}

/// Carries events to the other nodes. `publish` may block (it talks to the database),
/// so call it from a blocking context.
pub trait EventTransport: Send + Sync + Debug {
    fn publish(&self, envelope: &EventEnvelope) -> Result<(), Error>;
}

const LOCAL_CAPACITY: usize = 1024;

#[derive(Clone, Debug)]
pub struct EventBus {
    node: NodeId,
    local: broadcast::Sender<Arc<EventEnvelope>>,
    transport: Option<Arc<dyn EventTransport>>,
}

impl EventBus {
    /// A bus that reaches only this process: right for the single-node SQLite setup.
    pub fn in_process() -> Self {
        let (local, _) = broadcast::channel(LOCAL_CAPACITY);
        EventBus {
            node: NodeId::new(),
            local,
            transport: None,
        }
    }

    /// A bus whose events also travel to other nodes through `transport`.
    /// The transport's listener must hand incoming events to [`EventBus::deliver_remote`].
    pub fn with_transport(node: NodeId, transport: Arc<dyn EventTransport>) -> Self {
        let (local, _) = broadcast::channel(LOCAL_CAPACITY);
        EventBus {
            node,
            local,
            transport: Some(transport),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// Delivers to local subscribers at once, then to other nodes. A transport failure
    /// is returned so the caller can log or retry; local subscribers already have it.
    pub fn publish(&self, event: DomainEvent) -> Result<EventId, Error> {
        let envelope = EventEnvelope {
            id: EventId::new(),
            origin: self.node,
            event,
        };
        let id = envelope.id;
        let envelope = Arc::new(envelope);
        // No subscribers is not an error: nothing is cached yet.
        let _ = self.local.send(Arc::clone(&envelope));
        if let Some(transport) = &self.transport {
            transport.publish(&envelope)?;
        }
        Ok(id)
    }

    /// [`EventBus::publish`] after a commit. The database already holds the truth
    /// every node checks, so a failure to reach other nodes is logged (their caches
    /// catch up when they expire), never the committed action's error.
    pub fn announce(&self, event: DomainEvent) {
        if let Err(error) = self.publish(event) {
            tracing::warn!(%error, "a change was committed, but its event was not sent to other nodes");
        }
    }

    /// Called by a transport listener for each event it receives. Copies of this
    /// node's own events are dropped: local subscribers had them at publish time.
    pub fn deliver_remote(&self, envelope: EventEnvelope) -> bool {
        if envelope.origin == self.node {
            return false;
        }
        let _ = self.local.send(Arc::new(envelope));
        true
    }

    /// Tells local subscribers to drop their caches (e.g. after a transport reconnect).
    pub fn deliver_resync(&self) {
        let _ = self.local.send(Arc::new(EventEnvelope {
            id: EventId::new(),
            origin: self.node,
            event: DomainEvent::Resync,
        }));
    }

    pub fn subscribe(&self) -> EventSubscription {
        EventSubscription {
            receiver: self.local.subscribe(),
        }
    }
}

/// A subscriber's view of the bus; turns "lagged" into [`DomainEvent::Resync`].
#[derive(Debug)]
pub struct EventSubscription {
    receiver: broadcast::Receiver<Arc<EventEnvelope>>,
}

impl EventSubscription {
    /// Waits for the next event; `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<Arc<EventEnvelope>> {
        match self.receiver.recv().await {
            Ok(envelope) => Some(envelope),
            Err(broadcast::error::RecvError::Closed) => None,
            Err(broadcast::error::RecvError::Lagged(_)) => Some(resync()),
        }
    }

    /// Returns an event that is already waiting, without blocking.
    pub fn try_next(&mut self) -> Option<Arc<EventEnvelope>> {
        match self.receiver.try_recv() {
            Ok(envelope) => Some(envelope),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Some(resync()),
            Err(_) => None,
        }
    }
}

fn resync() -> Arc<EventEnvelope> {
    Arc::new(EventEnvelope {
        id: EventId::new(),
        origin: NodeId::from_uuid(uuid::Uuid::nil()),
        event: DomainEvent::Resync,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    struct RecordingTransport(Mutex<Vec<EventEnvelope>>);

    impl EventTransport for RecordingTransport {
        fn publish(&self, envelope: &EventEnvelope) -> Result<(), Error> {
            self.0.lock().unwrap().push(envelope.clone());
            Ok(())
        }
    }

    #[test]
    fn local_subscribers_receive_published_events() {
        let bus = EventBus::in_process();
        let mut sub = bus.subscribe();
        let tenant = TenantId::new();
        bus.publish(DomainEvent::TenantChanged { tenant }).unwrap();
        let got = sub.try_next().unwrap();
        assert_eq!(got.event, DomainEvent::TenantChanged { tenant });
        assert_eq!(got.origin, bus.node_id());
        assert!(sub.try_next().is_none());
    }

    #[test]
    fn events_cross_nodes_through_the_transport_and_own_echoes_are_dropped() {
        let wire = Arc::new(RecordingTransport::default());
        let node_a = EventBus::with_transport(NodeId::new(), wire.clone());
        let node_b = EventBus::with_transport(NodeId::new(), wire.clone());
        let mut sub_a = node_a.subscribe();
        let mut sub_b = node_b.subscribe();

        let (tenant, user) = (TenantId::new(), UserId::new());
        node_a
            .publish(DomainEvent::UserDeactivated { tenant, user })
            .unwrap();
        // The transport hands every message to every node, including the sender.
        for envelope in wire.0.lock().unwrap().drain(..) {
            node_a.deliver_remote(envelope.clone());
            node_b.deliver_remote(envelope);
        }
        assert!(sub_a.try_next().is_some());
        assert!(
            sub_a.try_next().is_none(),
            "echo of own event was delivered twice"
        );
        let on_b = sub_b.try_next().unwrap();
        assert_eq!(on_b.event, DomainEvent::UserDeactivated { tenant, user });
    }

    #[test]
    fn a_lagging_subscriber_is_told_to_resync() {
        let bus = EventBus::in_process();
        let mut sub = bus.subscribe();
        for _ in 0..LOCAL_CAPACITY + 10 {
            bus.publish(DomainEvent::TenantChanged {
                tenant: TenantId::new(),
            })
            .unwrap();
        }
        assert_eq!(sub.try_next().unwrap().event, DomainEvent::Resync);
    }

    #[test]
    fn envelopes_round_trip_as_json() {
        let envelope = EventEnvelope {
            id: EventId::new(),
            origin: NodeId::new(),
            event: DomainEvent::CredentialsChanged {
                tenant: TenantId::new(),
                user: UserId::new(),
            },
        };
        let json = envelope.to_json().unwrap();
        assert!(json.contains("\"type\":\"credentials_changed\""));
        assert_eq!(EventEnvelope::from_json(&json).unwrap(), envelope);
    }
}
