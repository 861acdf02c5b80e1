"""A client of the suite over real gRPC: what the demo, the end-to-end tests and the benchmark use
to drive a 新生儿出生 case from upload to rating."""
import hashlib
import time
import uuid

import grpc

from onething.catalog.v1 import catalog_pb2_grpc
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


def bearer(sub, role, department="", region=""):
    """gRPC metadata with a token signed by the local identity provider (var/auth)."""
    from services.common import auth
    return (("authorization", "Bearer " + auth.mint(sub, role, department, region)),)


def officer(department, region="440100", sub=None):
    return bearer(sub or f"officer-{department}", "officer", department, region)


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

    def upload(self, applicant_id, material_code, data, file_name="scan.pdf", sha256=None):
        def parts():
            yield intake_pb2.UploadMaterialRequest(header=intake_pb2.UploadHeader(
                applicant_id=applicant_id, material_code=material_code, file_name=file_name,
                sha256=sha256 or hashlib.sha256(data).hexdigest(), size=len(data)))
            for i in range(0, len(data), CHUNK):
                yield intake_pb2.UploadMaterialRequest(chunk=data[i:i + CHUNK])
        return self.intake.UploadMaterial(parts(), timeout=30)

    def upload_all(self, applicant_id, codes):
        return [intake_pb2.MaterialSubmission(material_code=c, upload_id=self.upload(
            applicant_id, c, demo_pdf(c)).upload_id) for c in codes]

    def submit(self, applicant, materials, package=NEWBORN, region="440100", key="", form=None,
               channel_=common_pb2.DELIVERY_CHANNEL_ELECTRONIC, address=None):
        return self.intake.SubmitCase(intake_pb2.SubmitCaseRequest(
            package_code=package, region_code=region, applicant=applicant, materials=materials,
            form=form or {"child_name": "李小明", "birth_date": "2026-11-20"},
            delivery=common_pb2.DeliveryPreference(channel=channel_, address=address), idempotency_key=key),
            timeout=30)

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

    def newborn_case(self, applicant=None, key=""):
        """Upload the materials of 新生儿出生 and submit; returns the Case."""
        applicant = applicant or common_pb2.Applicant(id_number=citizen_id(), name="李华", phone="13800000000")
        materials = self.upload_all(applicant.id_number, ["M01", "M02", "M03", "M04"])
        return self.submit(applicant, materials, key=key)


def is_error(exc, code):
    return isinstance(exc, grpc.RpcError) and exc.code() == code
