//! Users found by a filter tree, sorted and paged, the same on both backends.

use chrono::Duration;
use gatehouse_identity_store::users::search::{
    Comparison as C, EmailAttribute as E, EmailFilter, FilterValue as V, UserAttribute as A,
    UserFilter as F, UserQuery, search,
};
use gatehouse_identity_store::users::{self, Email, Name, UserData};
use gatehouse_identity_store::{AnyConnection, StoreError};

use crate::{now, tenant, tenant_and_other};

fn person(user_name: &str, given: &str, title: Option<&str>, emails: &[(&str, &str)]) -> UserData {
    UserData {
        name: Name {
            given_name: Some(given.into()),
            family_name: Some("Doe".into()),
            ..Name::default()
        },
        title: title.map(str::to_owned),
        emails: emails
            .iter()
            .enumerate()
            .map(|(i, (value, kind))| Email {
                value: (*value).into(),
                kind: Some((*kind).into()),
                primary: i == 0,
                verified: false,
            })
            .collect(),
        ..UserData::new(user_name)
    }
}

fn text(value: &str) -> V {
    V::Text(value.into())
}

fn cmp(attribute: A, op: C, value: V) -> F {
    F::Compare(attribute, op, value)
}

fn and(a: F, b: F) -> F {
    F::And(Box::new(a), Box::new(b))
}

fn or(a: F, b: F) -> F {
    F::Or(Box::new(a), Box::new(b))
}

fn not(a: F) -> F {
    F::Not(Box::new(a))
}

fn email(attribute: E, op: C, value: V) -> EmailFilter {
    EmailFilter::Compare(attribute, op, value)
}

/// The user names `filter` finds, in creation order.
fn names(
    conn: &mut AnyConnection,
    tenant: gatehouse_core::ids::TenantId,
    filter: F,
) -> Vec<String> {
    let found = search(
        conn,
        tenant,
        &UserQuery::by_index(Some(filter), None, 1, 100),
    )
    .unwrap();
    assert_eq!(found.total, Some(found.users.len() as i64));
    found.users.into_iter().map(|u| u.data.user_name).collect()
}

fn seed(conn: &mut AnyConnection, t: gatehouse_core::ids::TenantId) {
    let people = [
        person(
            "alice",
            "Alice",
            Some("Engineer"),
            &[
                ("alice@work.example", "work"),
                ("alice@home.example", "home"),
            ],
        ),
        person("bob", "Bob", None, &[("bob@home.example", "home")]),
        person(
            "Carol_1",
            "Carol",
            Some("Manager"),
            &[("carol@work.example", "work")],
        ),
        person("dave%", "Dave", Some("engineer"), &[]),
    ];
    for (i, data) in people.into_iter().enumerate() {
        users::create(conn, now() + Duration::minutes(i as i64), t, data).unwrap();
    }
}

