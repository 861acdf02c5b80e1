"""Licences signed by the issuing site verify at every site (issue 11), on the in-memory fakes:
each site publishes its own signing keys (`signing_key_published`, ids derived from the key), keeps
the keys other sites publish in its key directory (a known key id is never given another key; its
own keys coming back are ignored), lists both with the site that holds each, and verifies a licence
document of any site with the key it names, never the one the document carries. The worker's
handler, the envelope's site and the announcement at start-up under nameko's test tools."""
import base64
import dataclasses
import datetime
import io
import logging
from unittest import mock

import pytest
from nameko.containers import ServiceContainer, WorkerContext
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR, Entrypoint
from nameko.testing.services import worker_factory
from nameko.testing.utils import get_extension

from onething.elicense.v1 import elicense_pb2 as pb
from onething.elicense.v1 import events_pb2
from services.common import policy
from services.common.audit import MemoryAuditLog
from services.common.auth import Actor
from services.common.bus import RecordingBus
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.events import to_payload
from services.common.testing import FlakyBus, MemoryInboxCollection, dependency
from services.common.worker import Component
from services.elicense import codec, document, domain
from services.elicense.api import ElicenseApi
from services.elicense.domain import DirectoryOutcome, LicenseStatus, PublishedKey, SigningAlgorithm, StatusCheck
from services.elicense.fakes import MemoryBlobs, MemoryLicenseStore
from services.elicense.handlers import MAX_DOCUMENT_BYTES, Elicense
from services.elicense.wiring import build_elicense
from services.elicense.worker import ElicenseWorker, EventSite, KeyAnnouncement

SITE, OTHER = "440100", "440300"
NOW = datetime.datetime(2026, 11, 28, 1, 0, tzinfo=datetime.UTC)
HOLDER = "11010519491231002X"


@pytest.fixture
def bus():
    return FlakyBus("elicense")


@pytest.fixture
def store(bus):
    return MemoryLicenseStore(bus)


@pytest.fixture
def elicense(store):
    return build_elicense(store=store, blobs=MemoryBlobs(), audit=MemoryAuditLog("elicense"), clock=lambda: NOW,
                          site=SITE)


def key_events(bus):
    return [(p, h) for t, p, h in bus.published if t == "signing_key_published.440100"]


class OtherSite:
    """Another site's signing key and the licences it signs, as that site's elicense makes them."""

    def __init__(self, site=OTHER, region=None, key_id=None):
        self.site, self.region = site, region or site
        self.private, self.public = domain.new_key()
        self.key_id = key_id or domain.key_identifier(self.region, 1, site)

    def key(self, **more):
        return PublishedKey(site_region=self.site, key_id=self.key_id, issuer_region=self.region,
                            public_key=self.public, valid_from=NOW.timestamp() - 86400, **more)

    def licence(self, serial="202600000001", **changes):
        issuer = f"{self.region}SCJGJ"
        fields = {"license_id": domain.license_identifier("YYZZ", issuer, serial), "type_code": "YYZZ",
                  "type_name": "营业执照", "license_no": f"YYZZ{serial}", "issuer_name": "深圳市市场监督管理局",
                  "issuer_code": issuer, "valid_from": "2026-11-27", "valid_to": "", "holder_name": "深圳某某科技有限公司",
                  "holder_code": "91440300MA5FXXXX0X", "holder_code_type": "001", "item_code": "300000000001",
                  "case_no": f"{self.region}KBQY202611270001", "key_id": self.key_id, "status": LicenseStatus.VALID,
                  "issued_at": "2026-11-27T02:00:00+00:00", "document_key": "licenses/x/y.pdf"}
        fields.update(changes)
        fields["signature"] = domain.sign(fields, self.private)
        return fields

    def document(self, fields=None, embedded_key=None):
        return document.render(fields or self.licence(), embedded_key or self.public)


def issue(elicense, case_no="440100XSECS202611270001", region=SITE):
    return elicense.on_opinion(domain.Opinion(
        case_no=case_no, item_code="110000000001", decision=domain.Decision.APPROVE,
        result_type=domain.ResultType.LICENSE, department_code="wsjk", region_code=region,
        license_type_code="CSYXZM", license_type_name="出生医学证明", issuer_name="广州市卫生健康委员会",
        holder=domain.Party(role="newborn", name="李华", id_number=HOLDER)))


