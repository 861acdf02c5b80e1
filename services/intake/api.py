"""intake api role: native grpcio server."""
import threading

from google.protobuf import json_format

from onething.intake.v1 import intake_pb2, intake_pb2_grpc
from services.common import telemetry
from services.common.config import settings
from services.common.errors import InvalidArgument, TooLarge
from services.common.grpc_server import ApiServer
from services.common.mongo import plain
from services.intake.wiring import build_intake


def case_to_proto(doc):
    return intake_pb2.Case(
        case_no=doc.case_no, package_code=doc.package_code, package_version=doc.package_version,
        region_code=doc.region_code, applicant=json_format.ParseDict(doc.applicant, intake_pb2.Case().applicant),
        status=doc.status, form=doc.form, submitted_at=doc.submitted_at.isoformat(),
        materials=[json_format.ParseDict(m, intake_pb2.Case().materials.add()) for m in doc.materials],
        delivery=json_format.ParseDict(doc.delivery or {}, intake_pb2.Case().delivery),
        history=[json_format.ParseDict(h, intake_pb2.StatusChange()) for h in doc.history],
        license_ids=doc.license_ids, situations=doc.situations or {},
        rectification=json_format.ParseDict(plain(doc.rectification or {}), intake_pb2.Rectification(),
                                            ignore_unknown_fields=True))


def _as_dict(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


WATCH_SLOTS = 6  # of the api's 16 server threads


class IntakeApi(intake_pb2_grpc.IntakeServiceServicer):
    def __init__(self, intake):
        self.intake = intake
        self.watch_slots = threading.BoundedSemaphore(WATCH_SLOTS)

    def UploadMaterial(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("the first message of an upload must be its header")

        def chunks():
            for msg in request_iterator:
                if msg.WhichOneof("part") != "chunk":
                    raise InvalidArgument("only the first message of an upload may be a header")
                yield msg.chunk

        return intake_pb2.Upload(**self.intake.upload(_as_dict(first.header), chunks()))

    def SubmitCase(self, request, context):
        return case_to_proto(self.intake.submit(_as_dict(request)))

    def GetCase(self, request, context):
        return case_to_proto(self.intake.get_case(request.case_no))

    def SupplementCase(self, request, context):
        return case_to_proto(self.intake.supplement(_as_dict(request)))

    def WithdrawCase(self, request, context):
        return case_to_proto(self.intake.withdraw(_as_dict(request)))

    def WatchCase(self, request, context):
        # a watch holds a server thread while it lasts: at most WATCH_SLOTS at once, so that
        # watchers never crowd out submissions
        if not self.watch_slots.acquire(blocking=False):
            raise TooLarge(f"too many cases are being watched right now (limit {WATCH_SLOTS}); "
                           "try again shortly or poll GetCase")
        try:
            for doc in self.intake.watch(request.case_no, context.is_active):
                yield case_to_proto(doc)
        finally:
            self.watch_slots.release()

    def ListCases(self, request, context):
        docs, token = self.intake.list_cases(_as_dict(request))
        return intake_pb2.ListCasesResponse(cases=[case_to_proto(d) for d in docs], next_page_token=token)


def build(port=None):
    s = settings()
    telemetry.setup("intake")
    intake = build_intake()
    name = intake_pb2.DESCRIPTOR.services_by_name["IntakeService"].full_name
    return ApiServer(port or s.port("intake"), [(intake_pb2_grpc.add_IntakeServiceServicer_to_server,
                                                IntakeApi(intake))], [name])


if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.INFO)
    build().serve_forever()
