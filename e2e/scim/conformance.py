"""SCIM 2.0 conformance of a Gatehouse tenant, judged by scim2-tester.

Usage: conformance.py BASE_URL TOKEN

Runs every check scim2-tester has (none disabled) against BASE_URL (the tenant's
`/scim/v2`) with TOKEN as the bearer token, prints one line per check, and exits 1
when any check ends worse than ACCEPTABLE (a DEVIATION from a SHOULD, an ERROR
against a MUST, or CRITICAL).
"""

import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}


def main() -> int:
    base_url, token = sys.argv[1], sys.argv[2]
    http = Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30.0,
    )
    client = SyncSCIMClient(http)
    results = check_server(client, raise_exceptions=False)
    failed = 0
    for result in results:
        where = f"[{result.resource_type}] " if result.resource_type else ""
        line = f"{result.status.name:10} {where}{result.title}"
        if result.status not in PASSING:
            failed += 1
            line += f"\n           reason: {result.reason}"
            if result.data is not None:
                line += f"\n           data: {str(result.data)[:2000]}"
        print(line)
    counts = {}
    for result in results:
        counts[result.status.name] = counts.get(result.status.name, 0) + 1
    print(f"{len(results)} checks: {counts}")
    if not results:
        print("no checks ran")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