# --- this site's own keys are published -------------------------------------------------------


def test_a_new_key_is_published_with_its_site_issuer_region_and_start(elicense, bus):
    key = elicense.signing_key(SITE)
    assert key.key_id == "440100-1" and key.created_at == NOW.timestamp()
    [(payload, headers)] = key_events(bus)
    assert payload == {"site_region": SITE, "key_id": "440100-1", "algorithm": "SIGNING_ALGORITHM_ED25519",
                       "public_key": key.public_key, "valid_from": "2026-11-28T01:00:00Z", "issuer_region": SITE}
    assert headers["event_id"] == "signing_key_published:440100:440100-1"
    assert elicense.signing_key(SITE) == key and len(key_events(bus)) == 1  # made once


def test_a_key_for_a_region_other_than_the_sites_names_the_site_so_no_two_sites_choose_one_id(elicense):
    # a city issuing the licence of a provincial item signs with a key for 440000 that the province
    # itself never makes under that id
    assert elicense.signing_key("440000").key_id == "440000-1@440100"
    assert domain.key_identifier("440000", 1, "440000") == "440000-1"
    assert domain.key_identifier("440106", 7, "440100") == "440106-7@440100"


def test_a_rotation_publishes_the_new_key_and_the_old_ones_retirement(elicense, store, bus):
    first = elicense.signing_key(SITE)
    later = NOW + datetime.timedelta(hours=1)
    elicense.clock = lambda: later
    new = elicense.rotate_key(SITE)
    assert new.key_id == f"440100-{int(later.timestamp() * 1000)}" and new.active
    assert store.key(first.key_id).active is False and store.key(first.key_id).retired_at == later.timestamp()
    [made, retired] = [p for p, _ in key_events(bus)][1:]
    assert made["key_id"] == new.key_id and "valid_until" not in made
    assert retired["key_id"] == first.key_id and retired["valid_until"] == "2026-11-28T02:00:00Z"
    assert key_events(bus)[-1][1]["event_id"] == f"signing_key_published:440100:440100-1:until:{int(later.timestamp() * 1000)}"
    assert [k.key_id for k in elicense.keys(SITE) if k.active] == [new.key_id]


def test_announcing_publishes_every_key_again_under_the_same_ids(elicense, store, bus):
    elicense.signing_key(SITE)
    elicense.signing_key("440106")
    # a key retired before keys were dated: its retirement is when the next key of its region was made
    store.add_key(domain.SigningKey("440106-0", "440106", "p", domain.new_key()[1], active=False, created_at=0.0))
    first = {h["event_id"]: p for p, h in key_events(bus)}
    assert elicense.announce_keys() == 3
    announced = {h["event_id"]: p for p, h in key_events(bus)[len(first):]}
    retired_id = f"signing_key_published:440100:440106-0:until:{int(NOW.timestamp() * 1000)}"
    assert set(announced) == set(first) | {retired_id}
    assert announced[retired_id]["valid_until"] == "2026-11-28T01:00:00Z"
    assert elicense.announce_keys() == 3  # every start: the same ids, absorbed by the inboxes
    assert {h["event_id"] for p, h in key_events(bus)[len(first) + 3:]} == set(announced)


def test_a_key_announced_while_the_broker_is_away_waits_once_and_the_sweep_sends_it(elicense, store, bus):
    key = elicense.signing_key(SITE)
    bus.away = True
    assert elicense.announce_keys() == 1
    assert elicense.announce_keys() == 0  # pending under that id already
    bus.away = False
    store.make_due(key.key_id)
    assert store.sweep() == 1 and store.pending(key.key_id) == []


# --- the key directory --------------------------------------------------------------------------


def test_another_sites_key_goes_into_the_directory_and_is_listed_with_its_site(elicense, store):
    other = OtherSite()
    assert elicense.on_signing_key_published(other.key(), sent_from=OTHER) is DirectoryOutcome.ADDED
    assert store.directory_key(other.key_id) == other.key()
    mine = elicense.signing_key(OTHER)  # this site's own key for that region (a cross-city item)
    listed = elicense.published_keys(OTHER)
    assert [(k.key_id, k.site_region, k.active) for k in listed] == [
        (other.key_id, OTHER, True), (mine.key_id, SITE, True)]
    assert elicense.published_keys("440000") == []
    with pytest.raises(InvalidArgument):
        elicense.published_keys("44")


