"""The demo: one 新生儿出生 case from upload to rating, through every service of the running suite.
Prints the case's final status, its licences and its cross-service timeline.

    make run            (starts everything first)
    python -m tools.demo

Each call carries the token of whoever makes it (tools/client.py mints them with the local identity
provider's key): the applicant uploads, submits, follows the case, reads the licences and the
delivery and rates it; the licences are verified as the public would, with the QR code's token.
"""
import sys
import time

from onething.intake.v1 import intake_pb2
from onething.joint_review.v1 import joint_review_pb2
from services.common import telemetry
from tools import timeline
from tools.client import Suite


def main():
    tracer = telemetry.setup("demo-client")
    suite = Suite()
    with tracer.start_as_current_span("demo 新生儿出生一件事") as root:
        case = suite.newborn_case()
        telemetry.mark_case(case.case_no, root)
        print(f"submitted case {case.case_no} ({case.package_code} v{case.package_version}, region {case.region_code})")
        case = suite.wait_status(case.case_no, {intake_pb2.CASE_STATUS_DELIVERED, intake_pb2.CASE_STATUS_REJECTED})
        session = suite.session(case.case_no)
        for task in session.tasks:
            print(f"  {task.department_code:5s} {task.item_name:16s} {joint_review_pb2.TaskState.Name(task.state):20s}"
                  f" {task.reason}")
        if case.status == intake_pb2.CASE_STATUS_DELIVERED:
            suite.rate(case.case_no, case.applicant.id_number)
            case = suite.wait_status(case.case_no, {intake_pb2.CASE_STATUS_RATED})
    print(f"\nfinal status: {intake_pb2.CaseStatus.Name(case.status)}")
    print("licences:")
    for lic in suite.licenses(case.case_no):
        check = suite.verify(lic.license_id)
        print(f"  {lic.license_id}  {lic.type_name}  holder {lic.holder_name}  "
              f"{'verified' if check.valid else 'NOT VALID: ' + check.reason}")
    delivery = suite.delivery_of(case.case_no)
    for r in delivery.results:
        print(f"  download: {r.download_url[:90]}…")
    print()
    telemetry.flush()  # this process's spans (the demo's own root span) reach the span folder
    time.sleep(1.0)  # and every process exports what it has within a second
    timeline.print_case(case.case_no)
    print("\nthe suite keeps running; stop it with: make stop")
    return 0 if case.status == intake_pb2.CASE_STATUS_RATED else 1


if __name__ == "__main__":
    sys.exit(main())
