"""joint_review refuses to open a session for a region its site does not serve, and writes nothing."""
import pytest

from services.common.errors import FailedPrecondition
from services.joint_review.tests.test_review_handlers import bus, package, review, store, submitted  # noqa: F401 - fixtures


def test_a_case_of_a_region_the_site_does_not_serve_opens_no_session(review, store, bus, package):
    review.serves = lambda region: region.startswith("4403")  # a 深圳 site
    with pytest.raises(FailedPrecondition) as err:
        review.open_session(submitted(package))
    assert "440100" in str(err.value)
    assert store.load(submitted(package).case_no)[0] is None and bus.published == []


def test_a_served_region_opens_its_session(review, store, package):
    review.serves = lambda region: region == "440100"
    assert review.open_session(submitted(package)) is not None
