"""A client of the suite over real gRPC: what the demo, the end-to-end tests and the benchmark use
to drive a 新生儿出生 case from upload to rating.

Every call carries the token of whoever makes it in real life, minted with the local identity
provider's key (var/auth; development only): the applicant for their uploads, cases, licences,
deliveries and ratings; a window clerk of the region for pickups and dispatches; an officer of the
department concerned for 差评 call-backs; an operator for catalog changes and statistics. A call
made with explicit `metadata=` (even empty: no token) is sent as given, so tests can call as anyone.
No request names its caller (the servers take it from the token): a helper's `applicant_id`,
`clerk_id` or `by` says whose token its call carries. The Suite learns whose each case is from the
answers it sees (SubmitCase, ListCases)."""
import hashlib
import itertools
import random
import threading
import time
import uuid

import grpc
from google.type import date_pb2

from onething.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from onething.common.v1 import common_pb2
from onething.delivery.v1 import delivery_pb2, delivery_pb2_grpc
from onething.elicense.v1 import elicense_pb2, elicense_pb2_grpc
from onething.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
from onething.intake.v1 import intake_pb2, intake_pb2_grpc
from onething.joint_review.v1 import joint_review_pb2, joint_review_pb2_grpc
from services.common.config import settings
from services.common.grpc_client import _CallDetails, channel
from services.common.ids import citizen_id_check_digit, credit_code_check_char, credit_code_problem
from services.elicense import codec as elicense_codec

NEWBORN = "XSECS"
CHUNK = 1024 * 1024  # an upload's messages: fewer and larger ones cost the api less per byte (its limit is 8 MiB)
# a carrier as callers name it ("EMS", "SF", ...) -> onething.delivery.v1.Carrier; a name not here is
# sent as CARRIER_UNSPECIFIED (delivery refuses it: INVALID_ARGUMENT naming the carriers)
CARRIER = {"EMS": delivery_pb2.CARRIER_EMS, "SF": delivery_pb2.CARRIER_SF, "JD": delivery_pb2.CARRIER_JD,
           "ZTO": delivery_pb2.CARRIER_ZTO, "YTO": delivery_pb2.CARRIER_YTO, "STO": delivery_pb2.CARRIER_STO,
           "YUNDA": delivery_pb2.CARRIER_YUNDA}


def _carrier(carrier):
    """A carrier's name (or already its number) as onething.delivery.v1.Carrier."""
    if isinstance(carrier, int):
        return carrier
    return CARRIER.get((carrier or "").strip().upper(), delivery_pb2.CARRIER_UNSPECIFIED)


# a rating's channel as callers name it -> onething.evaluation.v1.Channel ("": none named)
RATING_CHANNEL = {"": evaluation_pb2.CHANNEL_UNSPECIFIED, "online": evaluation_pb2.CHANNEL_ONLINE,
                  "window": evaluation_pb2.CHANNEL_WINDOW}


def _statistics_day(day):
    """A google.type.Date of "YYYY-MM-DD" ("" is none: an empty Date)."""
    if not day:
        return date_pb2.Date()
    year, month, dd = (int(part) for part in day.split("-"))
    return date_pb2.Date(year=year, month=month, day=dd)


def citizen_id(first17="44010619900101123"):
    return first17 + citizen_id_check_digit(first17)


def holder_code_type(licence):
    """A licence's holder code type as GB/T 36903 writes it ("111", "001"; "" none) from the api's
    onething.elicense.v1.HolderCodeType (the one table: services.elicense.codec)."""
    return elicense_codec.code_type_of_proto(licence.holder_code_type)


def retry_delay(exc):
    """Seconds to wait when the server refused for capacity and said when to try again (a
    google.rpc.RetryInfo in the status details), else None."""
    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status
    status = rpc_status.from_call(exc)
    for detail in (status.details if status else ()):
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToNanoseconds() / 1e9
    return None


_tokens: dict = {}
_tokens_lock = threading.Lock()


def token(sub, role, department="", region=""):
    """A token signed by the local identity provider (var/auth), reused for 10 minutes."""
    from services.common import auth
    key, now = (sub, role, department, region), time.time()
    with _tokens_lock:
        cached = _tokens.get(key)
        if cached and cached[1] > now:
            return cached[0]
    minted = auth.mint(sub, role, department, region, hours=1)
    with _tokens_lock:
        _tokens[key] = (minted, now + 600)
    return minted


