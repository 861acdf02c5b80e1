"""Who may call what: the access policy of every RPC of every service, in this one table.

Each RPC names the roles that may call it (applicant, clerk, officer, operator, sre, service, or
ANYONE for public calls) and the rule that decides which records the caller may act on. The api
server's interceptor (services/common/grpc_server.py) enforces the first half for every call before
the handler runs:
- an RPC without a policy here is refused (deny by default; a unit test enumerates every method of
  every service descriptor and fails when one is missing);
- no token, or a token that does not verify (expired, forged, alg none, unknown key, wrong
  audience …) is UNAUTHENTICATED; a public RPC may be called without a token, but a token sent must
  be valid;
- a valid token whose role the RPC does not name is PERMISSION_DENIED;
- `x-on-behalf-of` (the applicant present at the window) is taken from window clerks only.
Refused calls change nothing. The verified caller (`Caller`) is then available to the api layer
(`current()`); the api applies the RPC's rule with the record in hand, using the helpers below, so
handlers get the actor from the token, never from a request field.

The rules are listed in RULES; `outside` is the status a caller with the right role gets for a record
that is not theirs: NOT_FOUND where existence must not leak (someone else's case answers exactly as a
case that does not exist), PERMISSION_DENIED where staff act outside their department or region."""
import contextvars
from dataclasses import dataclass
from typing import Any

from services.common import auth
from services.common.config import region_within, settings
from services.common.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated

ANYONE = "anyone"
APPLICANT, CLERK, OFFICER, OPERATOR, SRE, SERVICE = auth.ROLES
ON_BEHALF_OF = "x-on-behalf-of"
NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION = "NOT_FOUND", "PERMISSION_DENIED", "FAILED_PRECONDITION"


@dataclass(frozen=True)
class Rule:
    name: str
    text: str
    outside: str = ""  # the code for a record that is not the caller's ("" : the rule has no records)


RULES = {r.name: r for r in (
    Rule("public", "anyone, with or without a token (a token sent must be valid)"),
    Rule("role", "the role is enough"),
    Rule("own_records", "applicant: in their own name (the token's subject; a request naming another "
                        "applicant is PERMISSION_DENIED); clerk: in the name of the applicant present "
                        "(x-on-behalf-of), for a region within the clerk's", PERMISSION_DENIED),
    Rule("own_case", "applicant: their own case; clerk: a case of the applicant present (x-on-behalf-of) in "
                     "the clerk's region; anything else answers as a case that does not exist", NOT_FOUND),
    Rule("case_or_task", "applicant and clerk as own_case; officer: their department has a task in the "
                         "case, in their region", NOT_FOUND),
    Rule("department_task", "officer: department and region from the token; another department's task or "
                            "another region's case is refused", PERMISSION_DENIED),
    Rule("licence_reader", "the holder; the applicant of the licence's case (and a clerk on their behalf); an "
                           "officer whose department holds a task that needs the licence (a material it "
                           "stands in for, or a prerequisite's result); a service", NOT_FOUND),
    Rule("licence_list", "applicant: their own licences (holder_code) or those of their own case (case_no); "
                         "clerk on behalf of the applicant present; a service: any (减材料)", NOT_FOUND),
    Rule("qr_token", "anyone holding the licence's identifier and the token of its QR code; answers with "
                     "masked fields only; a wrong token answers as an unknown licence", NOT_FOUND),
    Rule("issuer", "officer of the issuing department in the issuer's region; operator whose region "
                   "contains the issuer's (GB/T 2260 hierarchy)", PERMISSION_DENIED),
    Rule("operator_region", "operator whose region contains the region named (GB/T 2260 hierarchy)",
         PERMISSION_DENIED),
    Rule("site_operator", "operator whose region contains the site's region (ONETHING_REGION)",
         PERMISSION_DENIED),
    Rule("delivery_reader", "applicant: their own delivery, with its pickup code and download links; clerk: "
                            "deliveries of their region, without the code and the links", NOT_FOUND),
    Rule("clerk_region", "clerk whose region contains the delivery's", PERMISSION_DENIED),
    Rule("own_rating", "the case's applicant (or a clerk on their behalf); anyone else is answered as for a "
                       "case not yet delivered, so existence does not leak", FAILED_PRECONDITION),
    Rule("rating_reader", "applicant: their own rating (clerk on their behalf); officer of the rated "
                          "department in their region; operator of the region", NOT_FOUND),
    Rule("department_concerned", "officer of the department the 差评 is counted for, in a region within theirs",
         PERMISSION_DENIED),
    Rule("department_scope", "officer: their own department and region (a request naming another is refused); "
                             "operator: their region and below", PERMISSION_DENIED),
)}


