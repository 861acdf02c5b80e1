"""好差评: grades, the dimensions of each channel, and what a 差评 needs; the enums' explicit
mappings to the proto numbers and to the strings the store keeps."""
import pytest

from onething.evaluation.v1 import evaluation_pb2 as pb
from services.common.errors import InvalidArgument
from services.evaluation import domain
from services.evaluation.domain import Grade, RectificationStatus, StatisticsGroup

GOOD = [Grade.VERY_SATISFIED, Grade.SATISFIED, Grade.BASICALLY_SATISFIED]
BAD = [Grade.DISSATISFIED, Grade.VERY_DISSATISFIED]
ONLINE = {"整体满意度": 5, "办事效率": 4, "指南精确度": 3, "便捷度": 2, "平台操作性": 1}
WINDOW = {"整体": 5, "效率": 5, "水平": 4, "态度": 1}


def test_five_grades_two_of_them_bad():
    assert list(domain.GRADES) == GOOD + BAD
    assert set(domain.BAD) == set(BAD)


@pytest.mark.parametrize("grade", GOOD)
def test_good_grade_is_not_flagged(grade):
    assert domain.check(grade, "online", ONLINE, "") is False
    assert domain.check(grade, "window", WINDOW, None) is False


@pytest.mark.parametrize("grade", BAD)
def test_bad_grade_with_comment_is_flagged(grade):
    assert domain.check(grade, "online", ONLINE, "材料退回两次，没有说明原因") is True


@pytest.mark.parametrize("grade", BAD)
@pytest.mark.parametrize("comment", [None, "", "   ", "\n"])
def test_bad_grade_needs_a_comment(grade, comment):
    with pytest.raises(InvalidArgument, match="差评"):
        domain.check(grade, "window", {}, comment)


@pytest.mark.parametrize("grade", ["", None, "GRADE_UNSPECIFIED", "VERY_SATISFIED", "grade_satisfied", "very_satisfied",
                                   2])
def test_unknown_grade(grade):
    with pytest.raises(InvalidArgument, match="choose a grade"):
        domain.check(grade, "online", {}, "x")


@pytest.mark.parametrize("channel", ["", None, "phone", "Online"])
def test_unknown_channel_is_named(channel):
    with pytest.raises(InvalidArgument) as err:
        domain.check(Grade.SATISFIED, channel, {}, "")
    assert repr(channel) in err.value.message and "online" in err.value.message and "window" in err.value.message


def test_channel_dimensions():
    assert domain.DIMENSIONS["online"] == ("整体满意度", "办事效率", "指南精确度", "便捷度", "平台操作性")
    assert domain.DIMENSIONS["window"] == ("整体", "效率", "水平", "态度")


def test_no_dimensions_is_fine():
    assert domain.check(Grade.SATISFIED, "online", None, "") is False
    assert domain.check(Grade.SATISFIED, "online", {}, "") is False


def test_online_dimension_is_not_a_window_dimension():
    with pytest.raises(InvalidArgument) as err:
        domain.check(Grade.SATISFIED, "window", {"办事效率": 5}, "")
    assert "办事效率" in err.value.message and "整体、效率、水平、态度" in err.value.message


def test_window_dimension_is_not_an_online_dimension():
    with pytest.raises(InvalidArgument, match="态度"):
        domain.check(Grade.SATISFIED, "online", {"态度": 5}, "")


@pytest.mark.parametrize("score", [0, 6, -1, 100])
def test_score_out_of_range(score):
    with pytest.raises(InvalidArgument) as err:
        domain.check(Grade.SATISFIED, "online", {"便捷度": score}, "")
    assert "便捷度" in err.value.message and "1 to 5" in err.value.message and str(score) in err.value.message


@pytest.mark.parametrize("score", [1, 2, 3, 4, 5])
def test_every_score_in_range(score):
    assert domain.check(Grade.SATISFIED, "window", {"态度": score}, "") is False


def test_dimension_errors_come_before_the_comment_check():
    with pytest.raises(InvalidArgument, match="1 to 5"):
        domain.check(Grade.VERY_DISSATISFIED, "window", {"态度": 0}, "")


@pytest.mark.parametrize("grade", list(Grade))
def test_grade_numbers_are_the_protos(grade):
    assert pb.Grade.Name(domain.GRADE_PROTO[grade]) == "GRADE_" + grade.name
    assert domain.grade_from_proto(domain.GRADE_PROTO[grade]) is grade


def test_unspecified_or_unknown_numbers_are_no_value():
    assert domain.grade_from_proto(pb.GRADE_UNSPECIFIED) is None and domain.grade_from_proto(77) is None
    assert domain.group_from_proto(pb.STATISTICS_GROUP_UNSPECIFIED) is None


def test_status_and_group_numbers_are_the_protos():
    assert {pb.RectificationStatus.Name(n) for n in domain.STATUS_PROTO.values()} == {
        "RECTIFICATION_STATUS_OPEN", "RECTIFICATION_STATUS_CLOSED"}
    for status in RectificationStatus:
        assert pb.RectificationStatus.Name(domain.STATUS_PROTO[status]) == "RECTIFICATION_STATUS_" + status.name
    for group in StatisticsGroup:
        assert pb.StatisticsGroup.Name(domain.GROUP_PROTO[group]) == "STATISTICS_GROUP_" + group.name
        assert domain.group_from_proto(domain.GROUP_PROTO[group]) is group


def test_stored_strings_stay_what_existing_ratings_hold():
    # existing documents hold these strings: renaming a member or a proto value must not change them
    assert [domain.GRADE_STORED[g] for g in domain.GRADES] == [
        "GRADE_VERY_SATISFIED", "GRADE_SATISFIED", "GRADE_BASICALLY_SATISFIED", "GRADE_DISSATISFIED",
        "GRADE_VERY_DISSATISFIED"]
    assert domain.STATUS_STORED == {RectificationStatus.OPEN: "RECTIFICATION_STATUS_OPEN",
                                    RectificationStatus.CLOSED: "RECTIFICATION_STATUS_CLOSED"}
    for grade in Grade:
        assert domain.grade_from_stored(domain.GRADE_STORED[grade]) is grade
    for status in RectificationStatus:
        assert domain.status_from_stored(domain.STATUS_STORED[status]) is status
    with pytest.raises(KeyError):
        domain.grade_from_stored("GRADE_UNSPECIFIED")