def test_a_repeat_changes_nothing_and_a_retirement_is_recorded_once_known(elicense, store):
    other = OtherSite()
    elicense.on_signing_key_published(other.key(), sent_from=OTHER)
    assert elicense.on_signing_key_published(other.key(), sent_from=OTHER) is DirectoryOutcome.UNCHANGED
    retired = other.key(valid_until=NOW.timestamp())
    assert elicense.on_signing_key_published(retired, sent_from=OTHER) is DirectoryOutcome.UPDATED
    assert store.directory_key(other.key_id) == retired
    # the older announcement arriving late does not make it active again
    assert elicense.on_signing_key_published(other.key(), sent_from=OTHER) is DirectoryOutcome.UNCHANGED
    assert store.directory_key(other.key_id).active is False


def test_a_known_key_id_with_another_public_key_is_refused_logged_and_never_overwritten(elicense, store, caplog):
    other = OtherSite()
    elicense.on_signing_key_published(other.key(), sent_from=OTHER)
    forged = dataclasses.replace(other.key(), public_key=domain.new_key()[1])
    with caplog.at_level(logging.ERROR, logger="elicense"), pytest.raises(FailedPrecondition, match="never overwritten"):
        elicense.on_signing_key_published(forged, sent_from=OTHER)
    assert store.directory_key(other.key_id) == other.key()
    assert any("refused" in r.getMessage() and other.key_id in r.getMessage() for r in caplog.records)
    # the same id claimed by a third site: refused as well
    elsewhere = dataclasses.replace(other.key(), site_region="440000")
    with pytest.raises(FailedPrecondition):
        elicense.on_signing_key_published(elsewhere, sent_from="440000")
    assert store.directory_key(other.key_id) == other.key()


def test_a_first_announcement_racing_another_copy_merges_with_it(elicense, store):
    other = OtherSite()
    real_add = store.add_directory_key

    def lost_the_race(key, received_at=0.0):  # the other copy's handler inserted it first
        real_add(key, received_at)
        return False
    with mock.patch.object(store, "add_directory_key", side_effect=lost_the_race):
        assert elicense.on_signing_key_published(other.key(), sent_from=OTHER) is DirectoryOutcome.UNCHANGED
    assert store.directory_key(other.key_id) == other.key()


def test_a_directory_that_keeps_changing_underneath_is_an_error_to_retry(elicense, store):
    with mock.patch.object(store, "add_directory_key", return_value=False), pytest.raises(RuntimeError,
                                                                                           match="kept changing"):
        elicense.on_signing_key_published(OtherSite().key(), sent_from=OTHER)


def test_this_sites_own_keys_coming_back_are_ignored(elicense, store):
    key = elicense.signing_key(SITE)
    echoed = domain.published(key, SITE)
    assert elicense.on_signing_key_published(echoed, sent_from=SITE) is None
    # even one that says something else: the site's own keys are its own store's business
    assert elicense.on_signing_key_published(dataclasses.replace(echoed, public_key=domain.new_key()[1]),
                                             sent_from=SITE) is None
    assert store.directory_key(key.key_id) is None and store.key(key.key_id) == key


def test_another_site_claiming_one_of_this_sites_key_ids_is_refused(elicense, store):
    key = elicense.signing_key(SITE)
    claim = PublishedKey(site_region=OTHER, key_id=key.key_id, issuer_region=SITE, public_key=domain.new_key()[1])
    with pytest.raises(FailedPrecondition, match="holds a key of that id itself"):
        elicense.on_signing_key_published(claim, sent_from=OTHER)
    assert store.directory_key(key.key_id) is None


def test_an_event_whose_envelope_and_payload_name_different_sites_is_refused(elicense, store):
    other = OtherSite()
    with pytest.raises(InvalidArgument, match="comes from site 440000"):
        elicense.on_signing_key_published(other.key(), sent_from="440000")
    # the own site's envelope with another site's key: refused too, not stored
    with pytest.raises(InvalidArgument):
        elicense.on_signing_key_published(other.key(), sent_from=SITE)
    assert store.directory_key(other.key_id) is None