@dataclass(frozen=True)
class Policy:
    roles: tuple
    rule: str
    note: str = ""

    @property
    def public(self):
        return ANYONE in self.roles

    @property
    def outside(self):
        return RULES[self.rule].outside


def _p(roles, rule, note=""):
    assert rule in RULES, rule
    return Policy(tuple(roles), rule, note)


_PUBLIC = _p([ANYONE], "public")

# service full name -> method -> Policy. Every RPC of every service is here (deny by default).
POLICIES = {
    "onething.catalog.v1.CatalogService": {
        "GetPackage": _PUBLIC, "ListPackages": _PUBLIC, "GetNotice": _PUBLIC, "GetSavings": _PUBLIC,
        "CheckForm": _PUBLIC,
        "ListVersions": _p([OPERATOR, SRE], "role", "drafts are not public"),
        "PublishPackage": _p([OPERATOR], "site_operator"),
        "RetirePackage": _p([OPERATOR], "site_operator"),
        "ReloadCatalog": _p([OPERATOR], "site_operator"),
    },
    "onething.intake.v1.IntakeService": {
        "UploadMaterial": _p([APPLICANT, CLERK], "own_records", "the upload belongs to the token's applicant"),
        "SubmitCase": _p([APPLICANT, CLERK], "own_records", "applicant.id_number must be the applicant's own "
                                                            "(empty: taken from the token)"),
        "GetCase": _p([APPLICANT, CLERK, OFFICER], "case_or_task",
                      "officer: their department (the token's, in the token's region) was given a task in the case"),
        "SupplementCase": _p([APPLICANT, CLERK], "own_case"),
        "WithdrawCase": _p([APPLICANT, CLERK], "own_case"),
        "WatchCase": _p([APPLICANT, CLERK], "own_case"),
        "ListCases": _p([APPLICANT, CLERK], "own_records", "the applicant's own cases (a clerk: of their region)"),
        "DownloadMaterial": _p([APPLICANT, CLERK, OFFICER], "case_or_task",
                               "as GetCase; a material the case does not have: NOT_FOUND"),
    },
    "onething.joint_review.v1.JointReviewService": {
        "GetSession": _p([APPLICANT, CLERK, OFFICER], "case_or_task"),
        "ListTasks": _p([OFFICER], "department_task"),
        "RecordOpinion": _p([OFFICER], "department_task"),
        "ClaimTask": _p([OFFICER], "department_task"),
        "ScheduleInspection": _p([OFFICER], "department_task"),
        "RecordFindings": _p([OFFICER], "department_task"),
        "SuspendClock": _p([OFFICER], "department_task"),
        "ResumeClock": _p([OFFICER], "department_task"),
    },
    "onething.elicense.v1.ElicenseService": {
        "GetLicense": _p([APPLICANT, CLERK, OFFICER, SERVICE], "licence_reader"),
        "ListLicenses": _p([APPLICANT, CLERK, SERVICE], "licence_list",
                           "holder_code of someone else: PERMISSION_DENIED; someone else's case: NOT_FOUND"),
        "VerifyLicense": _p([ANYONE], "qr_token"),
        "VerifyLicenseDocument": _p([ANYONE], "qr_token", "the document carries the identifier and the QR code's "
                                                          "token; a licence of any site, masked fields only"),
        "RevokeLicense": _p([OFFICER, OPERATOR], "issuer"),
        "ListSigningKeys": _PUBLIC,
        "RotateSigningKey": _p([OPERATOR], "operator_region"),
    },
    "onething.delivery.v1.DeliveryService": {
        "GetDelivery": _p([APPLICANT, CLERK], "delivery_reader"),
        "ConfirmPickup": _p([CLERK], "clerk_region", "locked after ONETHING_PICKUP_MAX_ATTEMPTS wrong codes"),
        "RecordDispatch": _p([CLERK], "clerk_region"),
        "RecordDelivered": _p([CLERK, SERVICE], "clerk_region", "a service: the carrier's integration"),
        "RecordUndeliverable": _p([CLERK], "clerk_region"),
        "Redispatch": _p([CLERK], "clerk_region"),
    },
    "onething.evaluation.v1.EvaluationService": {
        "SubmitEvaluation": _p([APPLICANT, CLERK], "own_rating"),
        "GetEvaluation": _p([APPLICANT, CLERK, OFFICER, OPERATOR], "rating_reader"),
        "RecordCallback": _p([OFFICER], "department_concerned"),
        "CloseRectification": _p([OFFICER], "department_concerned"),
        "ListBadReviews": _p([OFFICER, OPERATOR], "department_scope"),
        "GetStatistics": _p([OFFICER, OPERATOR, SRE], "role", "aggregates only"),
    },
}

