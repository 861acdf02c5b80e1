"""Licences of any site verify at this one, on the real local servers (this run's RabbitMQ vhost,
SecantusDB databases and SeaweedFS buckets): elicense's worker run by `nameko run` as the suite runs
it, for site 440100. The test publishes `signing_key_published` on elicense's exchange with the
envelope's `site` set to another region, exactly as a message arrives over a link between sites.
The worker keeps the foreign key in its key directory; a document signed with it verifies over
real gRPC (VerifyLicenseDocument) and with tools/verify_license.py --from-site, a tampered one does
not, one signed with an unknown key says so; the site's own keys, announced when the worker starts
and coming back, change nothing; the same event twice is absorbed by the inbox; a known key id with
another public key is refused and logged."""
import dataclasses
import os
import time
import uuid

import grpc
import pytest

from onething.elicense.v1 import elicense_pb2 as pb
from onething.elicense.v1 import elicense_pb2_grpc as pb_grpc
from services.common.testing import running_worker, wait_for
from services.elicense import codec, document, domain
from services.elicense.domain import LicenseStatus, PublishedKey

pytestmark = pytest.mark.integration
SITE, OTHER = "440100", "440300"
QUEUE = "evt-elicense-signing_key_published.*--elicense.on_signing_key_published"




class Worker:
    """elicense's worker process and its log."""

    def __init__(self, proc, log_path):
        self.proc, self.log_path = proc, log_path

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()


@pytest.fixture(scope="module")
def elicense(test_env):
    from services.elicense.wiring import build_elicense
    return build_elicense(site=SITE)


@pytest.fixture(scope="module")
def own_key(elicense):
    """A key this site holds, kept before the worker starts (no event of it sent yet)."""
    private, public = domain.new_key()
    region = f"4401{uuid.uuid4().int % 90 + 10:02d}"  # a district of the site, its own for this run
    key = domain.SigningKey(domain.key_identifier(region, 1, SITE), region, private, public, created_at=time.time())
    return elicense.store.add_key(key)


@pytest.fixture(scope="module")
def worker(test_env, own_key):
    path = os.path.join(test_env["ONETHING_VAR_DIR"], f"elicense-worker-sites-{uuid.uuid4().hex[:6]}.log")
    with running_worker("services.elicense.worker:ElicenseWorker", path, QUEUE, {"ONETHING_REGION": SITE}) as proc:
        yield Worker(proc, path)


@pytest.fixture(scope="module")
def stub(elicense):
    from services.common.grpc_server import ApiServer
    from services.elicense.api import ElicenseApi
    server = ApiServer(0, [(pb_grpc.add_ElicenseServiceServicer_to_server, ElicenseApi(elicense))],
                       ["onething.elicense.v1.ElicenseService"]).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield pb_grpc.ElicenseServiceStub(channel), f"127.0.0.1:{server.port}"
    finally:
        server.stop(0)


def inbox_has(event_id):
    import mongoengine
    return mongoengine.get_db("elicense")["inbox"].find_one(
        {"_id": f"elicense.on_signing_key_published:{event_id}"}) is not None


def arrive(key, site, event_id=None):
    """`key`'s event as it arrives over a link from `site`: on elicense's exchange, its envelope
    naming the producing site."""
    from services.common.bus import Bus
    from services.common.events import to_payload
    event_id = event_id or key.event_id
    Bus("elicense").publish_raw(codec.key_routing_key(site), to_payload(codec.published_key_message(key)),
                                {"event_id": event_id, "site": site, "producer": "elicense", "case_no": ""})
    return event_id


class OtherSite:
    """Another site (Shenzhen) with its own key, signing its own licences."""

    def __init__(self, site=OTHER):
        self.site = site
        self.private, self.public = domain.new_key()
        self.key_id = domain.key_identifier(site, f"{int(time.time() * 1000)}{uuid.uuid4().hex[:4]}", site)

    def key(self, **more):
        return PublishedKey(site_region=self.site, key_id=self.key_id, issuer_region=self.site,
                            public_key=self.public, valid_from=time.time() - 60, **more)

    def document(self, **changes):
        issuer = f"{self.site}SCJGJ"
        serial = f"2026{uuid.uuid4().int % 10**8:08d}"
        fields = {"license_id": domain.license_identifier("YYZZ", issuer, serial), "type_code": "YYZZ",
                  "type_name": "营业执照", "license_no": f"YYZZ{serial}", "issuer_name": "深圳市市场监督管理局",
                  "issuer_code": issuer, "valid_from": "2026-01-01", "valid_to": "", "holder_name": "深圳某某科技有限公司",
                  "holder_code": "91440300MA5FXXXX0X", "holder_code_type": "001", "item_code": "300000000001",
                  "case_no": f"{self.site}QYQY202611270001", "key_id": self.key_id, "status": LicenseStatus.VALID,
                  "issued_at": "2026-11-27T02:00:00+00:00", "document_key": "licenses/x/y.pdf"}
        signed = dict(fields)
        signed["signature"] = domain.sign(signed, self.private)
        signed.update(changes)  # a change after signing: tampered
        return document.render(signed, self.public)


@pytest.fixture(scope="module")
def shenzhen(worker, elicense):
    """Shenzhen's key, arrived over the link and kept in the key directory."""
    other = OtherSite()
    arrive(other.key(), OTHER)
    wait_for(lambda: elicense.store.directory_key(other.key_id), "the key directory to keep Shenzhen's key")
    return other


