use chrono::Duration;
use gatehouse_identity_store::pushed_requests::{consume, find_live, insert, prune};

use crate::{now, tenant_and_other};

gatehouse_identity_store::backend_tests! {
    fn pushed_requests_are_found_until_consumed_or_expired(db) {
        let mut conn = db.conn();
        let conn = &mut conn;
        let now = now();
        let (t, other) = tenant_and_other(conn, "par");
        let params = vec![
            ("response_type".to_owned(), "code".to_owned()),
            ("resource".to_owned(), "https://a".to_owned()),
            ("resource".to_owned(), "https://b".to_owned()),
        ];
        insert(conn, now, t, "h1", "app", &params, now + Duration::seconds(60)).unwrap();

        let found = find_live(conn, now, t, "h1").unwrap().unwrap();
        assert_eq!(found.client_id, "app");
        assert_eq!(found.parameters, params, "order and repeats kept");
        assert!(find_live(conn, now, other, "h1").unwrap().is_none(), "visible in another tenant");
        assert!(find_live(conn, now + Duration::seconds(60), t, "h1").unwrap().is_none(), "expired");

        assert!(consume(conn, now, t, "h1").unwrap());
        assert!(!consume(conn, now, t, "h1").unwrap(), "consumed twice");
        assert!(find_live(conn, now, t, "h1").unwrap().is_none(), "found after consumption");

        insert(conn, now, t, "h2", "app", &params, now + Duration::seconds(1)).unwrap();
        assert!(!consume(conn, now + Duration::seconds(2), t, "h2").unwrap(), "consumed after expiry");
        assert_eq!(prune(conn, now + Duration::seconds(61)).unwrap(), 2);
    }
}
