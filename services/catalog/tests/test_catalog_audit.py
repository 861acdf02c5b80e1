"""What the catalog writes to its audit log (the in-memory fake of the port): publish, retire and
reload with who asked, refusals with their status."""
import pytest
from test_catalog_versions import edit, shorten_social_card

from services.common import audit
from services.common.auth import Actor
from services.common.errors import FailedPrecondition

OPERATOR = Actor("operator-1", "operator", "", "440100")


def test_reload_publish_and_retire_are_recorded(catalog, data):
    edit(data / "packages" / "newborn.yaml", shorten_social_card(3))
    catalog.reload(actor=OPERATOR)
    catalog.publish("XSECS", actor=OPERATOR)
    with pytest.raises(FailedPrecondition):
        catalog.publish("XSECS", actor=audit.unauthenticated("", ""))
    catalog.retire("XSECS", actor=OPERATOR)
    records = catalog.audit.records
    assert [(r["action"], r["target"], r["outcome"]) for r in records] == [
        ("catalog.reload", "", "ok"), ("catalog.publish", "XSECS", "ok"),
        ("catalog.publish", "XSECS", "FAILED_PRECONDITION"), ("catalog.retire", "XSECS", "ok")]
    assert records[0]["details"] == {"changes": ["XSECS v2 drafted"]}
    assert records[1]["details"] == {"version": 2} and records[3]["details"] == {"version": 2}
    assert records[2]["actor"] == {"sub": "anonymous", "role": "unknown", "department": "", "region": "",
                                   "on_behalf_of": "", "auth": "unauthenticated"}
    assert catalog.audit.verify() is None
