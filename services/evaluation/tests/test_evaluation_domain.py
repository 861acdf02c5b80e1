"""好差评: grades, the dimensions of each channel, and what a 差评 needs."""
import pytest

from services.common.errors import InvalidArgument
from services.evaluation import domain

GOOD = ["GRADE_VERY_SATISFIED", "GRADE_SATISFIED", "GRADE_BASICALLY_SATISFIED"]
BAD = ["GRADE_DISSATISFIED", "GRADE_VERY_DISSATISFIED"]
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


@pytest.mark.parametrize("grade", ["", None, "GRADE_UNSPECIFIED", "VERY_SATISFIED", "grade_satisfied"])
def test_unknown_grade(grade):
    with pytest.raises(InvalidArgument, match="choose a grade"):
        domain.check(grade, "online", {}, "x")


@pytest.mark.parametrize("channel", ["", None, "phone", "Online"])
def test_unknown_channel_is_named(channel):
    with pytest.raises(InvalidArgument) as err:
        domain.check("GRADE_SATISFIED", channel, {}, "")
    assert repr(channel) in err.value.message and "online" in err.value.message and "window" in err.value.message


def test_channel_dimensions():
    assert domain.DIMENSIONS["online"] == ("整体满意度", "办事效率", "指南精确度", "便捷度", "平台操作性")
    assert domain.DIMENSIONS["window"] == ("整体", "效率", "水平", "态度")


def test_no_dimensions_is_fine():
    assert domain.check("GRADE_SATISFIED", "online", None, "") is False
    assert domain.check("GRADE_SATISFIED", "online", {}, "") is False


def test_online_dimension_is_not_a_window_dimension():
    with pytest.raises(InvalidArgument) as err:
        domain.check("GRADE_SATISFIED", "window", {"办事效率": 5}, "")
    assert "办事效率" in err.value.message and "整体、效率、水平、态度" in err.value.message


def test_window_dimension_is_not_an_online_dimension():
    with pytest.raises(InvalidArgument, match="态度"):
        domain.check("GRADE_SATISFIED", "online", {"态度": 5}, "")


@pytest.mark.parametrize("score", [0, 6, -1, 100])
def test_score_out_of_range(score):
    with pytest.raises(InvalidArgument) as err:
        domain.check("GRADE_SATISFIED", "online", {"便捷度": score}, "")
    assert "便捷度" in err.value.message and "1 to 5" in err.value.message and str(score) in err.value.message


@pytest.mark.parametrize("score", [1, 2, 3, 4, 5])
def test_every_score_in_range(score):
    assert domain.check("GRADE_SATISFIED", "window", {"态度": score}, "") is False


def test_dimension_errors_come_before_the_comment_check():
    with pytest.raises(InvalidArgument, match="1 to 5"):
        domain.check("GRADE_VERY_DISSATISFIED", "window", {"态度": 0}, "")
