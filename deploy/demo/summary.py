"""What a demo run did, as a value a test can check and as the few lines `make demo` prints: the
counts the services answered, the segments, and where to look first."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from .catalog import SEGMENTS

VIP_SEGMENT = SEGMENTS[0][0]


@dataclass
class DemoSummary:
    url: str
    seed: int
    customers: int
    anchor: datetime  # the "now" the business was generated for
    contacts: Counter = field(default_factory=Counter)  # created / updated / unchanged / error
    contact_ids: list[str | None] = field(default_factory=list)  # by customer number
    orders: Counter = field(default_factory=Counter)
    orders_by_currency: Counter = field(default_factory=Counter)  # orders stored, by currency
    interactions: Counter = field(default_factory=Counter)  # recorded / already_recorded / error
    segments: dict[str, dict] = field(default_factory=dict)  # name -> {"id", "member_count", "created"}
    errors: list[str] = field(default_factory=list)  # the first few refused items
    showcase_customer_id: str | None = None  # the customer with the most orders
    expected_vip: int = 0  # customers with five orders or more that are not cancelled
    settled: bool = False  # the VIP segment reached expected_vip: the order events were applied
    batches: int = 0
    replayed_batches: int = 0  # answered from the Idempotency-Key store: sent before (earlier run, or a retry)
    requests: int = 0  # to write everything
    posting_s: float = 0.0  # until every write was answered
    elapsed_s: float = 0.0  # including the wait for the segments

    @property
    def stored_contacts(self) -> int:
        return sum(n for status, n in self.contacts.items() if status != "error")

    @property
    def stored_orders(self) -> int:
        return sum(n for status, n in self.orders.items() if status != "error")

    @property
    def example_urls(self) -> list[str]:
        urls = []
        if self.showcase_customer_id:
            urls.append(f"{self.url}/v1/customers/{self.showcase_customer_id}")
        if VIP_SEGMENT in self.segments:
            urls.append(f"{self.url}/v1/segments/{self.segments[VIP_SEGMENT]['id']}/members")
        urls.append(f"{self.url}/v1/contacts?q=کریمی&limit=5")
        return urls


def report(summary: DemoSummary) -> str:
    def counts(counter: Counter) -> str:
        return ", ".join(f"{n} {status}" for status, n in sorted(counter.items())) or "none"

    lines = [f"Demo business: seed {summary.seed}, {summary.customers} customers, history up to "
             f"{summary.anchor.date()}; written in {summary.posting_s:.1f} s ({summary.requests} requests), "
             f"{summary.elapsed_s:.1f} s in all",
             f"  contacts      {counts(summary.contacts)}",
             f"  orders        {counts(summary.orders)}; by currency: {counts(summary.orders_by_currency)}",
             f"  interactions  {counts(summary.interactions)}",
             "  segments"]
    lines += [f"    {name}: {segment['member_count']} members" for name, segment in summary.segments.items()]
    if summary.replayed_batches:
        lines.append(f"  {summary.replayed_batches} of {summary.batches} batches had been sent before (by an earlier "
                     "run, or a retry): their Idempotency-Key brought the first answers back, nothing was written "
                     "twice.")
    if not summary.settled:
        lines.append(f"  The segmentation service is still applying the events ({VIP_SEGMENT!r} expects "
                     f"{summary.expected_vip} members): profiles and member counts keep growing for a while.")
    lines += [f"  ! {error}" for error in summary.errors]
    lines.append("Have a look:")
    lines += [f"  {url}" for url in summary.example_urls]
    return "\n".join(lines)
