"""A client of the suite over real gRPC: what the demo, the end-to-end tests and the benchmark use
to drive a 新生儿出生 case from upload to rating."""
import hashlib
import time
import uuid

import grpc

from onething.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from onething.common.v1 import common_pb2
from onething.delivery.v1 import delivery_pb2, delivery_pb2_grpc
from onething.elicense.v1 import elicense_pb2, elicense_pb2_grpc
from onething.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
from onething.intake.v1 import intake_pb2, intake_pb2_grpc
from onething.joint_review.v1 import joint_review_pb2, joint_review_pb2_grpc
from services.common.config import settings
from services.common.grpc_client import channel
from services.common.ids import citizen_id_check_digit

NEWBORN = "XSECS"
CHUNK = 64 * 1024


def citizen_id(first17="44010619900101123"):
    return first17 + citizen_id_check_digit(first17)


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


def bearer(sub, role, department="", region=""):
    """gRPC metadata with a token signed by the local identity provider (var/auth)."""
    from services.common import auth
    return (("authorization", "Bearer " + auth.mint(sub, role, department, region)),)


def officer(department, region="440100", sub=None):
    return bearer(sub or f"officer-{department}", "officer", department, region)


# values the demo fills into the one form (一表申请), by field key; the rest by type and validator
_DEMO_VALUES = {"child_name": "李小明", "birth_date": "2026-11-20", "birth_place": "广州市妇女儿童医疗中心",
                "mother_name": "王芳", "father_name": "李华", "mother_id": "440106199203031234"[:17],
                "father_id": "44010619900101123"}
_BY_VALIDATOR = {"phone": "13800000000", "region": "440106", "bank_account": "6222020200112233",
                 "credit_code": "91350100M000100Y43"}
_BY_TYPE = {"date": "2026-11-20", "number": "1", "bool": "true"}


