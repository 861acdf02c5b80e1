"""The access policy: one table names who may call every RPC of every service (deny by default), and
the api server's interceptor enforces it before any handler runs, over real gRPC on an ephemeral
port: no or bad token UNAUTHENTICATED, the wrong role PERMISSION_DENIED, nothing reaching the
handler; the verified caller is what the handler sees."""
import base64
import datetime
import importlib
import json
import threading

import grpc
import pytest

from onething.evaluation.v1 import evaluation_pb2 as E
from onething.evaluation.v1 import evaluation_pb2_grpc as EG
from services.common import auth, policy
from services.common.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from services.common.grpc_server import ApiServer

SERVICES = ("catalog", "intake", "joint_review", "elicense", "delivery", "evaluation")
ROLES = set(auth.ROLES) | {policy.ANYONE}


def descriptor_methods():
    for service in SERVICES:
        module = importlib.import_module(f"onething.{service}.v1.{service}_pb2")
        for svc in module.DESCRIPTOR.services_by_name.values():
            for method in svc.methods:
                yield svc.full_name, method.name


def test_every_rpc_of_every_service_has_a_policy_deny_by_default():
    methods = list(descriptor_methods())
    assert len(methods) > 40
    missing = [f"{s}/{m}" for s, m in methods if policy.policy_for(f"/{s}/{m}") is None]
    assert not missing, f"add these to services/common/policy.py POLICIES: {missing}"


def test_the_table_names_only_real_methods_roles_and_rules():
    real = set(descriptor_methods())
    stale = [(s, m) for s, ms in policy.POLICIES.items() for m in ms if (s, m) not in real]
    assert not stale, stale
    for _service, method, roles, rule, _ in policy.rows():
        assert roles and set(roles) <= ROLES, (method, roles)
        assert rule in policy.RULES, (method, rule)
        assert (policy.ANYONE in roles) == (rule in ("public", "qr_token")), method  # public means no token
    assert policy.policy_for("/onething.intake.v1.IntakeService/NoSuchMethod") is None
    assert policy.policy_for("/grpc.health.v1.Health/Check") is None  # health/reflection bypass the gate


def test_a_method_without_a_policy_is_refused():
    with pytest.raises(PermissionDenied, match="no access policy"):
        policy.authorize("/onething.x.v1.X/Y", ())


# --- over real gRPC -------------------------------------------------------------------------------

class Recording(EG.EvaluationServiceServicer):
    def __init__(self):
        self.seen = []
        self.lock = threading.Lock()

    def _saw(self, name):
        caller = policy.current()
        with self.lock:
            self.seen.append((name, caller.role, caller.sub, caller.on_behalf_of))
        return caller

    def SubmitEvaluation(self, request, context):
        caller = self._saw("submit")
        return E.Evaluation(case_no=request.case_no, applicant_id=caller.require_applicant())

    def GetStatistics(self, request, context):
        self._saw("stats")
        return E.GetStatisticsResponse()

    def RecordCallback(self, request, context):
        caller = self._saw("callback")
        return E.Rectification(case_no=request.case_no, closed_by=caller.sub)


PUBLIC_STATS = {"onething.evaluation.v1.EvaluationService": dict(
    policy.POLICIES["onething.evaluation.v1.EvaluationService"], GetStatistics=policy.Policy((policy.ANYONE,), "public"))}


@pytest.fixture(scope="module")
def servers(local_idp):
    servicer = Recording()
    name = ["onething.evaluation.v1.EvaluationService"]
    real = ApiServer(0, [(EG.add_EvaluationServiceServicer_to_server, servicer)], name).start()
    public = ApiServer(0, [(EG.add_EvaluationServiceServicer_to_server, servicer)], name,
                       policies=PUBLIC_STATS).start()
    yield servicer, real, public
    real.stop(0)
    public.stop(0)


@pytest.fixture
def stub(servers):
    servers[0].seen.clear()
    with grpc.insecure_channel(f"127.0.0.1:{servers[1].port}") as ch:
        yield EG.EvaluationServiceStub(ch)


def _code(call, request, metadata):
    try:
        call(request, metadata=metadata, timeout=5)
    except grpc.RpcError as err:
        return err.code(), err.details()
    return grpc.StatusCode.OK, ""


def _other_key_token(sub, role, **claims):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    other = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption())
    return auth.mint(sub, role, private_key_pem=other, **claims)


