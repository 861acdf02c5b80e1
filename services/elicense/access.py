"""Who may read a licence, asked of the services that know: intake whether a case is the caller's,
joint_review which tasks need which licences. Each is called with the caller's own token (and the
applicant present at a clerk's window), so each applies its own access rule; elicense learns only
"yes, visible" or "no", never more of the case than it asked for.

Used by the api role only (grpcio does not run in the eventlet-patched worker)."""
import grpc

from onething.intake.v1 import intake_pb2, intake_pb2_grpc
from onething.joint_review.v1 import joint_review_pb2, joint_review_pb2_grpc
from services.common.config import settings
from services.common.errors import Unavailable
from services.common.grpc_client import channel

# answers that mean "not yours" (or "not there"): the caller may not rely on the case
_REFUSED = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.UNAUTHENTICATED)


class CaseAccess:
    def __init__(self, intake_address=None, review_address=None, timeout=5.0):
        self._addresses = (intake_address, review_address)
        self._intake = self._review = None
        self.timeout = timeout

    @property
    def intake(self):
        if self._intake is None:
            self._intake = intake_pb2_grpc.IntakeServiceStub(channel(self._addresses[0]
                                                                     or settings().address("intake")))
        return self._intake

    @property
    def review(self):
        if self._review is None:
            self._review = joint_review_pb2_grpc.JointReviewServiceStub(
                channel(self._addresses[1] or settings().address("joint_review")))
        return self._review

    def _ask(self, call, request, caller):
        try:
            return call(request, metadata=caller.forward(), timeout=self.timeout)
        except grpc.RpcError as exc:
            if exc.code() in _REFUSED:
                return None
            raise Unavailable(f"the service that decides who may read this licence cannot be reached "
                              f"({exc.code().name}); try again shortly") from exc

    def case_visible(self, caller, case_no):
        """True when intake shows the case to this caller (its applicant; a clerk on their behalf)."""
        if not case_no or not caller.token:
            return False
        return self._ask(self.intake.GetCase, intake_pb2.GetCaseRequest(case_no=case_no), caller) is not None

    def task_needs(self, caller, case_no, license_id):
        """True when the officer's department has a task in the case, in their region, that needs the
        licence (joint_review's Task.needed_license_ids)."""
        if not case_no or not caller.token:
            return False
        session = self._ask(self.review.GetSession, joint_review_pb2.GetSessionRequest(case_no=case_no), caller)
        return session is not None and any(
            t.department_code == caller.department and caller.within(t.region_code)
            and license_id in t.needed_license_ids for t in session.tasks)
