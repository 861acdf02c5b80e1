"""The catalog from the command line, over gRPC to the running catalog api.

    python -m tools.catalog_cli list --region 440300 [--audience person|enterprise]
    python -m tools.catalog_cli notice XSECS --region 440100 [--situation maternity=no ...] [--held 111 ...]
    python -m tools.catalog_cli savings XSECS --region 440100 [--situation key=value ...]
    python -m tools.catalog_cli versions XSECS
    python -m tools.catalog_cli reload | publish XSECS [--version N] | retire XSECS [--version N]

Reads are public. versions, reload, publish and retire are an operator's: they send --token, or a
token minted with the local identity provider's key (var/auth) for an operator of --operator-region
(the site's region by default; development only).

Exit status 0 on success, 1 when the catalog refused the request, 2 when it cannot be reached.
"""
import argparse
import sys

import grpc

from onething.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.common.config import settings
from services.common.grpc_client import channel

AUDIENCES = {"person": catalog_pb2.AUDIENCE_PERSON, "enterprise": catalog_pb2.AUDIENCE_ENTERPRISE}
AUDIENCE_NAMES = {catalog_pb2.AUDIENCE_PERSON: "个人 PERSON", catalog_pb2.AUDIENCE_ENTERPRISE: "企业 ENTERPRISE"}
STATUS_NAMES = {catalog_pb2.VERSION_STATUS_DRAFT: "draft", catalog_pb2.VERSION_STATUS_PUBLISHED: "published",
                catalog_pb2.VERSION_STATUS_RETIRED: "retired"}
OUTCOME_NAMES = {catalog_pb2.RELOAD_OUTCOME_PUBLISHED: "published", catalog_pb2.RELOAD_OUTCOME_DRAFTED: "drafted",
                 catalog_pb2.RELOAD_OUTCOME_DRAFT_UPDATED: "draft_updated",
                 catalog_pb2.RELOAD_OUTCOME_UNCHANGED: "unchanged"}


def _moment(version, field):
    """A PackageVersion's Timestamp field as RFC 3339 (UTC), "-" when unset."""
    return getattr(version, field).ToJsonString() if version.HasField(field) else "-"


def _situations(pairs):
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --situation takes key=value, not {pair!r}")
        out[key] = value
    return out


def _request(args):
    return catalog_pb2.GetPackageRequest(code=args.code, region_code=args.region, version=args.version,
                                         situations=_situations(args.situation), held_license_types=args.held or [])


def savings_lines(s):
    def row(label, measure, before, after):
        saved = before - after
        pct = f"{saved * 100 // before}%" if before else "-"
        return f"  {label:<6}{measure:<28}{before:>6} → {after:<6} (−{saved}, {pct})"
    return [f"{s.package_code} v{s.version} in {s.region_code}: the package against the same items one by one",
            row("减时间", "working days (承诺, 工作日)", s.working_days_separately, s.working_days_together),
            row("减环节", "steps (环节)", s.steps_separately, s.steps_together),
            row("减材料", "materials (材料)", s.materials_separately, s.materials_together),
            row("减跑动", "trips (跑动次数)", s.trips_separately, s.trips_together)]


def _operator_metadata(args):
    token = args.token
    if not token:
        from services.common import auth
        token = auth.mint(args.operator, "operator", region=args.operator_region, hours=1)
    return (("authorization", f"Bearer {token}"),)


def run(argv, stub, out):
    p = argparse.ArgumentParser(prog="python -m tools.catalog_cli", description=__doc__.split("\n\n")[0])
    p.add_argument("--token", default="", help="an operator's bearer token (else one is minted locally)")
    p.add_argument("--operator", default="operator-cli", help="the operator a locally minted token names")
    p.add_argument("--operator-region", default=settings().region)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("notice", "savings"):
        c = sub.add_parser(name)
        c.add_argument("code")
        c.add_argument("--region", default=settings().region)
        c.add_argument("--situation", action="append", metavar="KEY=VALUE")
        c.add_argument("--held", action="append", metavar="LICENCE_TYPE", help="a licence type the applicant holds")
        c.add_argument("--version", type=int, default=0)
    c = sub.add_parser("list")
    c.add_argument("--region", default=settings().region)
    c.add_argument("--audience", choices=sorted(AUDIENCES))
    c = sub.add_parser("versions")
    c.add_argument("code")
    sub.add_parser("reload")
    for name in ("publish", "retire"):
        c = sub.add_parser(name)
        c.add_argument("code")
        c.add_argument("--version", type=int, default=0)
    args = p.parse_args(argv)

    if args.command == "notice":
        notice = stub.GetNotice(_request(args), timeout=10)
        for line in notice.text:
            print(line, file=out)
    elif args.command == "savings":
        for line in savings_lines(stub.GetSavings(_request(args), timeout=10)):
            print(line, file=out)
    elif args.command == "list":
        resp = stub.ListPackages(catalog_pb2.ListPackagesRequest(
            region_code=args.region, audience=AUDIENCES.get(args.audience, catalog_pb2.AUDIENCE_UNSPECIFIED)), timeout=10)
        print(f"{len(resp.packages)} packages in {args.region}:", file=out)
        for pkg in resp.packages:
            print(f"  {pkg.code:<8} v{pkg.version:<3} {AUDIENCE_NAMES.get(pkg.audience, ''):<14} {pkg.name}"
                  f"  [{pkg.source_level}] {len(pkg.items)} items, {pkg.promised_limit_days} working days, "
                  f"implementing code {pkg.implementing_code}", file=out)
    elif args.command == "versions":
        for v in stub.ListVersions(catalog_pb2.ListVersionsRequest(code=args.code), timeout=10,
                                   metadata=_operator_metadata(args)).versions:
            print(f"  {v.code} v{v.version} {STATUS_NAMES.get(v.status, '?'):<10} {v.digest[:12]} "
                  f"published {_moment(v, 'published_at')} retired {_moment(v, 'retired_at')}", file=out)
    elif args.command == "reload":
        for c in stub.ReloadCatalog(catalog_pb2.ReloadCatalogRequest(), timeout=30,
                                    metadata=_operator_metadata(args)).changes:
            print(f"  {c.code:<8} v{c.version:<3} {OUTCOME_NAMES.get(c.outcome, '?')}", file=out)
    else:
        rpc = stub.PublishPackage if args.command == "publish" else stub.RetirePackage
        req_cls = catalog_pb2.PublishPackageRequest if args.command == "publish" else catalog_pb2.RetirePackageRequest
        v = rpc(req_cls(code=args.code, version=args.version), timeout=10, metadata=_operator_metadata(args))
        print(f"{v.code} v{v.version} is now {STATUS_NAMES.get(v.status, '?')}", file=out)
    return 0


def main(argv=None, address=None, out=None, err=None):
    out, err = out or sys.stdout, err or sys.stderr
    address = address or settings().address("catalog")
    stub = catalog_pb2_grpc.CatalogServiceStub(channel(address))
    try:
        return run(argv if argv is not None else sys.argv[1:], stub, out)
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            print(f"error: the catalog api at {address} cannot be reached ({exc.code().name}); is the suite up?",
                  file=err)
            return 2
        print(f"error: {exc.code().name}: {exc.details()}", file=err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