@pytest.mark.parametrize("change, message", [
    ({"public_key": "bm90IGEga2V5"}, "public_key"),
    ({"public_key": "%%%"}, "public_key"),
    ({"algorithm": None}, "only Ed25519"),
    ({"issuer_region": "4403"}, "issuer_region"),
    ({"site_region": "abcdef"}, "site_region"),
    ({"key_id": ""}, "key_id"),
    ({"key_id": "x" * 65}, "key_id"),
    ({"key_id": "440300-1 OR 1=1"}, "key_id"),
    ({"valid_from": 2000.0, "valid_until": 1000.0}, "valid_until"),
])
def test_a_key_that_is_no_key_is_refused_saying_why(elicense, store, change, message):
    key = dataclasses.replace(OtherSite().key(), **change)
    with pytest.raises(InvalidArgument, match=message):
        elicense.on_signing_key_published(key, sent_from=key.site_region)
    assert store.directory_key(key.key_id) is None


# --- a licence document of any site verifies at any site ------------------------------------------


def test_a_document_of_another_site_verifies_with_its_key_from_the_directory(elicense):
    other = OtherSite()
    elicense.on_signing_key_published(other.key(), sent_from=OTHER)
    fields = other.licence()
    check = elicense.verify_document(other.document(fields))
    assert check.valid, check.reason
    assert (check.issuing_site, check.status_check) == (OTHER, StatusCheck.AT_ISSUING_SITE)
    assert "known only at its issuing site 440300" in check.reason
    assert "status" not in check.fields and check.fields["license_id"] == fields["license_id"]
    assert "public_key" not in check.fields


def test_a_tampered_document_of_another_site_does_not_verify(elicense):
    other = OtherSite()
    elicense.on_signing_key_published(other.key(), sent_from=OTHER)
    forged = dict(other.licence(), holder_name="王五")  # signature kept
    check = elicense.verify_document(other.document(forged))
    assert not check.valid and "signature" in check.reason
    assert (check.issuing_site, check.status_check) == (OTHER, StatusCheck.NOT_REACHED)


def test_a_document_signed_with_an_unknown_key_says_so_whatever_key_it_carries(elicense):
    stranger = OtherSite(key_id="440300-99@440300")
    check = elicense.verify_document(stranger.document())  # it embeds its own public key: not trusted
    assert not check.valid and "440300-99@440300" in check.reason and "unknown at this site" in check.reason
    assert (check.issuing_site, check.status_check) == ("", StatusCheck.NOT_REACHED)


def test_a_key_signs_only_for_its_issuer_region(elicense):
    other = OtherSite()
    elicense.on_signing_key_published(other.key(), sent_from=OTHER)
    # a licence claiming a Guangzhou issuer, signed with Shenzhen's key
    fields = other.licence(issuer_code="440100SCJGJ", license_id=domain.license_identifier(
        "YYZZ", "440100SCJGJ", "202600000001"))
    check = elicense.verify_document(other.document(fields))
    assert not check.valid and "signs the licences of region 440300" in check.reason


def test_a_document_of_another_site_past_its_validity_does_not_verify(elicense):
    other = OtherSite()
    elicense.on_signing_key_published(other.key(), sent_from=OTHER)
    check = elicense.verify_document(other.document(other.licence(valid_to="2026-11-27")))
    assert not check.valid and "expired on 2026-11-27" in check.reason


def test_a_document_of_this_site_verifies_with_its_status_here(elicense):
    lic = issue(elicense)
    pdf = elicense.blobs.get("results", lic["document_key"])
    check = elicense.verify_document(pdf)
    assert check.valid, check.reason
    assert (check.issuing_site, check.status_check) == (SITE, StatusCheck.CHECKED)
    assert check.fields["status"] is LicenseStatus.VALID
    elicense.revoke(lic["license_id"], "出生信息登记错误", "officer-1")
    check = elicense.verify_document(pdf)  # the same document: revoked here since
    assert not check.valid and "revoked" in check.reason and check.status_check is StatusCheck.CHECKED
    assert check.fields["status"] is LicenseStatus.REVOKED