gatehouse_identity_store::backend_tests! {
    fn filters_compare_each_kind_of_attribute(db) {
        let mut conn = db.conn();
        let (t, other) = tenant_and_other(&mut conn, "acme");
        seed(&mut conn, t);
        seed(&mut conn, other);
        let conn = &mut conn;

        assert_eq!(names(conn, t, cmp(A::UserName, C::Eq, text("ALICE"))), ["alice"]);
        assert_eq!(names(conn, t, cmp(A::UserName, C::StartsWith, text("car"))), ["Carol_1"]);
        // LIKE's wildcards in a value are plain characters.
        assert_eq!(names(conn, t, cmp(A::UserName, C::Contains, text("_"))), ["Carol_1"]);
        assert_eq!(names(conn, t, cmp(A::UserName, C::EndsWith, text("%"))), ["dave%"]);
        assert_eq!(names(conn, t, cmp(A::Title, C::Eq, text("ENGINEER"))), ["alice", "dave%"]);
        // Absent values: ne finds them, not(eq) too, pr does not.
        assert_eq!(names(conn, t, cmp(A::Title, C::Ne, text("engineer"))), ["bob", "Carol_1"]);
        assert_eq!(names(conn, t, not(cmp(A::Title, C::Eq, text("engineer")))), ["bob", "Carol_1"]);
        assert_eq!(names(conn, t, F::Present(A::Title)), ["alice", "Carol_1", "dave%"]);
        assert_eq!(names(conn, t, cmp(A::Title, C::Eq, V::Null)), ["bob"]);
        assert_eq!(names(conn, t, cmp(A::GivenName, C::Greater, text("bob"))), ["Carol_1", "dave%"]);
        assert_eq!(names(conn, t, cmp(A::Active, C::Eq, V::Bool(true))).len(), 4);
        assert_eq!(
            names(conn, t, cmp(A::Created, C::GreaterOrEqual, V::Time(now() + Duration::minutes(2)))),
            ["Carol_1", "dave%"]
        );
        // Emails: a condition on one address, and a value path whose parts must hold
        // for the same address.
        assert_eq!(
            names(conn, t, F::Email(email(E::Value, C::Eq, text("Bob@Home.Example")))),
            ["bob"]
        );
        assert_eq!(
            names(conn, t, F::Email(email(E::Type, C::Eq, text("home")))),
            ["alice", "bob"]
        );
        let same_address = EmailFilter::And(
            Box::new(email(E::Type, C::Eq, text("work"))),
            Box::new(email(E::Value, C::Contains, text("home"))),
        );
        assert!(names(conn, t, F::Email(same_address)).is_empty());
        assert_eq!(
            names(conn, t, F::Email(EmailFilter::Present(E::Value))),
            ["alice", "bob", "Carol_1"]
        );
    }

    fn and_binds_tighter_than_or_when_the_tree_says_so(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        seed(&mut conn, t);
        let conn = &mut conn;
        let alice = || cmp(A::UserName, C::Eq, text("alice"));
        let bob = || cmp(A::UserName, C::Eq, text("bob"));
        let engineer = || cmp(A::Title, C::Eq, text("engineer"));
        // alice or (bob and engineer) → alice; (alice or bob) and engineer → alice.
        assert_eq!(names(conn, t, or(alice(), and(bob(), engineer()))), ["alice"]);
        assert_eq!(names(conn, t, and(or(alice(), bob()), engineer())), ["alice"]);
        // (alice or bob) and not engineer → bob.
        assert_eq!(names(conn, t, and(or(alice(), bob()), not(engineer()))), ["bob"]);
    }

    fn pages_count_from_one_and_sort_by_an_attribute(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        seed(&mut conn, t);
        let page = |conn: &mut AnyConnection, start_index, count, sort| {
            let found = search(conn, t, &UserQuery::by_index(None, sort, start_index, count)).unwrap();
            (found.total.unwrap(), found.users.into_iter().map(|u| u.data.user_name).collect::<Vec<_>>())
        };
        assert_eq!(page(&mut conn, 1, 2, None), (4, vec!["alice".into(), "bob".into()]));
        assert_eq!(page(&mut conn, 3, 2, None), (4, vec!["Carol_1".into(), "dave%".into()]));
        assert_eq!(page(&mut conn, 4, 10, None), (4, vec!["dave%".into()]));
        assert_eq!(page(&mut conn, 9, 10, None), (4, vec![]));
        assert_eq!(page(&mut conn, 1, 0, None), (4, vec![]));
        assert_eq!(
            page(&mut conn, 1, 4, Some((A::UserName, true))).1,
            ["dave%", "Carol_1", "bob", "alice"]
        );
        assert_eq!(
            page(&mut conn, 1, 2, Some((A::GivenName, false))).1,
            ["alice", "bob"]
        );
        for (start_index, count) in [(0, 10), (1, -1), (1, 1001)] {
            let refused = search(&mut conn, t, &UserQuery::by_index(None, None, start_index, count));
            assert!(matches!(refused, Err(StoreError::Invalid { .. })), "{start_index} {count}");
        }
    }

    fn a_keyset_page_continues_after_its_cursor_without_a_total(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        seed(&mut conn, t);
        let engineers = || Some(F::Present(A::Title));
        let first = search(&mut conn, t, &UserQuery::after(engineers(), None, 2)).unwrap();
        assert_eq!(first.total, None);
        let names: Vec<_> = first.users.iter().map(|u| u.data.user_name.as_str()).collect();
        assert_eq!(names, ["alice", "Carol_1"]);
        let cursor = first.users.last().unwrap().id.to_string();
        let next = search(&mut conn, t, &UserQuery::after(engineers(), Some(cursor), 2)).unwrap();
        let names: Vec<_> = next.users.iter().map(|u| u.data.user_name.as_str()).collect();
        assert_eq!(names, ["dave%"]);
        let mixed = UserQuery { sort: Some((A::UserName, false)), ..UserQuery::after(None, Some("x".into()), 2) };
        assert!(matches!(search(&mut conn, t, &mixed), Err(StoreError::Invalid { .. })));
    }

    fn the_unfiltered_total_is_the_kept_count_through_creation_and_deletion(db) {
        let mut conn = db.conn();
        let (t, other) = tenant_and_other(&mut conn, "acme");
        seed(&mut conn, t);
        seed(&mut conn, other);
        let bob = users::find_by_user_name(&mut conn, t, "bob").unwrap().unwrap();
        users::delete(&mut conn, t, bob.id).unwrap();
        let all = search(&mut conn, t, &UserQuery::by_index(None, None, 1, 100)).unwrap();
        assert_eq!(all.total, Some(3));
        assert_eq!(all.users.len(), 3);
        assert_eq!(users::total(&mut conn, t).unwrap(), users::count(&mut conn, t).unwrap());
        assert_eq!(users::total(&mut conn, other).unwrap(), 4);
        // A refused creation (a taken userName) leaves the count as it was.
        assert!(users::create(&mut conn, now(), t, person("ALICE", "Again", None, &[])).is_err());
        assert_eq!(users::total(&mut conn, t).unwrap(), 3);
    }

    fn values_of_the_wrong_kind_are_refused(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        for filter in [
            cmp(A::Active, C::Eq, text("yes")),
            cmp(A::Active, C::Greater, V::Bool(true)),
            cmp(A::UserName, C::Eq, V::Bool(true)),
            cmp(A::Created, C::Contains, V::Time(now())),
            cmp(A::Title, C::Greater, V::Null),
            F::Email(email(E::Primary, C::Eq, text("true"))),
        ] {
            let refused = search(&mut conn, t, &UserQuery::by_index(Some(filter.clone()), None, 1, 10));
            assert!(matches!(refused, Err(StoreError::Invalid { .. })), "{filter:?}");
        }
    }
}