_PLURAL = {APPLICANT: "applicants", CLERK: "window clerks", OFFICER: "department officers",
           OPERATOR: "operators", SRE: "SREs", SERVICE: "the platform's services"}


def split_method(full_method):
    """'/onething.intake.v1.IntakeService/GetCase' -> ('onething.intake.v1.IntakeService', 'GetCase')."""
    service, _, method = (full_method or "").lstrip("/").rpartition("/")
    return service, method


def policy_for(full_method, policies=None):
    service, method = split_method(full_method)
    return (POLICIES if policies is None else policies).get(service, {}).get(method)


def open_to_anyone(service_names):
    """A table where every method of the named services is public: for tests of the server's other
    gates (limits, streams) with servicers that check nothing themselves. Never used by an api."""
    class _Anyone(dict):
        def get(self, key, default=None):
            return _PUBLIC
    return {name: _Anyone() for name in service_names}


# --- the verified caller --------------------------------------------------------------------------

@dataclass(frozen=True)
class Caller:
    """Who is calling, as the interceptor verified it. `actor` is None for an anonymous call of a
    public RPC; `on_behalf_of` is the applicant present at a clerk's window."""
    actor: Any = None
    on_behalf_of: str = ""
    token: str = ""
    method: str = ""

    @property
    def role(self):
        return self.actor.role if self.actor is not None else ANYONE

    @property
    def sub(self):
        return self.actor.sub if self.actor is not None else ""

    @property
    def region(self):
        return self.actor.region if self.actor is not None else ""

    @property
    def department(self):
        return self.actor.department if self.actor is not None else ""

    def is_(self, *roles):
        return self.role in roles

    # the applicant whose records the call is about ------------------------------------------------
    @property
    def applicant_id(self):
        """The applicant acted for: the applicant themselves, or the one present at a clerk's window
        ("" for anyone else)."""
        if self.role == APPLICANT:
            return self.sub
        if self.role == CLERK:
            return self.on_behalf_of
        return ""

    def require_applicant(self):
        """The applicant acted for; a clerk must name the applicant present (PERMISSION_DENIED)."""
        if self.role == CLERK and not self.on_behalf_of:
            raise PermissionDenied("a window clerk acts for the applicant present: name them in the "
                                   f"'{ON_BEHALF_OF}' metadata (citizen ID number or credit code)",
                                   zh="窗口工作人员须代申请人办理：请在请求元数据中注明申请人身份。")
        if self.role not in (APPLICANT, CLERK):
            raise PermissionDenied(f"only applicants and window clerks act for an applicant, not a {self.role}")
        return self.applicant_id

    def within(self, region_code):
        """The record's region lies within the caller's (GB/T 2260 hierarchy, not a string prefix)."""
        return bool(self.region) and region_within(region_code or "", self.region)

    def owns(self, applicant_id, region_code=""):
        """An applicant's own record; for a clerk, one of the applicant present, in the clerk's region;
        a service may read any."""
        if self.role == SERVICE:
            return True
        if not applicant_id:
            return False
        if self.role == APPLICANT:
            return applicant_id == self.sub
        if self.role == CLERK:
            return bool(self.on_behalf_of) and applicant_id == self.on_behalf_of and self.within(region_code)
        return False

    def check_owner(self, applicant_id, region_code, not_found):
        """own_case: the record is the caller's, else NotFound(not_found) (the very message a record that
        does not exist gets, so existence does not leak). A clerk without x-on-behalf-of is refused."""
        if self.role == CLERK:
            self.require_applicant()
        if not self.owns(applicant_id, region_code):
            raise NotFound(not_found)

    # how the caller is recorded -----------------------------------------------------------------
    def audit_actor(self):
        """The actor of the audit log (services.common.audit), with the applicant a clerk acts for."""
        if self.actor is None:
            return None
        from services.common import audit
        return audit.from_auth(self.actor, self.on_behalf_of)

    def label(self):
        """For histories: "the applicant", "clerk clerk-5 on behalf of the applicant 4401**********1234"."""
        from services.common.privacy import mask_id
        if self.role == APPLICANT:
            return "the applicant"
        if self.role == CLERK:
            who = f"clerk {self.sub}"
            return f"{who} on behalf of the applicant {mask_id(self.on_behalf_of)}" if self.on_behalf_of else who
        if self.actor is None:
            return "anonymous"
        return f"{self.role} {self.sub}"

    def acted_by(self):
        """Who acted, for events: "applicant" (the case's own applicant: no ID number in the event),
        "clerk:<staff id>", "officer:<staff id>", "service:<name>" …"""
        if self.role == APPLICANT:
            return "applicant"
        if self.actor is None:
            return ""
        return f"{self.role}:{self.sub}" if not self.sub.startswith(f"{self.role}:") else self.sub

    def forward(self):
        """Metadata to call another service as this caller (its own token; the applicant present)."""
        metadata = []
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        if self.on_behalf_of:
            metadata.append((ON_BEHALF_OF, self.on_behalf_of))
        return tuple(metadata)


