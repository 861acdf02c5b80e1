"""Packages (一件事) and their items (单项事): validation and the resolved view for a region.

A package is kept as a plain dict shaped like the onething.catalog.v1.Package message."""
import re

from services.common.errors import InvalidArgument, NotFound

REGION_RE = re.compile(r"[0-9]{6}")


def check_region(region_code):
    if not REGION_RE.fullmatch(region_code or ""):
        raise InvalidArgument(f"region code {region_code!r} is not a 6-digit GB/T 2260 code (e.g. 440100)")


def topological_order(items):
    """Item codes in an order where every prerequisite comes first; a cycle is an error."""
    by_code = {i["code"]: i for i in items}
    order, state = [], {}

    def visit(code, path):
        if state.get(code) == "done":
            return
        if state.get(code) == "visiting":
            raise InvalidArgument(f"items {' -> '.join(path + [code])} form a cycle")
        state[code] = "visiting"
        for pre in by_code[code].get("prerequisites", []):
            visit(pre, path + [code])
        state[code] = "done"
        order.append(code)

    for item in items:
        visit(item["code"], [])
    return order


def validate_package(pkg, departments):
    """Raise InvalidArgument naming the first thing wrong with a package definition."""
    for key in ("code", "name", "version", "items", "lead_department"):
        if not pkg.get(key):
            raise InvalidArgument(f"package {pkg.get('code', '?')} has no {key}")
    codes = {i["code"] for i in pkg["items"]}
    materials = {m["code"] for m in pkg.get("materials", [])}
    if pkg["lead_department"] not in departments:
        raise InvalidArgument(f"package {pkg['code']}: lead department {pkg['lead_department']} is unknown")
    for item in pkg["items"]:
        if item.get("department_code") not in departments:
            raise InvalidArgument(f"item {item['code']}: department {item.get('department_code')} is unknown")
        for pre in item.get("prerequisites", []):
            if pre not in codes:
                raise InvalidArgument(f"item {item['code']}: prerequisite {pre} is not in the package")
        for m in item.get("material_codes", []):
            if m not in materials:
                raise InvalidArgument(f"item {item['code']}: material {m} is not declared by the package")
    topological_order(pkg["items"])


def _longest_path(items, key):
    by_code = {i["code"]: i for i in items}
    best = {}
    for code in topological_order(items):
        item = by_code[code]
        before = max((best[p] for p in item.get("prerequisites", [])), default=0)
        best[code] = before + int(item.get(key, 0))
    return max(best.values(), default=0)


def resolve(pkg, region_code, departments):
    """The package as it applies in `region_code`, with its departments and whole-case limits
    (the longest chain of prerequisite items, since the rest runs in parallel)."""
    check_region(region_code)
    used = []
    for code in [pkg["lead_department"]] + [i["department_code"] for i in pkg["items"]]:
        if code not in used:
            used.append(code)
    out = dict(pkg)
    out["region_code"] = region_code
    out["departments"] = [{"code": c, "name": departments[c]} for c in used]
    out["promised_limit_days"] = _longest_path(pkg["items"], "promised_limit_days")
    out["statutory_limit_days"] = _longest_path(pkg["items"], "statutory_limit_days")
    return out


def required_materials(pkg):
    """Material codes the applicant must hand in: those any item of the package needs."""
    needed = []
    for item in pkg["items"]:
        for m in item.get("material_codes", []):
            if m not in needed:
                needed.append(m)
    return needed


def not_found(code, region_code):
    return NotFound(f"there is no package {code!r} in region {region_code}; ListPackages shows what is offered")
