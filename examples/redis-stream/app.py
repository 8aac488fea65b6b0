"""Process orders from a Redis stream, reporting bad ones as partial-batch failures.

Each record's ``fields`` are the entry's fields (text). An order whose ``amount`` is
not a positive number is reported in ``batchItemFailures``: Nimbus acks the others,
retries it with backoff and, after ``max_attempts``, moves it to ``orders:dead``.
Anything the handler raises fails the whole batch instead.
"""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    failures = []
    for record in event["Records"]:
        fields = record["fields"]
        try:
            amount = float(fields["amount"])
            if amount <= 0:
                raise ValueError(f"amount must be positive, not {amount}")
        except (KeyError, ValueError) as exc:
            print(f"rejected {record['messageId']} (attempt {record['attempt']}): {exc}")
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        # Delivery is at least once: make this step idempotent (key it on the order id).
        print(f"processed order {fields.get('order_id')} amount {amount:.2f}")
    return {"batchItemFailures": failures}
