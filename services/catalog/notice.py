"""What the applicant is told: the package's steps, the savings against doing its items one by one,
and the one-time notice (一次告知) as readable lines. Pure Python, over a resolution
(services.catalog.resolution)."""
from services.catalog.definitions import DEFAULT_STEPS_SEPARATELY, DEFAULT_TRIPS_SEPARATELY, topological_order

CHANNEL_NAMES = {"DELIVERY_CHANNEL_ELECTRONIC": "电子送达（网上下载）", "DELIVERY_CHANNEL_WINDOW": "窗口领取",
                 "DELIVERY_CHANNEL_MAIL": "邮寄送达"}
RESULT_NAMES = {"RESULT_TYPE_LICENSE": "证照", "RESULT_TYPE_RECORD": "登记/备案", "RESULT_TYPE_PAYMENT": "待遇/款项发放"}


def stages(items):
    """Items grouped by depth in the prerequisite graph: each group runs in parallel."""
    by_code = {i["code"]: i for i in items}
    depth: dict[str, int] = {}
    for code in topological_order(items):
        depth[code] = 1 + max((depth[p] for p in by_code[code].get("prerequisites", []) if p in depth), default=0)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=0))]
    for item in items:
        out[depth[item["code"]] - 1].append(item["code"])
    return out


def steps(pkg):
    """The package's steps as the applicant meets them: apply once, one window accepts, the
    departments' stages (parallel inside a stage), one delivery."""
    names = {i["code"]: i for i in pkg["items"]}
    out = [{"number": 1, "name": "一表申请：填写一张表单、提交一套材料（网上或综合窗口）", "item_codes": [],
            "promised_limit_days": 0},
           {"number": 2, "name": "一窗受理：综合窗口受理并一次性告知补正", "item_codes": [], "promised_limit_days": 0}]
    for n, stage in enumerate(stages(pkg["items"]), start=1):
        out.append({"number": len(out) + 1, "name": f"联办第{n}段（并联）：" + "、".join(names[c]["name"] for c in stage),
                    "item_codes": stage,
                    "promised_limit_days": max(names[c]["promised_limit_days"] for c in stage)})
    channels = "、".join(CHANNEL_NAMES[c] for c in pkg.get("delivery_channels", [])) or "窗口领取"
    out.append({"number": len(out) + 1, "name": f"统一出件：{channels}", "item_codes": [], "promised_limit_days": 0})
    return out


def savings(pkg):
    """The package against the same selected items done one by one."""
    items = pkg["items"]
    sep = [i.get("separately") or {} for i in items]
    return {
        "package_code": pkg["code"], "region_code": pkg["region_code"], "version": pkg.get("version", 0),
        "working_days_separately": sum(s.get("days", i["promised_limit_days"]) for s, i in zip(sep, items, strict=True)),
        "working_days_together": pkg["promised_limit_days"],
        "steps_separately": sum(s.get("steps", DEFAULT_STEPS_SEPARATELY) for s in sep),
        "steps_together": len(steps(pkg)),
        "materials_separately": sum(s.get("materials", len(i.get("material_codes", []))) for s, i in zip(sep, items, strict=True)),
        "materials_together": len(pkg["materials"]),
        "trips_separately": sum(s.get("trips", DEFAULT_TRIPS_SEPARATELY) for s in sep),
        "trips_together": pkg.get("trips", 1),
    }


def notice_text(pkg, step_list, figures):
    """The one-time notice (一次告知) as readable lines."""
    dept = {d["code"]: d["name"] for d in pkg["departments"]}
    lines = [f"【{pkg['name']}】{pkg['code']} 第{pkg['version']}版 · {pkg['region_name'] or pkg['region_code']}"
             f"（{pkg['region_code']}）· 实施编码 {pkg['implementing_code']}",
             f"牵头部门：{dept.get(pkg['lead_department'], pkg['lead_department'])}；适用层级：{' → '.join(pkg['levels'])}"]
    if pkg.get("policy"):
        lines.append(f"政策依据：{pkg['policy']}")
    lines.append("一、申请条件")
    lines += [f"  {n}. {c}" for n, c in enumerate(pkg["conditions"], 1)] or ["  无特别条件"]
    named = [p for p in pkg.get("parties", []) if p.get("required")]
    if named:  # whom the case is about: each named with name and ID number at submission
        lines.append("  申请时须填写当事人：" + "、".join(f"{p['name']}（{p['role']}）" for p in named))
    lines.append("二、情形")
    for s in pkg["situations"]:
        label = next((a["label"] for a in s["answers"] if a["value"] == s["answer"]), s["answer"])
        lines.append(f"  {s['question']}（{s['key']}）：{label}"
                     f"{'（默认）' if s['answer'] == s['default_answer'] else ''}")
    if not pkg["situations"]:
        lines.append("  无")
    lines.append("三、办理事项")
    for i in pkg["items"]:
        body = (i.get("implementing_body") or {}).get("name") or dept.get(i["department_code"], i["department_code"])
        result = (i.get("result") or {})
        what = result.get("license_type_name") or RESULT_NAMES.get(result.get("type") or "", "")
        lines.append(f"  {i['code']} {i['name']} — {body}；法定{i['statutory_limit_days']}个工作日，"
                     f"承诺{i['promised_limit_days']}个工作日（{i['promised_limit_source']}）；结果：{what}；"
                     f"收费：{i.get('fee') or '不收费'}；来源：{i['source_level']}")
    for s in pkg["skipped_items"]:
        why = "本地不提供" if s["reason"] == "switched_off" else f"情形不适用（需 {s['detail']}）"
        lines.append(f"  （不办理）{s['code']} {s['name']}：{why}")
    lines.append("四、一套材料")
    forms = {"paper": "纸质", "scan": "扫描件", "e-licence": "电子证照"}
    for m in pkg["materials"]:
        lines.append(f"  {m['code']} {m['name']}（{'/'.join(forms[f] for f in m['forms'])}）用于 {'、'.join(m['item_codes'])}")
    for m in pkg.get("waived_materials", []):
        lines.append(f"  （免提交）{m['code']} {m['name']}：已持有电子证照 {m['license_type_code']}")
    lines.append("五、办理流程")
    lines += [f"  {s['number']}. {s['name']}" for s in step_list]
    lines.append(f"六、时限：承诺{pkg['promised_limit_days']}个工作日办结（法定{pkg['statutory_limit_days']}个工作日）")
    channels = "、".join(CHANNEL_NAMES[c] for c in pkg.get("delivery_channels", [])) or "窗口领取"
    lines.append(f"七、结果送达：{channels}")
    lines.append(savings_line(figures))
    return lines


def savings_line(f):
    return (f"八、减时间 {f['working_days_separately']}→{f['working_days_together']} 个工作日；"
            f"减环节 {f['steps_separately']}→{f['steps_together']}；减材料 {f['materials_separately']}→"
            f"{f['materials_together']}；减跑动 {f['trips_separately']}→{f['trips_together']} 次")