_current = contextvars.ContextVar("onething_caller", default=None)


def current():
    """The verified caller of the call being handled (set by the api server's interceptor)."""
    caller = _current.get()
    if caller is None:
        raise Unauthenticated("no verified caller for this call")
    return caller


def current_or_none():
    return _current.get()


def bind(caller):
    """Make `caller` current; returns the token for `unbind`."""
    return _current.set(caller)


def unbind(token):
    _current.reset(token)


def _metadata_value(metadata, key):
    values = [v for k, v in (metadata or ()) if k == key]
    if len(values) > 1:
        raise InvalidArgument(f"send the '{key}' metadata once")
    return values[0].strip() if values and isinstance(values[0], str) else ""


def authorize(full_method, metadata, policies=None):
    """The gate of every call: the RPC's policy, the token, the role. Returns the Caller."""
    policy = policy_for(full_method, policies)
    name = split_method(full_method)[1] or full_method
    if policy is None:
        raise PermissionDenied(f"{name[:64]} has no access policy and is refused (deny by default)")
    token = auth.bearer_of(metadata)
    on_behalf_of = _metadata_value(metadata, ON_BEHALF_OF)
    if not token:
        if policy.public and not on_behalf_of:
            return Caller(None, "", "", full_method)
        raise Unauthenticated("this call needs a bearer token (metadata 'authorization: Bearer …'); "
                              "mint one locally with `python -m tools.mint_token`")
    actor = auth.actor_from_token(token)
    if on_behalf_of:
        if actor.role != CLERK:
            raise PermissionDenied(f"only a window clerk acts on behalf of an applicant ('{ON_BEHALF_OF}'), "
                                   f"not a {actor.role}")
        from services.common.ids import citizen_id_problem, credit_code_problem
        if citizen_id_problem(on_behalf_of) is not None and credit_code_problem(on_behalf_of) is not None:
            raise InvalidArgument(f"'{ON_BEHALF_OF}' must be the applicant's citizen ID number or unified social "
                                  "credit code, with its check character",
                                  zh="代办申请人的身份证号码或统一社会信用代码有误，请核对。")
    if not policy.public and actor.role not in policy.roles:
        allowed = " and ".join(_PLURAL[r] for r in policy.roles)
        raise PermissionDenied(f"only {allowed} may call {name}, not a {actor.role}")
    return Caller(actor, on_behalf_of, token, full_method)


def site_operator(caller):
    """site_operator: an operator whose region contains the site's region."""
    region = settings().region
    if caller.role != OPERATOR or not caller.within(region):
        raise PermissionDenied(f"only an operator of region {region} (or a region containing it) may change "
                               "this site's catalog")


def rows():
    """The table as (service, method, roles, rule, note) rows, in descriptor order where known."""
    out = []
    for service, methods in POLICIES.items():
        for method, p in methods.items():
            out.append((service, method, p.roles, p.rule, p.note))
    return out