def _alg_none(sub, role):
    now = int(datetime.datetime.now(datetime.UTC).timestamp())
    header = {"alg": "none", "typ": "JWT"}
    body = {"sub": sub, "role": role, "iss": "onething-idp", "aud": "onething-api", "iat": now, "exp": now + 600}

    def enc(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    return f"{enc(header)}.{enc(body)}."


def _resigned(local_idp, **changes):
    """A token with claims changed, signed properly with the trusted key (wrong audience, too long …)."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(open(local_idp.private, "rb").read(), None)
    now = datetime.datetime.now(datetime.UTC)
    claims = {"sub": "440106199001011235", "role": "applicant", "iss": "onething-idp", "aud": "onething-api",
              "iat": now, "exp": now + datetime.timedelta(hours=1)}
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="EdDSA",
                      headers={"kid": auth.key_id(key.public_key())})


def test_bad_tokens_are_unauthenticated_and_reach_nothing(stub, servers, local_idp):
    me = "440106199001011235"
    now = datetime.datetime.now(datetime.UTC)
    bad = {
        "none": (),
        "not bearer": (("authorization", "Basic abc"),),
        "garbage": (("authorization", "Bearer not.a.token"),),
        "expired": local_idp.metadata(me, "applicant", hours=1, issued_at=now - datetime.timedelta(hours=3)),
        "forged (another key)": (("authorization", "Bearer " + _other_key_token(me, "applicant")),),
        "alg none": (("authorization", "Bearer " + _alg_none(me, "applicant")),),
        "wrong audience": (("authorization", "Bearer " + _resigned(local_idp, aud="someone-else")),),
        "no audience": (("authorization", "Bearer " + _resigned(local_idp, aud=None)),),
        "no iat": (("authorization", "Bearer " + _resigned(local_idp, iat=None)),),
        "lives too long": (("authorization", "Bearer " + _resigned(local_idp, exp=now + datetime.timedelta(days=30))),),
        "issued in the future": (("authorization", "Bearer " + _resigned(
            local_idp, iat=now + datetime.timedelta(hours=1), exp=now + datetime.timedelta(hours=2))),),
        "unknown role": (("authorization", "Bearer " + _resigned(local_idp, role="admin")),),
        "officer without department": (("authorization", "Bearer " + _resigned(
            local_idp, role="officer", region="440100")),),
        "clerk without region": (("authorization", "Bearer " + _resigned(local_idp, role="clerk")),),
    }
    for what, metadata in bad.items():
        code, details = _code(stub.SubmitEvaluation, E.SubmitEvaluationRequest(case_no="C1"), metadata)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (what, code, details)
        assert "not.a.token" not in details
    assert servers[0].seen == []


def test_a_valid_token_without_the_role_is_permission_denied(stub, servers, local_idp):
    for metadata in (local_idp.metadata("officer-1", "officer", "wsjk", "440100"),
                     local_idp.metadata("sre-1", "sre"), local_idp.metadata("service:intake", "service")):
        code, details = _code(stub.SubmitEvaluation, E.SubmitEvaluationRequest(case_no="C1"), metadata)
        assert code == grpc.StatusCode.PERMISSION_DENIED and "only applicants and window clerks" in details
    code, _ = _code(stub.RecordCallback, E.RecordCallbackRequest(case_no="C1"),
                    local_idp.metadata("440106199001011235", "applicant"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert servers[0].seen == []


def test_the_handler_sees_the_verified_caller(stub, servers, local_idp):
    me = "440106199001011235"
    got = stub.SubmitEvaluation(E.SubmitEvaluationRequest(case_no="C1"),
                                metadata=local_idp.metadata(me, "applicant"), timeout=5)
    assert got.applicant_id == me
    rect = stub.RecordCallback(E.RecordCallbackRequest(case_no="C1"),
                               metadata=local_idp.metadata("officer-7", "officer", "wsjk", "440100"), timeout=5)
    assert rect.closed_by == "officer-7"
    assert servers[0].seen == [("submit", "applicant", me, ""), ("callback", "officer", "officer-7", "")]


def test_on_behalf_of_is_a_clerks_and_must_be_an_id_number(stub, servers, local_idp):
    me = "440106199001011235"
    got = stub.SubmitEvaluation(E.SubmitEvaluationRequest(case_no="C1"), timeout=5,
                                metadata=local_idp.metadata("clerk-5", "clerk", region="440100", on_behalf_of=me))
    assert got.applicant_id == me and servers[0].seen == [("submit", "clerk", "clerk-5", me)]
    code, _ = _code(stub.SubmitEvaluation, E.SubmitEvaluationRequest(case_no="C1"),
                    local_idp.metadata("clerk-5", "clerk", region="440100"))
    assert code == grpc.StatusCode.PERMISSION_DENIED  # a clerk acts for someone present
    code, _ = _code(stub.SubmitEvaluation, E.SubmitEvaluationRequest(case_no="C1"),
                    local_idp.metadata("clerk-5", "clerk", region="440100", on_behalf_of="440106199001011230"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # a wrong check digit
    code, _ = _code(stub.SubmitEvaluation, E.SubmitEvaluationRequest(case_no="C1"),
                    local_idp.metadata(me, "applicant", on_behalf_of="11010519491231002X"))
    assert code == grpc.StatusCode.PERMISSION_DENIED  # only clerks act for others


def test_the_real_table_refuses_staff_rpcs_without_a_token(stub, servers):
    code, _ = _code(stub.GetStatistics, E.GetStatisticsRequest(), ())
    assert code == grpc.StatusCode.UNAUTHENTICATED and servers[0].seen == []


def test_a_public_rpc_needs_no_token_but_a_token_sent_must_be_valid(servers, local_idp):
    servicer, _, public = servers
    servicer.seen.clear()
    with grpc.insecure_channel(f"127.0.0.1:{public.port}") as ch:
        stub = EG.EvaluationServiceStub(ch)
        assert _code(stub.GetStatistics, E.GetStatisticsRequest(), ())[0] == grpc.StatusCode.OK
        assert _code(stub.GetStatistics, E.GetStatisticsRequest(),
                     (("authorization", "Bearer " + _alg_none("x", "sre")),))[0] == grpc.StatusCode.UNAUTHENTICATED
        assert _code(stub.GetStatistics, E.GetStatisticsRequest(),
                     local_idp.metadata("440106199001011235", "applicant"))[0] == grpc.StatusCode.OK
    assert servicer.seen == [("stats", policy.ANYONE, "", ""), ("stats", "applicant", "440106199001011235", "")]


# --- the caller's helpers -------------------------------------------------------------------------

def _caller(role, sub="x", department="", region="", on_behalf_of=""):
    return policy.Caller(auth.Actor(sub, role, department, region), on_behalf_of, "t", "/m")


def test_region_authority_is_by_the_gbt2260_hierarchy_not_a_prefix():
    province, city, district = (_caller("operator", region=r) for r in ("440000", "440100", "440106"))
    assert province.within("440100") and province.within("440106") and province.within("440000")
    assert city.within("440100") and city.within("440106") and not city.within("440300")
    assert not city.within("440000") and not district.within("440100") and district.within("440106")
    assert not _caller("operator", region="44").within("440100")  # never a string prefix
    assert not _caller("operator", region="4401").within("440100")
    assert not city.within("44010") and not city.within("")


def test_ownership_of_applicants_and_clerks():
    me, other = "440106199001011235", "11010519491231002X"
    applicant = _caller("applicant", me)
    assert applicant.owns(me) and not applicant.owns(other) and not applicant.owns("")
    clerk = _caller("clerk", "clerk-5", region="440100", on_behalf_of=me)
    assert clerk.owns(me, "440106") and not clerk.owns(me, "440300") and not clerk.owns(other, "440100")
    assert not _caller("clerk", "clerk-5", region="440100").owns(me, "440100")
    assert not _caller("officer", "o", "gaj", "440100").owns(me, "440100")
    assert _caller("service", "service:intake").owns(other)
    with pytest.raises(NotFound, match="there is no case C1"):
        applicant.check_owner(other, "440100", "there is no case C1")
    with pytest.raises(PermissionDenied, match="x-on-behalf-of"):
        _caller("clerk", "clerk-5", region="440100").check_owner(me, "440100", "there is no case C1")


def test_labels_and_what_events_carry_hold_no_identity_number():
    me = "440106199001011235"
    clerk = _caller("clerk", "clerk-5", region="440100", on_behalf_of=me)
    assert clerk.label() == "clerk clerk-5 on behalf of the applicant 4401**********1235"
    assert clerk.acted_by() == "clerk:clerk-5" and _caller("applicant", me).acted_by() == "applicant"
    assert _caller("service", "service:intake").acted_by() == "service:intake"
    assert clerk.audit_actor().on_behalf_of == me and clerk.audit_actor().auth == "token"
    assert clerk.forward() == (("authorization", "Bearer t"), ("x-on-behalf-of", me))


def test_site_operator_is_the_sites_region_or_above():
    policy.site_operator(_caller("operator", region="440100"))
    policy.site_operator(_caller("operator", region="440000"))
    for caller in (_caller("operator", region="440300"), _caller("operator", region="440106"),
                   _caller("officer", "o", "gaj", "440100")):
        with pytest.raises(PermissionDenied):
            policy.site_operator(caller)


def test_no_current_caller_outside_a_call():
    with pytest.raises(Unauthenticated):
        policy.current()


def test_bad_on_behalf_header_twice():
    with pytest.raises(InvalidArgument):
        policy.authorize("/onething.evaluation.v1.EvaluationService/SubmitEvaluation",
                         (("x-on-behalf-of", "a"), ("x-on-behalf-of", "b")))


def test_the_readme_table_says_what_the_registry_says():
    import os
    import re
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "README.md"), encoding="utf-8").read()
    section = readme[readme.index("| service | RPC | roles | rule |"):]
    section = section[:section.index("\n\n")]
    documented = {}
    for line in section.splitlines()[2:]:
        service, rpcs, roles, rule = [c.strip() for c in line.strip("|").split("|")]
        for rpc in re.split(r",\s*", rpcs):
            documented[(service, rpc)] = (tuple(r.strip() for r in roles.split(",")), rule.strip("`"))
    actual = {(svc.split(".")[1], method): (p.roles, p.rule)
              for svc, methods in policy.POLICIES.items() for method, p in methods.items()}
    assert documented == actual