def test_a_document_signed_with_this_sites_key_but_not_kept_here_does_not_verify(elicense, store):
    key = elicense.signing_key(SITE)
    fields = OtherSite(site=SITE, key_id=key.key_id).licence()
    fields["issuer_code"] = "440100WSJK"
    fields["license_id"] = domain.license_identifier("YYZZ", "440100WSJK", "202600000009")
    fields["signature"] = domain.sign(fields, key.private_key)
    check = elicense.verify_document(document.render(fields, key.public_key))
    assert not check.valid and "keeps no licence" in check.reason
    kept = issue(elicense)
    other = dict(kept, holder_name="王五")
    other["signature"] = domain.sign(other, key.private_key)  # this site's key, another content
    check = elicense.verify_document(document.render(other, key.public_key))
    assert not check.valid and "does not match" in check.reason


def other_pdf():
    from reportlab.pdfgen import canvas
    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.setSubject("an invoice")
    c.drawString(10, 10, "not a licence")
    c.showPage()
    c.save()
    return buf.getvalue()


def licence_pdf_with_keywords(keywords):
    from reportlab.pdfgen import canvas
    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.setSubject(document.MARKER)
    c.setKeywords(keywords)
    c.showPage()
    c.save()
    return buf.getvalue()


@pytest.mark.parametrize("data, message", [
    (b"", "give the licence document"),
    (b"not a pdf at all", "not a readable PDF"),
    (b"%PDF-1.4\n" + b"\x00" * 100, "not a readable PDF"),
    (other_pdf(), "not an onething licence document"),
    (licence_pdf_with_keywords("L1 %%%notbase64"), "cannot be read"),
    (licence_pdf_with_keywords("L1 " + base64.b64encode(b"[1, 2]").decode()), "not the fields of a licence"),
    (licence_pdf_with_keywords("L1 " + base64.b64encode(b'{"key_id": 7}').decode()), "not the fields"),
    (b"%PDF" + b"x" * MAX_DOCUMENT_BYTES, "at most 1048576 bytes"),
])
def test_what_is_no_licence_document_is_an_invalid_argument(elicense, data, message):
    with pytest.raises(InvalidArgument, match=message):
        elicense.verify_document(data)


# --- the api ------------------------------------------------------------------------------------


def test_list_signing_keys_answers_own_and_directory_keys_with_their_site(elicense):
    other = OtherSite()
    elicense.on_signing_key_published(other.key(valid_until=NOW.timestamp()), sent_from=OTHER)
    mine = elicense.signing_key(OTHER)
    keys = ElicenseApi(elicense).ListSigningKeys(pb.ListSigningKeysRequest(region_code=OTHER), None).keys
    assert [(k.key_id, k.site_region, k.region_code, k.active) for k in keys] == [
        (other.key_id, OTHER, OTHER, False), (mine.key_id, SITE, OTHER, True)]
    assert keys[0].valid_until.ToDatetime(tzinfo=datetime.UTC) == NOW and not keys[1].HasField("valid_until")
    assert keys[1].valid_from.ToDatetime(tzinfo=datetime.UTC) == NOW
    assert {k.algorithm for k in keys} == {pb.SIGNING_ALGORITHM_ED25519}
    assert (keys[0].public_key, keys[1].public_key) == (other.public, mine.public_key)


def test_rotate_signing_key_answers_the_key_with_this_site(elicense):
    token = policy.bind(policy.Caller(Actor("op-1", policy.OPERATOR, region="440100"), "", "t",
                                      "/onething.elicense.v1.ElicenseService/RotateSigningKey"))
    try:
        key = ElicenseApi(elicense).RotateSigningKey(pb.RotateSigningKeyRequest(region_code=SITE), None)
    finally:
        policy.unbind(token)
    assert (key.site_region, key.region_code, key.active, key.algorithm) == (SITE, SITE, True,
                                                                             pb.SIGNING_ALGORITHM_ED25519)


