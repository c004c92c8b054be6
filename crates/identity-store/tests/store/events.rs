//! Domain events across nodes over PostgreSQL LISTEN/NOTIFY: two buses, each with
//! its own listening connection, stand in for two Gatehouse nodes.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::events::{DomainEvent, EventBus};
use gatehouse_core::ids::{NodeId, TenantId, UserId};
use gatehouse_identity_store::events_pg::{PgNotifyTransport, spawn_listener};
use gatehouse_identity_store::testing::TestDb;

fn node(db: &TestDb) -> (EventBus, gatehouse_identity_store::events_pg::Listener) {
    let bus = EventBus::with_transport(
        NodeId::new(),
        Arc::new(PgNotifyTransport::new(db.pool().clone())),
    );
    let listener = spawn_listener(db.url.clone(), bus.clone(), Duration::from_millis(10)).unwrap();
    assert!(
        listener.wait_until_listening(Duration::from_secs(5)),
        "listener did not start"
    );
    (bus, listener)
}

#[tokio::test]
async fn an_event_published_on_one_node_reaches_the_other_once() {
    let db = TestDb::postgres();
    let (node_a, _listener_a) = node(&db);
    let (node_b, _listener_b) = node(&db);
    let mut on_a = node_a.subscribe();
    let mut on_b = node_b.subscribe();

    let event = DomainEvent::UserDeactivated {
        tenant: TenantId::new(),
        user: UserId::new(),
    };
    let publisher = node_a.clone();
    let sent = event.clone();
    tokio::task::spawn_blocking(move || publisher.publish(sent))
        .await
        .unwrap()
        .unwrap();

    let received = tokio::time::timeout(Duration::from_secs(1), on_b.next())
        .await
        .expect("event did not reach the other node within 1 s")
        .unwrap();
    assert_eq!(received.event, event);
    assert_eq!(received.origin, node_a.node_id());

    assert_eq!(on_a.next().await.unwrap().event, event);
    // Node A's own echo from PostgreSQL must not be delivered a second time.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(on_a.try_next().is_none(), "own event delivered twice");
    assert!(on_b.try_next().is_none());
}
