"""The field registry: every profile field a rule may use, with its type and operators.

One place defines what the rule validator accepts, what both compilers understand and what
GET /v1/segments/fields lists. Kinds:
- `column`: a scalar column of `profiles`;
- `money`: a per-currency amount in `profile_money`; the rule names the currency;
- `counter`: an interaction count by type or channel in `profile_counters`; the rule names the
  key (`{"field": "interactions_by_type", "key": "call", ...}`); a missing count is 0;
- `list`: values in `profile_values` (tags, categories, skus).
"""
from __future__ import annotations

from dataclasses import dataclass

from .models import CONSENT_CHANNELS

SCALAR_OPS = ("eq", "ne", "in", "not_in", "exists")
ORDERED_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "between", "exists")
OPS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "string": SCALAR_OPS,
    "integer": ORDERED_OPS,
    "number": ("eq", "ne", "gt", "gte", "lt", "lte", "between", "exists"),
    "decimal": ("eq", "ne", "gt", "gte", "lt", "lte", "between", "exists"),
    "boolean": ("eq", "ne", "exists"),
    "date": ("eq", "ne", "gt", "gte", "lt", "lte", "between", "exists"),
    "datetime": ("gt", "gte", "lt", "lte", "between", "exists", "within_last", "more_than_ago"),
    "list": ("contains", "in", "not_in", "exists"),
}
ALL_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "between", "within_last",
           "more_than_ago")
RFM_SEGMENTS = ("champions", "loyal", "potential_loyalist", "new", "promising", "need_attention",
                "about_to_sleep", "at_risk", "cant_lose", "hibernating", "lost")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    description: str
    kind: str = "column"  # column | money | counter | list
    choices: tuple[str, ...] | None = None
    qualifier: str | None = None  # "currency" for money, "key" for counters
    dimension: str | None = None  # counters: type | channel; money: the money column

    @property
    def ops(self) -> tuple[str, ...]:
        return OPS_BY_TYPE[self.type]

    def public(self) -> dict:
        out = {"name": self.name, "type": self.type, "ops": list(self.ops), "description": self.description}
        if self.choices:
            out["values"] = list(self.choices)
        if self.qualifier:
            out["requires"] = self.qualifier
        return out


def _f(name: str, type_: str, description: str, **kw) -> FieldSpec:
    return FieldSpec(name, type_, description, **kw)


FIELDS: dict[str, FieldSpec] = {spec.name: spec for spec in [
    _f("customer_id", "string", "The customer id"),
    _f("lifecycle_stage", "string", "Contact lifecycle stage",
       choices=("lead", "prospect", "customer", "churned")),
    _f("source", "string", "Where the contact came from"),
    _f("city", "string", "City of the contact's first address"),
    _f("country", "string", "ISO 3166-1 alpha-2 country of the first address"),
    _f("gender", "string", "Gender", choices=("female", "male", "non_binary", "other", "undisclosed")),
    _f("preferred_language", "string", "BCP 47 language tag"),
    _f("birth_date", "date", "Date of birth (YYYY-MM-DD)"),
    _f("contact_created_at", "datetime", "When the contact was created"),
    *[_f(f"consent_{channel}", "boolean", f"Consent granted on {channel}") for channel in CONSENT_CHANNELS],
    _f("tags", "list", "Contact tags", kind="list"),
    _f("categories", "list", "Product categories bought (orders not cancelled)", kind="list"),
    _f("skus", "list", "SKUs bought (orders not cancelled)", kind="list"),
    _f("order_count", "integer", "Orders not cancelled, all currencies"),
    _f("first_order_at", "datetime", "Time of the first order not cancelled"),
    _f("last_order_at", "datetime", "Time of the last order not cancelled"),
    _f("refund_count", "integer", "Refunds recorded on the customer's orders"),
    _f("cancelled_count", "integer", "Cancelled orders"),
    _f("primary_currency", "string", "The currency of most of the customer's orders"),
    _f("total_spent", "decimal", "Spent in one currency: order totals minus refunds, cancelled orders excluded; "
                                 "0 when nothing was bought in it", kind="money", qualifier="currency",
       dimension="total_spent"),
    _f("currency_order_count", "integer", "Orders in one currency (0 when none)", kind="money",
       qualifier="currency", dimension="order_count"),
    _f("avg_order_value", "decimal", "Average order value in one currency (missing when no orders in it)",
       kind="money", qualifier="currency", dimension="avg_order_value"),
    _f("clv", "decimal", "Estimated customer lifetime value in one currency (missing when no orders in it)",
       kind="money", qualifier="currency", dimension="clv"),
    _f("interaction_count", "integer", "Interactions of every type"),
    _f("interactions_by_type", "integer", "Interactions of one type (0 when none)", kind="counter",
       qualifier="key", dimension="type"),
    _f("interactions_by_channel", "integer", "Interactions on one channel (0 when none)", kind="counter",
       qualifier="key", dimension="channel"),
    _f("last_interaction_at", "datetime", "Time of the last interaction"),
    _f("avg_rating", "number", "Average rating given, 1-5"),
    _f("nps", "integer", "The latest NPS answer, 0-10"),
    _f("open_tickets", "integer", "Support tickets open or pending"),
    _f("complaints_90d", "integer", "Complaints in the last 90 days"),
    _f("campaign_opens", "integer", "Campaign messages opened"),
    _f("campaign_clicks", "integer", "Campaign messages clicked"),
    _f("campaign_conversions", "integer", "Campaign conversions"),
    _f("rfm_recency", "integer", "RFM recency score, 1 (long ago) to 5 (recent)"),
    _f("rfm_frequency", "integer", "RFM frequency score, 1-5"),
    _f("rfm_monetary", "integer", "RFM monetary score, 1-5 (within the customer's primary currency)"),
    _f("rfm_segment", "string", "Named RFM group", choices=RFM_SEGMENTS),
    _f("churn_risk", "number", "Churn risk, 0 (staying) to 1 (gone)"),
    _f("updated_from_events_at", "datetime", "When events last changed the profile"),
]}

LIST_FIELDS = tuple(name for name, spec in FIELDS.items() if spec.kind == "list")
COLUMN_FIELDS = tuple(name for name, spec in FIELDS.items() if spec.kind == "column")