def test_the_worker_announces_the_sites_own_keys_when_it_starts_and_ignores_them_coming_back(worker, elicense,
                                                                                             own_key):
    event_id = domain.published(own_key, SITE).event_id
    wait_for(lambda: inbox_has(event_id), "the site's own key to come back to its worker")
    assert elicense.store.directory_key(own_key.key_id) is None
    assert elicense.store.key(own_key.key_id) == own_key
    assert elicense.store.pending(own_key.key_id) == []  # published, confirmed, removed


def test_a_foreign_sites_key_is_kept_and_listed_with_its_site(shenzhen, elicense, stub):
    assert elicense.store.directory_key(shenzhen.key_id) == dataclasses.replace(
        shenzhen.key(), valid_from=elicense.store.directory_key(shenzhen.key_id).valid_from)
    keys = stub[0].ListSigningKeys(pb.ListSigningKeysRequest(region_code=OTHER), timeout=10).keys
    [listed] = [k for k in keys if k.key_id == shenzhen.key_id]
    assert (listed.site_region, listed.region_code, listed.public_key, listed.active) == (
        OTHER, OTHER, shenzhen.public, True)


def test_a_document_signed_with_the_foreign_key_verifies_here_and_a_tampered_one_does_not(shenzhen, stub):
    call = stub[0].VerifyLicenseDocument
    good = call(pb.VerifyLicenseDocumentRequest(document=shenzhen.document()), timeout=10)
    assert good.valid, good.reason
    assert (good.issuing_site, good.status_check) == (OTHER, pb.STATUS_CHECK_AT_ISSUING_SITE)
    assert "known only at its issuing site 440300" in good.reason
    assert good.license.holder_name == "深圳******公司" and not good.license.signature
    tampered = call(pb.VerifyLicenseDocumentRequest(document=shenzhen.document(holder_name="王五")), timeout=10)
    assert not tampered.valid and "signature" in tampered.reason
    assert tampered.status_check == pb.STATUS_CHECK_NOT_REACHED


def test_a_document_signed_with_an_unknown_key_says_so(worker, stub):
    stranger = OtherSite("440000")
    answer = stub[0].VerifyLicenseDocument(pb.VerifyLicenseDocumentRequest(document=stranger.document()), timeout=10)
    assert not answer.valid and f"({stranger.key_id}) is unknown at this site" in answer.reason
    assert answer.issuing_site == ""


def test_what_is_no_licence_document_is_invalid_argument_over_grpc(stub):
    for data, words in ((b"", "give the licence document"), (b"%PDF-1.4 junk", "not a readable PDF"),
                        (b"x" * (1024 * 1024 + 1), "at most 1048576 bytes")):
        with pytest.raises(grpc.RpcError) as err:
            stub[0].VerifyLicenseDocument(pb.VerifyLicenseDocumentRequest(document=data), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.value.details()


def test_the_command_fetches_the_key_from_the_site(shenzhen, stub, tmp_path, capsys):
    from tools import verify_license
    good, tampered, unknown = tmp_path / "good.pdf", tmp_path / "tampered.pdf", tmp_path / "unknown.pdf"
    good.write_bytes(shenzhen.document())
    tampered.write_bytes(shenzhen.document(holder_name="王五"))
    unknown.write_bytes(OtherSite().document())
    assert verify_license.main([str(good), "--from-site", stub[1]]) == 0
    assert f"key {shenzhen.key_id} of site 440300" in capsys.readouterr().out
    assert verify_license.main([str(tampered), "--from-site", stub[1]]) == 1
    assert verify_license.main([str(unknown), "--from-site", stub[1]]) == 1
    assert "lists no signing key" in capsys.readouterr().out
    assert verify_license.main([str(good), "--from-site", "127.0.0.1:1"]) == 2  # nobody there


def test_the_sites_own_key_echoed_back_changes_nothing(worker, elicense, own_key):
    echoed = dataclasses.replace(domain.published(own_key, SITE), public_key=domain.new_key()[1])
    event_id = arrive(echoed, SITE, event_id=f"echo-{uuid.uuid4().hex}")
    wait_for(lambda: inbox_has(event_id), "the echoed key to be handled")
    assert elicense.store.directory_key(own_key.key_id) is None
    assert elicense.store.key(own_key.key_id) == own_key


def test_the_same_event_twice_is_absorbed_and_another_key_under_a_known_id_is_refused(shenzhen, worker, elicense):
    kept = elicense.store.directory_key(shenzhen.key_id)
    again = arrive(shenzhen.key(), OTHER)  # the same event id, a second time (a redelivery, a second link)
    wait_for(lambda: f"event {again} already processed: skipped" in worker.log(),
          "the worker to skip the repeated event")
    forged = dataclasses.replace(shenzhen.key(), public_key=domain.new_key()[1])
    forged_id = arrive(forged, OTHER, event_id=f"forged-{uuid.uuid4().hex}")
    wait_for(lambda: inbox_has(forged_id), "the forged key to be handled")
    assert f"signing key {shenzhen.key_id} published by site 440300 refused" in worker.log()
    assert elicense.store.directory_key(shenzhen.key_id) == kept