def demo_form(package, applicant=None):
    """A form that satisfies the package's merged form fields, for demos and tests."""
    form = {"child_name": "李小明", "birth_date": "2026-11-20"}
    for field in package.form_fields if package is not None else ():
        key = field.key
        if field.key == "applicant_name" and applicant is not None:
            form[key] = applicant.name
        elif field.validator == "citizen_id":
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
    def __init__(self):
        s = settings()
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(channel(s.address("catalog")))
        self.intake = intake_pb2_grpc.IntakeServiceStub(channel(s.address("intake")))
        self.review = joint_review_pb2_grpc.JointReviewServiceStub(channel(s.address("joint_review")))
        self.elicense = elicense_pb2_grpc.ElicenseServiceStub(channel(s.address("elicense")))
        self.delivery = delivery_pb2_grpc.DeliveryServiceStub(channel(s.address("delivery")))
        self.evaluation = evaluation_pb2_grpc.EvaluationServiceStub(channel(s.address("evaluation")))

    def upload(self, applicant_id, material_code, data, file_name="scan.pdf", sha256=None, content_type="",
               size=None):
        def parts():
            yield intake_pb2.UploadMaterialRequest(header=intake_pb2.UploadHeader(
                applicant_id=applicant_id, material_code=material_code, file_name=file_name,
                sha256=sha256 or hashlib.sha256(data).hexdigest(), size=len(data) if size is None else size,
                content_type=content_type))
            for i in range(0, len(data), CHUNK):
                yield intake_pb2.UploadMaterialRequest(chunk=data[i:i + CHUNK])
        for attempt in range(20):
            try:
                return self.intake.UploadMaterial(parts(), timeout=30)
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
               channel_=common_pb2.DELIVERY_CHANNEL_ELECTRONIC, address=None, situations=None):
        if form is None:  # a form that fits the package's merged form fields, when it has them
            try:
                form = demo_form(self.package(package, region, situations), applicant)
            except grpc.RpcError:
                form = demo_form(None)
        return self.intake.SubmitCase(intake_pb2.SubmitCaseRequest(
            package_code=package, region_code=region, applicant=applicant, materials=materials,
            form=form, situations=situations or {},
            delivery=common_pb2.DeliveryPreference(channel=channel_, address=address), idempotency_key=key),
            timeout=30)

    def supplement(self, case_no, applicant_id, materials):
        return self.intake.SupplementCase(intake_pb2.SupplementCaseRequest(
            case_no=case_no, applicant_id=applicant_id, materials=materials), timeout=30)

    def withdraw(self, case_no, applicant_id, reason=""):
        return self.intake.WithdrawCase(intake_pb2.WithdrawCaseRequest(
            case_no=case_no, applicant_id=applicant_id, reason=reason), timeout=10)

    def watch(self, case_no, timeout=120):
        """The stream of the case's states: the case now, then each status change."""
        return self.intake.WatchCase(intake_pb2.WatchCaseRequest(case_no=case_no), timeout=timeout)

    def list_cases(self, applicant_id, page_size=0, page_token=""):
        return self.intake.ListCases(intake_pb2.ListCasesRequest(
            applicant_id=applicant_id, page_size=page_size, page_token=page_token), timeout=10)

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

    def verify(self, license_id):
        return self.elicense.VerifyLicense(elicense_pb2.VerifyLicenseRequest(license_id=license_id), timeout=10)

    def delivery_of(self, case_no):
        return self.delivery.GetDelivery(delivery_pb2.GetDeliveryRequest(case_no=case_no), timeout=10)

    # -- delivery by the window clerk and the carrier (WINDOW, MAIL) --

    def confirm_pickup(self, case_no, pickup_code, clerk_id="clerk-1"):
        return self.delivery.ConfirmPickup(delivery_pb2.ConfirmPickupRequest(
            case_no=case_no, pickup_code=pickup_code, clerk_id=clerk_id), timeout=10)

    def record_dispatch(self, case_no, carrier, tracking_number, clerk_id="clerk-1"):
        return self.delivery.RecordDispatch(delivery_pb2.RecordDispatchRequest(
            case_no=case_no, carrier=carrier, tracking_number=tracking_number, clerk_id=clerk_id), timeout=10)

    def record_delivered(self, case_no, tracking_number, signed_by):
        return self.delivery.RecordDelivered(delivery_pb2.RecordDeliveredRequest(
            case_no=case_no, tracking_number=tracking_number, signed_by=signed_by), timeout=10)

    def record_undeliverable(self, case_no, tracking_number, reason):
        return self.delivery.RecordUndeliverable(delivery_pb2.RecordUndeliverableRequest(
            case_no=case_no, tracking_number=tracking_number, reason=reason), timeout=10)

    def redispatch(self, case_no, address, carrier, tracking_number, clerk_id="clerk-1"):
        return self.delivery.Redispatch(delivery_pb2.RedispatchRequest(
            case_no=case_no, address=address, carrier=carrier, tracking_number=tracking_number,
            clerk_id=clerk_id), timeout=10)

    # -- 差评 rectification and statistics --

    def record_callback(self, case_no, note, by, channel=""):
        return self.evaluation.RecordCallback(evaluation_pb2.RecordCallbackRequest(
            case_no=case_no, note=note, by=by, channel=channel), timeout=10)

    def close_rectification(self, case_no, result, by, channel=""):
        return self.evaluation.CloseRectification(evaluation_pb2.CloseRectificationRequest(
            case_no=case_no, result=result, by=by, channel=channel), timeout=10)

    def bad_reviews(self, department_code="", region_code="", open_only=False):
        return self.evaluation.ListBadReviews(evaluation_pb2.ListBadReviewsRequest(
            department_code=department_code, region_code=region_code, open_only=open_only), timeout=10).rectifications

    def statistics(self, group_by, **filters):
        return self.evaluation.GetStatistics(evaluation_pb2.GetStatisticsRequest(group_by=group_by, **filters),
                                             timeout=10).rows

    def rate(self, case_no, applicant_id, grade=evaluation_pb2.GRADE_VERY_SATISFIED, comment="", department_code=""):
        return self.evaluation.SubmitEvaluation(evaluation_pb2.SubmitEvaluationRequest(
            case_no=case_no, applicant_id=applicant_id, channel="online", grade=grade,
            dimensions={"整体满意度": 5, "办事效率": 5}, comment=comment, department_code=department_code), timeout=10)

    def newborn_case(self, applicant=None, key="", skip=()):
        """Upload the materials 新生儿出生 needs (but `skip`) and submit; returns the Case."""
        applicant = applicant or common_pb2.Applicant(id_number=citizen_id(), name="李华", phone="13800000000")
        codes = [c for c in self.required_materials() if c not in skip]
        materials = self.upload_all(applicant.id_number, codes)
        return self.submit(applicant, materials, key=key)


def is_error(exc, code):
    return isinstance(exc, grpc.RpcError) and exc.code() == code
