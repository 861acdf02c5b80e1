"""What `make run-sites` shows once the three sites are up (infra/multisite.py):

1. A case with a provincial item: 新生儿出生 in 广州 with 生育津贴 asked for. 生育津贴申领 is the
   province's (implementing_level: province): its task goes up the link to the province's 医保 desk and
   the opinion comes back down.
2. A cross-city case (跨城通办): an enterprise opened in 深圳 (开办企业, its 营业执照 issued there)
   moves to 广州 (企业迁移, submitted in 深圳). 迁出调档, tax, social insurance and housing fund are
   decided in 深圳; 迁入登记 by 广州's 市场监管 desk, through the province, and the new 营业执照 is
   issued.
Every licence's document is then verified at all three sites (VerifyLicenseDocument, with the keys
the province's key directory handed round).

    python -m tools.sites_demo
"""
import random
import sys
import time
import urllib.request

from infra import multisite
from onething.catalog.v1 import catalog_pb2
from onething.common.v1 import common_pb2
from onething.elicense.v1 import elicense_pb2
from onething.intake.v1 import intake_pb2
from services.common import telemetry
from services.common.ids import credit_code_check_char
from tools.client import Suite, citizen_id

DONE = {intake_pb2.CASE_STATUS_DELIVERED, intake_pb2.CASE_STATUS_REJECTED}


def site_suite(region):
    return Suite(region=region, addresses={name: f"127.0.0.1:{port}"
                                           for name, port in multisite.api_ports(region).items()})


def wait_offered(suite, region, code, timeout=60.0):
    """A city offers the province's packages once their versions have come down the link."""
    deadline = time.time() + timeout
    while True:
        offered = {p.code for p in suite.catalog.ListPackages(catalog_pb2.ListPackagesRequest(region_code=region),
                                                               timeout=10).packages}
        if code in offered:
            return
        if time.time() > deadline:
            raise SystemExit(f"{region} does not offer {code} after {timeout:.0f} s: has the province's version "
                             "come down the link?")
        time.sleep(0.5)


def submit(suite, region, package, applicant, parties=None, situations=None, form=None, skip=()):
    codes = [c for c in suite.required_materials(package, region, situations) if c not in skip]
    materials = suite.upload_all(applicant.id_number, codes)
    return suite.submit(applicant, materials, package=package, region=region, parties=parties,
                        situations=situations, form=form)


def show(suite, case):
    session = suite.session(case.case_no)
    for task in session.tasks:
        print(f"    {task.department_code:5s} {task.region_code} {task.item_name:18s} "
              f"{'by ' + task.decided_by if task.decided_by else '':28s} {task.reason}")


def newborn_with_allowance(gz):
    applicant = common_pb2.Applicant(id_number=citizen_id(), name="李华", phone="13800000000")
    case = submit(gz, "440100", "XSECS", applicant, situations={"allowance": "yes"})
    print(f"  submitted {case.case_no} in 广州 (新生儿出生, with 生育津贴)")
    case = gz.wait_status(case.case_no, DONE, timeout=120)
    show(gz, case)
    return case


def enterprise_moves(sz, gz_region="440100"):
    """开办企业 in 深圳, then 企业迁移 from 深圳 into 广州, submitted in 深圳."""
    body = f"91440300MA5{random.randint(0, 999999):06d}"
    enterprise = common_pb2.Party(role="enterprise", name="示例迁移科技有限公司", id_number=body + credit_code_check_char(body))
    person = common_pb2.Applicant(id_number=citizen_id(), name="陈明", phone="13900000000")
    opened = submit(sz, "440300", "KBQY", person, parties=[enterprise])
    print(f"  opened the enterprise {enterprise.id_number} in 深圳: {opened.case_no}")
    opened = sz.wait_status(opened.case_no, DONE, timeout=120)
    if opened.status != intake_pb2.CASE_STATUS_DELIVERED:
        raise SystemExit(f"开办企业 ended {intake_pb2.CaseStatus.Name(opened.status)}")
    package = sz.package("QYQY", "440300")
    from tools.client import demo_form
    form = demo_form(package, person, [enterprise])
    form.update({"move_from_region": "440300", "move_to_region": gz_region, "new_address": "广州市天河区示例路1号"})
    case = submit(sz, "440300", "QYQY", person, parties=[enterprise], form=form)
    print(f"  submitted {case.case_no} in 深圳 (企业迁移 深圳 → 广州)")
    case = sz.wait_status(case.case_no, DONE, timeout=120)
    show(sz, case)
    return case


def verify_everywhere(suite, case, suites):
    """Each licence's document, as the applicant downloads it, verified at every site."""
    ok = True
    delivery = suite.delivery_of(case.case_no)
    for result in delivery.results:
        if not result.download_url:
            continue
        with urllib.request.urlopen(result.download_url, timeout=10) as response:
            document = response.read()
        answers = {}
        for region, other in suites.items():
            check = other.elicense.VerifyLicenseDocument(
                elicense_pb2.VerifyLicenseDocumentRequest(document=document), timeout=10)
            answers[region] = check
            ok = ok and check.valid
        print(f"    {result.license_id}: " + ", ".join(
            f"{r} {'verified' if a.valid else 'NOT VALID: ' + a.reason}" for r, a in answers.items()))
    return ok


def main():
    telemetry.setup("sites-demo")
    suites = {region: site_suite(region) for region in multisite.REGIONS}
    gz, sz = suites["440100"], suites["440300"]
    for region, code in (("440100", "XSECS"), ("440300", "KBQY"), ("440300", "QYQY")):
        wait_offered(suites[region], region, code)
    print("1. a provincial item")
    first = newborn_with_allowance(gz)
    print("2. a cross-city case")
    second = enterprise_moves(sz)
    print("licences, verified at every site:")
    ok = verify_everywhere(gz, first, suites) & verify_everywhere(sz, second, suites)
    ended = [intake_pb2.CaseStatus.Name(c.status) for c in (first, second)]
    print(f"\n{first.case_no}: {ended[0]}   {second.case_no}: {ended[1]}")
    print("the sites keep running; stop them with: make sites-down")
    good = all(c.status == intake_pb2.CASE_STATUS_DELIVERED for c in (first, second)) and ok
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