def test_verify_license_document_answers_masked_fields_and_how_far_the_status_was_checked(elicense):
    other = OtherSite()
    elicense.on_signing_key_published(other.key(), sent_from=OTHER)
    api = ElicenseApi(elicense)
    answer = api.VerifyLicenseDocument(pb.VerifyLicenseDocumentRequest(document=other.document()), None)
    assert answer.valid and answer.issuing_site == OTHER
    assert answer.status_check == pb.STATUS_CHECK_AT_ISSUING_SITE
    assert answer.license.status == pb.LICENSE_STATUS_UNSPECIFIED  # not claimed here
    assert answer.license.holder_name == "深圳******公司" and answer.license.holder_code != "91440300MA5FXXXX0X"
    assert not (answer.license.signature or answer.license.case_no or answer.license.document_key)
    lic = issue(elicense)
    own = api.VerifyLicenseDocument(pb.VerifyLicenseDocumentRequest(
        document=elicense.blobs.get("results", lic["document_key"])), None)
    assert own.valid and own.status_check == pb.STATUS_CHECK_CHECKED and own.license.status == pb.LICENSE_STATUS_VALID
    unknown = api.VerifyLicenseDocument(pb.VerifyLicenseDocumentRequest(document=OtherSite("440000").document()),
                                        None)
    assert not unknown.valid and unknown.status_check == pb.STATUS_CHECK_NOT_REACHED and unknown.issuing_site == ""


def test_a_document_that_did_not_verify_is_answered_even_when_its_dates_are_none():
    other = OtherSite()
    forged = dict(other.licence(), valid_from="2026-02-30")
    elicense = build_elicense(store=MemoryLicenseStore(), blobs=MemoryBlobs(), audit=MemoryAuditLog("elicense"),
                              clock=lambda: NOW, site=SITE)
    answer = ElicenseApi(elicense).VerifyLicenseDocument(
        pb.VerifyLicenseDocumentRequest(document=other.document(forged)), None)
    assert not answer.valid and not answer.license.HasField("valid_from")


# --- codec ----------------------------------------------------------------------------------------


def test_a_published_key_round_trips_through_its_event():
    key = OtherSite().key(valid_until=NOW.timestamp())
    event_type, message = codec.event_message(key)
    assert event_type == "signing_key_published.440300" and isinstance(message, events_pb2.SigningKeyPublished)
    assert codec.published_key_of(message) == key
    assert codec.published_key_of(events_pb2.SigningKeyPublished(algorithm=42)).algorithm is None
    assert codec.published_key_of(events_pb2.SigningKeyPublished()) == PublishedKey(
        site_region="", key_id="", issuer_region="", public_key="", algorithm=None)
    assert codec.algorithm_of_stored(codec.stored_algorithm(SigningAlgorithm.ED25519)) is SigningAlgorithm.ED25519
    with pytest.raises(ValueError):
        codec.algorithm_of_stored("RSA")


# --- the worker -----------------------------------------------------------------------------------


def test_the_handler_listens_to_elicenses_own_exchange_and_is_retried_on_error():
    (ext,) = getattr(ElicenseWorker.on_signing_key_published, ENTRYPOINT_EXTENSIONS_ATTR)
    assert (ext.source_service, ext.event_type, ext.requeue_on_error) == ("elicense", "signing_key_published.*", True)


def test_the_event_is_decoded_and_handed_over_with_the_site_of_its_envelope():
    handlers = mock.create_autospec(Elicense, instance=True)
    key = OtherSite().key()
    worker = worker_factory(ElicenseWorker, elicense=handlers, site=OTHER)
    worker.on_signing_key_published(to_payload(codec.published_key_message(key)))
    handlers.on_signing_key_published.assert_called_once_with(key, sent_from=OTHER)


def test_the_envelopes_site_is_read_from_the_workers_context():
    container = ServiceContainer(ElicenseWorker, {"AMQP_URI": "memory://"})
    site = dependency(container, "site")
    assert isinstance(site, EventSite)
    entrypoint = get_extension(container, Entrypoint, method_name="on_signing_key_published")
    for data, expected in (({"site": OTHER}, OTHER), ({}, ""), ({"site": 440300}, "")):
        assert site.get_dependency(WorkerContext(container, ElicenseWorker, entrypoint, data=data)) == expected


def worker_over(handlers):
    class Worker(ElicenseWorker):
        elicense = Component(lambda: handlers)
    return Worker


