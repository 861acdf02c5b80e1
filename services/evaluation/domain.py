"""好差评 (GB/T 39734/39735): five grades, the bottom two are 差评; dimensions scored 1 to 5."""
from services.common.errors import InvalidArgument

GRADES = ("GRADE_VERY_SATISFIED", "GRADE_SATISFIED", "GRADE_BASICALLY_SATISFIED", "GRADE_DISSATISFIED",
          "GRADE_VERY_DISSATISFIED")
BAD = ("GRADE_DISSATISFIED", "GRADE_VERY_DISSATISFIED")
DIMENSIONS = {
    "online": ("整体满意度", "办事效率", "指南精确度", "便捷度", "平台操作性"),
    "window": ("整体", "效率", "水平", "态度"),
}


def check(grade, channel, dimensions, comment):
    if grade not in GRADES:
        raise InvalidArgument("choose a grade: VERY_SATISFIED, SATISFIED, BASICALLY_SATISFIED, DISSATISFIED "
                              "or VERY_DISSATISFIED")
    if channel not in DIMENSIONS:
        raise InvalidArgument(f"the rating channel must be one of {', '.join(DIMENSIONS)}, not {channel!r}")
    for name, score in (dimensions or {}).items():
        if name not in DIMENSIONS[channel]:
            raise InvalidArgument(f"{name!r} is not a {channel} dimension; use {'、'.join(DIMENSIONS[channel])}")
        if not 1 <= int(score) <= 5:
            raise InvalidArgument(f"dimension {name} is scored 1 to 5, not {score}")
    if grade in BAD and not (comment or "").strip():
        raise InvalidArgument("a 差评 needs a comment saying what went wrong, so it can be put right")
    return grade in BAD