def bearer(sub, role, department="", region="", on_behalf_of=""):
    """gRPC metadata with a token signed by the local identity provider (var/auth); a clerk acting
    for the applicant at the window names them in `x-on-behalf-of`."""
    metadata = (("authorization", "Bearer " + token(sub, role, department, region)),)
    return metadata + ((("x-on-behalf-of", on_behalf_of),) if on_behalf_of else ())


def officer(department, region="440100", sub=None):
    return bearer(sub or f"officer-{department}", "officer", department, region)


def applicant_md(id_number):
    return bearer(id_number, "applicant") if id_number else ()


def clerk(sub="clerk-1", region="440100", on_behalf_of=""):
    return bearer(sub, "clerk", region=region, on_behalf_of=on_behalf_of)


def operator(region="440100", sub="operator-1"):
    return bearer(sub, "operator", region=region)


class _Identity(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor,
                grpc.UnaryStreamClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Gives a call without metadata the token of whoever makes it (Suite.metadata_for); a call
    with metadata (even empty) goes as given. Learns the owners of cases and licences it sees."""

    def __init__(self, suite):
        self.suite = suite

    def _details(self, details, request):
        if details.metadata is not None:
            return details
        return _CallDetails(details.method, details.timeout, list(self.suite.metadata_for(details.method, request)),
                            details.credentials, getattr(details, "wait_for_ready", None),
                            getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        outcome = continuation(self._details(details, request), request)
        if details.method.endswith(("/SubmitCase", "/ListCases", "/ListLicenses", "/GetLicense", "/GetCase")):
            def learn(call):
                try:
                    self.suite.learn(call.result())
                except Exception:
                    pass
            outcome.add_done_callback(learn)
        return outcome

    def intercept_stream_unary(self, continuation, details, request_iterator):
        first = next(request_iterator, None)
        requests = itertools.chain([first], request_iterator) if first is not None else iter(())
        return continuation(self._details(details, first), requests)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details, request), request)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details, None), request_iterator)


# values the demo fills into the one form (一表申请), by field key; the rest by type and validator
_DEMO_VALUES = {"child_name": "李小明", "birth_date": "2026-11-20", "birth_place": "广州市妇女儿童医疗中心",
                "mother_name": "王芳", "father_name": "李华", "mother_id": "440106199203031234"[:17],
                "father_id": "44010619900101123"}
_BY_VALIDATOR = {catalog_pb2.FIELD_VALIDATOR_PHONE: "13800000000", catalog_pb2.FIELD_VALIDATOR_REGION: "440106",
                 catalog_pb2.FIELD_VALIDATOR_BANK_ACCOUNT: "6222020200112233",
                 catalog_pb2.FIELD_VALIDATOR_CREDIT_CODE: "91350100M000100Y43"}
_BY_TYPE = {catalog_pb2.FIELD_TYPE_DATE: "2026-11-20", catalog_pb2.FIELD_TYPE_NUMBER: "1",
            catalog_pb2.FIELD_TYPE_BOOL: "true"}


def demo_parties(package, applicant, seed=""):
    """The parties a package requires, made up for demos and tests: the enterprise is the applicant
    when the applicant is one; the buyer is the applicant; the others are people of their own, the
    same for the same applicant and `seed` (a retry with its idempotency key asks for the same)."""
    rng = random.Random(f"{applicant.id_number}|{seed}")
    out = []
    for n, role in enumerate(package.parties if package is not None else ()):
        if not role.required:
            continue
        if role.id_kind == catalog_pb2.ID_KIND_CREDIT_CODE:
            if credit_code_problem(applicant.id_number) is None:
                number, name = applicant.id_number, applicant.name
            else:
                body = f"91440101MA5D{n:05d}"[:17]
                number, name = body + credit_code_check_char(body), f"示例{role.name}有限公司"
        elif role.role == "buyer":
            number, name = applicant.id_number, applicant.name
        else:  # a made-up person: born 2026-11-20 (a newborn) or on a random day, random sequence
            born = "20261120" if role.role == "newborn" else f"19{rng.randint(30, 99)}0{rng.randint(1, 9)}1{rng.randint(0, 9)}"
            number, name = citizen_id(f"440106{born}{rng.randint(0, 999):03d}"), f"示例{role.name}"
        out.append(common_pb2.Party(role=role.role, name=name, id_number=number))
    return out


def demo_form(package, applicant=None, parties=()):
    """A form that satisfies the package's merged form fields, for demos and tests; a field named
    after a party's role (`deceased_id`, `seller_id` …) gets that party's ID number."""
    form = {"child_name": "李小明", "birth_date": "2026-11-20"}
    by_role = {p.role: p for p in parties or ()}
    for field in package.form_fields if package is not None else ():
        key = field.key
        role = key[:-3] if key.endswith("_id") else ""
        if field.key == "applicant_name" and applicant is not None:
            form[key] = applicant.name
        elif role in by_role and field.validator in (catalog_pb2.FIELD_VALIDATOR_CITIZEN_ID,
                                                     catalog_pb2.FIELD_VALIDATOR_CREDIT_CODE,
                                                     catalog_pb2.FIELD_VALIDATOR_UNSPECIFIED):
            form[key] = by_role[role].id_number
        elif field.validator == catalog_pb2.FIELD_VALIDATOR_CITIZEN_ID:
            person = applicant is not None and applicant.id_number[:17].isdigit()
            form[key] = citizen_id(_DEMO_VALUES.get(key, applicant.id_number[:17] if person else "44010619900101123"))
        elif field.validator in _BY_VALIDATOR:
            form[key] = _BY_VALIDATOR[field.validator]
        elif field.choices:
            form[key] = field.choices[0]
        elif key in _DEMO_VALUES:
            form[key] = _DEMO_VALUES[key]
        else:
            form[key] = _BY_TYPE.get(field.type, "示例")
    return form


def demo_pdf(label):
    return (b"%PDF-1.4\n% onething demo material\n" + label.encode() + b"\n" + uuid.uuid4().hex.encode()
            + b"\n%%EOF\n")


class Suite:
    def __init__(self, region="440100", clerk_id="clerk-1", operator_id="operator-1", someone=None, addresses=None):
        """`addresses` {service: host:port} reaches another site's apis (infra/multisite.py)."""
        settings_now = settings()

        class _Where:
            @staticmethod
            def address(name):
                return (addresses or {}).get(name) or settings_now.address(name)
        s = _Where
        self.region, self.clerk_id, self.operator_id = region, clerk_id, operator_id
        # who asks about a case the Suite has not seen (an unknown number, say): an applicant of its own
        self.someone = someone or citizen_id("44010619700101000")
        self.owners = {}    # case number -> the applicant's ID number
        self.licences = {}  # licence id -> {"holder_code", "case_no", "token"} as seen
        ident = [_Identity(self)]
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(channel(s.address("catalog"), interceptors=ident))
        self.intake = intake_pb2_grpc.IntakeServiceStub(channel(s.address("intake"), interceptors=ident))
        self.review = joint_review_pb2_grpc.JointReviewServiceStub(channel(s.address("joint_review"),
                                                                           interceptors=ident))
        self.elicense = elicense_pb2_grpc.ElicenseServiceStub(channel(s.address("elicense"), interceptors=ident))
        self.delivery = delivery_pb2_grpc.DeliveryServiceStub(channel(s.address("delivery"), interceptors=ident))
        self.evaluation = evaluation_pb2_grpc.EvaluationServiceStub(channel(s.address("evaluation"),
                                                                            interceptors=ident))

    # -- whose token each call carries ---------------------------------------------------------

    def learn(self, response):
        """Note the owners of the cases and licences an answer shows."""
        if isinstance(response, intake_pb2.Case):
            if response.case_no and response.applicant.id_number:
                self.owners.setdefault(response.case_no, response.applicant.id_number)
        elif isinstance(response, intake_pb2.ListCasesResponse):
            for case in response.cases:
                self.learn(case)
        elif isinstance(response, elicense_pb2.License):
            if response.license_id:
                self.licences[response.license_id] = {"holder_code": response.holder_code,
                                                      "case_no": response.case_no,
                                                      "token": response.signature[:24]}
        elif isinstance(response, elicense_pb2.ListLicensesResponse):
            for lic in response.licenses:
                self.learn(lic)

    def owner(self, case_no):
        """The case's applicant as the Suite saw it; for a case it has not seen, its own applicant."""
        return self.owners.get(case_no) or self.someone

    def as_owner(self, case_no):
        """The metadata of the case's applicant."""
        return applicant_md(self.owner(case_no))

    def metadata_for(self, method, request):
        name = method.rsplit("/", 1)[-1]
        case_no = getattr(request, "case_no", "") if request is not None else ""
        if name in ("ListVersions", "PublishPackage", "RetirePackage", "ReloadCatalog", "GetStatistics"):
            return operator(self.region, self.operator_id)
        if name in ("UploadMaterial", "ListCases"):
            # the request names no applicant: the Suite's own (the helpers upload and list_cases name theirs)
            return applicant_md(self.someone)
        if name == "SubmitCase":
            return applicant_md(request.applicant.id_number)
        if name in ("GetCase", "WatchCase", "SupplementCase", "WithdrawCase", "SubmitEvaluation",
                    "GetSession", "GetDelivery", "GetEvaluation"):
            return self.as_owner(case_no)
        if name == "ListLicenses":
            return applicant_md(request.holder_code) if request.holder_code else self.as_owner(case_no)
        if name == "GetLicense":
            seen = self.licences.get(request.license_id, {})  # its case's applicant, else its holder
            if seen.get("case_no") in self.owners or not seen.get("holder_code"):
                return self.as_owner(seen.get("case_no", ""))
            return applicant_md(seen["holder_code"])
        if name in ("ConfirmPickup", "RecordDispatch", "Redispatch", "RecordDelivered", "RecordUndeliverable"):
            return clerk(self.clerk_id, self.region)
        if name in ("RecordCallback", "CloseRectification"):
            return self._officer_concerned(case_no)
        if name == "ListBadReviews":
            return (officer(request.department_code, request.region_code or self.region)
                    if request.department_code else operator(request.region_code or self.region, self.operator_id))
        return ()  # public calls, and staff calls that bring their own token

    def _officer_concerned(self, case_no, sub=""):
        """An officer of the department the case's 差评 is counted for (as the rating says)."""
        try:
            rating = self.evaluation.GetEvaluation(evaluation_pb2.GetEvaluationRequest(case_no=case_no),
                                                   metadata=self.as_owner(case_no), timeout=10)
        except grpc.RpcError:
            return officer("unknown", self.region, sub or None)
        department = rating.rectification.department_code or rating.department_code
        return officer(department, rating.region_code or self.region, sub or None)

    def upload(self, applicant_id, material_code, data, file_name="scan.pdf", sha256=None, content_type="",
               size=None):
        """An upload in the name of `applicant_id` (their token; "": none)."""
        def parts():
            yield intake_pb2.UploadMaterialRequest(header=intake_pb2.UploadHeader(
                material_code=material_code, file_name=file_name,
                sha256=sha256 or hashlib.sha256(data).hexdigest(), size=len(data) if size is None else size,
                content_type=content_type))
            for i in range(0, len(data), CHUNK):
                yield intake_pb2.UploadMaterialRequest(chunk=data[i:i + CHUNK])
        for attempt in range(20):
            try:
                return self.intake.UploadMaterial(parts(), metadata=applicant_md(applicant_id), timeout=30)
            except grpc.RpcError as exc:
                delay = retry_delay(exc)
                if delay is None or attempt == 19:
                    raise
                time.sleep(delay * (1 + attempt % 3) / 2)

    def upload_all(self, applicant_id, codes):
        return [intake_pb2.MaterialSubmission(material_code=c, upload_id=self.upload(
            applicant_id, c, demo_pdf(c)).upload_id) for c in codes]

    def package(self, code=NEWBORN, region="440100", situations=None):
        return self.catalog.GetPackage(catalog_pb2.GetPackageRequest(code=code, region_code=region,
                                                                     situations=situations or {}), timeout=10)

    def required_materials(self, code=NEWBORN, region="440100", situations=None):
        """The material codes the package's items need, in package order."""
        pkg = self.package(code, region, situations)
        needed = {c for item in pkg.items for c in item.material_codes}
        return [m.code for m in pkg.materials if m.code in needed]

    def submit(self, applicant, materials, package=NEWBORN, region="440100", key="", form=None,
               channel_=common_pb2.DELIVERY_CHANNEL_ELECTRONIC, address=None, situations=None, parties=None):
        """`parties` None: made-up parties for the roles the package requires (demo_parties)."""
        if form is None or parties is None:  # fit the package's form fields and parties, when it has them
            try:
                pkg = self.package(package, region, situations)
            except grpc.RpcError as exc:
                # a package the catalog refuses (wrong region, unknown code) gets the plain demo
                # values, for tests of refusals; a catalog that is away is the caller's to retry
                if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT,
                                      grpc.StatusCode.FAILED_PRECONDITION):
                    raise
                pkg = None
            if parties is None:
                parties = demo_parties(pkg, applicant, key)
            if form is None:
                form = demo_form(pkg, applicant, parties)
        return self.intake.SubmitCase(intake_pb2.SubmitCaseRequest(
            package_code=package, region_code=region, applicant=applicant, materials=materials,
            form=form, situations=situations or {}, parties=parties,
            delivery=common_pb2.DeliveryPreference(channel=channel_, address=address), idempotency_key=key),
            timeout=30)

    def supplement(self, case_no, applicant_id, materials):
        """As `applicant_id` (their token; "": the case's applicant as the Suite saw it)."""
        return self.intake.SupplementCase(intake_pb2.SupplementCaseRequest(case_no=case_no, materials=materials),
                                          metadata=applicant_md(applicant_id or self.owner(case_no)), timeout=30)

    def withdraw(self, case_no, applicant_id, reason=""):
        """As `applicant_id` (their token; "": the case's applicant as the Suite saw it)."""
        return self.intake.WithdrawCase(intake_pb2.WithdrawCaseRequest(case_no=case_no, reason=reason),
                                        metadata=applicant_md(applicant_id or self.owner(case_no)), timeout=10)

    def watch(self, case_no, timeout=120):
        """The stream of the case's states: the case now, then each status change."""
        return self.intake.WatchCase(intake_pb2.WatchCaseRequest(case_no=case_no), timeout=timeout)

    def list_cases(self, applicant_id, page_size=0, page_token=""):
        """The cases of `applicant_id` (their token)."""
        return self.intake.ListCases(intake_pb2.ListCasesRequest(page_size=page_size, page_token=page_token),
                                     metadata=applicant_md(applicant_id), timeout=10)

    def download_material(self, case_no, material_code, metadata=None, timeout=60):
        """A material of a case as (its first MaterialChunk, without the bytes; all its bytes), read
        as `metadata` says (None: the case's applicant as the Suite saw it; an officer's token for
        an officer). The bytes are checked against the sha256 and size the first message gives."""
        first, parts = None, []
        for message in self.intake.DownloadMaterial(
                intake_pb2.DownloadMaterialRequest(case_no=case_no, material_code=material_code),
                metadata=self.as_owner(case_no) if metadata is None else metadata, timeout=timeout):
            if first is None:
                first = intake_pb2.MaterialChunk()
                first.CopyFrom(message)
                first.ClearField("chunk")
            parts.append(message.chunk)
        data = b"".join(parts)
        if first is None or len(data) != first.size or hashlib.sha256(data).hexdigest() != first.sha256:
            raise ValueError(f"material {material_code} of case {case_no} arrived incomplete or changed")
        return first, data

    def wait_status(self, case_no, statuses, timeout=60.0):
        deadline = time.time() + timeout
        while True:
            case = self.intake.GetCase(intake_pb2.GetCaseRequest(case_no=case_no), timeout=10)
            if case.status in statuses:
                return case
            if time.time() > deadline:
                raise TimeoutError(f"case {case_no} still {intake_pb2.CaseStatus.Name(case.status)} "
                                   f"after {timeout:.0f}s")
            time.sleep(0.1)

    def session(self, case_no):
        return self.review.GetSession(joint_review_pb2.GetSessionRequest(case_no=case_no), timeout=10)

    def licenses(self, case_no):
        return self.elicense.ListLicenses(elicense_pb2.ListLicensesRequest(case_no=case_no), timeout=10).licenses

    def verify(self, license_id, token=None):
        """Public verification: the identifier and the QR code's token (the first 24 characters of the
        signature of a licence this Suite has seen, unless given)."""
        if token is None:
            token = self.licences.get(license_id, {}).get("token", "")
        return self.elicense.VerifyLicense(elicense_pb2.VerifyLicenseRequest(license_id=license_id, token=token),
                                           timeout=10)

    def delivery_of(self, case_no):
        return self.delivery.GetDelivery(delivery_pb2.GetDeliveryRequest(case_no=case_no), timeout=10)

    # -- delivery by the window clerk and the carrier (WINDOW, MAIL) --

    # `clerk_id`: the window clerk (of the Suite's region) whose token the call carries; None: the Suite's

    def confirm_pickup(self, case_no, pickup_code, clerk_id=None):
        return self.delivery.ConfirmPickup(delivery_pb2.ConfirmPickupRequest(
            case_no=case_no, pickup_code=pickup_code), metadata=clerk(clerk_id or self.clerk_id, self.region),
            timeout=10)

    def record_dispatch(self, case_no, carrier, tracking_number, clerk_id=None):
        return self.delivery.RecordDispatch(delivery_pb2.RecordDispatchRequest(
            case_no=case_no, carrier=_carrier(carrier), tracking_number=tracking_number),
            metadata=clerk(clerk_id or self.clerk_id, self.region), timeout=10)

    def record_delivered(self, case_no, tracking_number, signed_by):
        return self.delivery.RecordDelivered(delivery_pb2.RecordDeliveredRequest(
            case_no=case_no, tracking_number=tracking_number, signed_by=signed_by), timeout=10)

    def record_undeliverable(self, case_no, tracking_number, reason):
        return self.delivery.RecordUndeliverable(delivery_pb2.RecordUndeliverableRequest(
            case_no=case_no, tracking_number=tracking_number, reason=reason), timeout=10)

    def redispatch(self, case_no, address, carrier, tracking_number, clerk_id=None):
        return self.delivery.Redispatch(delivery_pb2.RedispatchRequest(
            case_no=case_no, address=address, carrier=_carrier(carrier), tracking_number=tracking_number),
            metadata=clerk(clerk_id or self.clerk_id, self.region), timeout=10)

    # -- 差评 rectification and statistics --

    # `by`: the officer (of the department concerned) whose token the call carries; "": officer-<department>

    def record_callback(self, case_no, note, by, channel=""):
        return self.evaluation.RecordCallback(evaluation_pb2.RecordCallbackRequest(
            case_no=case_no, note=note, channel=RATING_CHANNEL[channel]),
            metadata=self._officer_concerned(case_no, by), timeout=10)

    def close_rectification(self, case_no, result, by, channel=""):
        return self.evaluation.CloseRectification(evaluation_pb2.CloseRectificationRequest(
            case_no=case_no, result=result, channel=RATING_CHANNEL[channel]),
            metadata=self._officer_concerned(case_no, by), timeout=10)

    def bad_reviews(self, department_code="", region_code="", open_only=False, page_size=0):
        """Every 差评 rectification within the filters, read a page (of `page_size`) at a time."""
        found, token = [], ""
        while True:
            page = self.evaluation.ListBadReviews(evaluation_pb2.ListBadReviewsRequest(
                department_code=department_code, region_code=region_code, open_only=open_only, page_size=page_size,
                page_token=token), timeout=10)
            found.extend(page.rectifications)
            token = page.next_page_token
            if not token:
                return found

    def statistics(self, group_by, **filters):
        """`filters`: region/department/package codes; rated_from/rated_to as "YYYY-MM-DD" (or a Date)."""
        for day in ("rated_from", "rated_to"):
            if isinstance(filters.get(day), str):
                filters[day] = _statistics_day(filters[day])
        return self.evaluation.GetStatistics(evaluation_pb2.GetStatisticsRequest(group_by=group_by, **filters),
                                             timeout=10).rows

    def rate(self, case_no, applicant_id, grade=evaluation_pb2.GRADE_VERY_SATISFIED, comment="", department_code=""):
        """As `applicant_id` (their token; "": the case's applicant as the Suite saw it)."""
        return self.evaluation.SubmitEvaluation(evaluation_pb2.SubmitEvaluationRequest(
            case_no=case_no, channel=RATING_CHANNEL["online"], grade=grade,
            dimensions={"整体满意度": 5, "办事效率": 5}, comment=comment, department_code=department_code),
            metadata=applicant_md(applicant_id or self.owner(case_no)), timeout=10)

    def newborn_case(self, applicant=None, key="", skip=(), newborn=None):
        """Upload the materials 新生儿出生 needs (but `skip`) and submit; returns the Case. The
        newborn (a Party) is made up unless given."""
        applicant = applicant or common_pb2.Applicant(id_number=citizen_id(), name="李华", phone="13800000000")
        codes = [c for c in self.required_materials() if c not in skip]
        materials = self.upload_all(applicant.id_number, codes)
        return self.submit(applicant, materials, key=key, parties=[newborn] if newborn is not None else None)


def is_error(exc, code):
    return isinstance(exc, grpc.RpcError) and exc.code() == code