def test_a_refused_key_is_absorbed_and_the_same_event_twice_is_skipped(elicense, store):
    container = ServiceContainer(ElicenseWorker, {"AMQP_URI": "memory://"})
    inbox = dependency(container, "inbox")
    inbox.collection = MemoryInboxCollection()
    entrypoint = get_extension(container, Entrypoint, method_name="on_signing_key_published")
    spy = mock.MagicMock(wraps=elicense)
    other = OtherSite()

    def deliver(key, event_id):
        ctx = WorkerContext(container, ElicenseWorker, entrypoint, data={"event_id": event_id, "site": OTHER})
        worker = worker_factory(ElicenseWorker, elicense=spy, inbox=inbox.get_dependency(ctx), site=OTHER)
        return worker.on_signing_key_published(to_payload(codec.published_key_message(key)))

    deliver(other.key(), "k-1")
    deliver(other.key(), "k-1")  # a redelivery, a copy over another link
    assert spy.on_signing_key_published.call_count == 1 and store.directory_key(other.key_id) == other.key()
    forged = dataclasses.replace(other.key(), public_key=domain.new_key()[1])
    assert deliver(forged, "k-2") is None  # refused: logged and acknowledged, not retried
    assert store.directory_key(other.key_id) == other.key()
    assert set(inbox.collection.docs) == {"elicense.on_signing_key_published:k-1",
                                          "elicense.on_signing_key_published:k-2"}


def test_the_worker_announces_its_keys_once_when_it_starts(store):
    bus = RecordingBus("elicense")
    store.bus = bus
    handlers = build_elicense(store=store, blobs=MemoryBlobs(), audit=MemoryAuditLog("elicense"), site=SITE)
    key = handlers.signing_key(SITE)
    bus.published.clear()
    container = ServiceContainer(worker_over(handlers), {"AMQP_URI": "memory://"})
    dependency(container, "elicense").setup()
    announcement = dependency(container, "key_announcement")
    assert isinstance(announcement, KeyAnnouncement) and not announcement.done
    assert announcement.announce_once() == 1 and announcement.done
    assert [(t, h["event_id"]) for t, _, h in bus.published] == [
        ("signing_key_published.440100", f"signing_key_published:440100:{key.key_id}")]


def test_the_announcement_tries_again_while_the_store_is_away(store, caplog):
    handlers = build_elicense(store=store, blobs=MemoryBlobs(), audit=MemoryAuditLog("elicense"), site=SITE)
    handlers.signing_key(SITE)
    container = ServiceContainer(worker_over(handlers), {"AMQP_URI": "memory://"})
    dependency(container, "elicense").setup()
    announcement = KeyAnnouncement("elicense", first_pause=0.0).bind(container, "key_announcement")

    def away():
        raise ConnectionError("the store is away")
    store.interfere("every_key", away)
    with caplog.at_level(logging.WARNING):
        announcement.announce_until_done()  # returns once announced
    assert announcement.done
    assert any("not announced yet" in r.getMessage() for r in caplog.records)


def test_the_announcement_waits_until_the_workers_handlers_consume():
    """On a fresh broker the worker's own queue must be bound before the keys go out, or the broker
    refuses them as unroutable (they would wait for the sweep)."""
    container = ServiceContainer(ElicenseWorker, {"AMQP_URI": "memory://"})
    announcement = dependency(container, "key_announcement")
    entrypoint = get_extension(container, Entrypoint, method_name="on_signing_key_published")
    with mock.patch.object(type(entrypoint.queue_consumer), "start") as start:
        announcement.wait_until_consuming()
    start.assert_called_once_with()


def test_the_command_verifies_with_a_key_file_and_says_when_it_cannot_read_one(tmp_path, capsys):
    from tools import verify_license
    other = OtherSite()
    pdf, key_file = tmp_path / "licence.pdf", tmp_path / "key.b64"
    pdf.write_bytes(other.document())
    key_file.write_text(other.public + "\n")
    assert verify_license.main([str(pdf), "--public-key-file", str(key_file)]) == 0
    assert verify_license.main([str(pdf), "--public-key-file", str(tmp_path / "missing")]) == 2
    assert "cannot read the key" in capsys.readouterr().err
