"""services/common/recent: the copies a process keeps of what it last saved or read."""
from services.common.recent import Recent


def test_a_copy_is_the_parts_as_kept_and_changing_either_leaves_the_other():
    recent = Recent()
    body = {"tasks": [{"state": "assigned"}]}
    recent.put("C1", body, {"applicant": "A"}, 3)
    body["tasks"][0]["state"] = "changed after it was kept"
    got = recent.get("C1")
    assert got == ({"tasks": [{"state": "assigned"}]}, {"applicant": "A"}, 3)
    got[0]["tasks"].clear()
    assert recent.get("C1")[0] == {"tasks": [{"state": "assigned"}]}
    assert (recent.hits, recent.misses) == (2, 0)


def test_the_oldest_go_first_and_a_dropped_or_unknown_key_has_none():
    recent = Recent(size=2)
    recent.put("C1", 1)
    recent.put("C2", 2)
    recent.get("C1")  # read: still the oldest kept, since only a put renews
    recent.put("C3", 3)
    assert recent.get("C1") is None and recent.get("C2") == (2,) and recent.get("C3") == (3,)
    recent.put("C2", 22)  # renewed: C3 is now the oldest
    recent.put("C4", 4)
    assert recent.get("C3") is None and recent.get("C2") == (22,)
    recent.drop("C2")
    recent.drop("never kept")
    assert recent.get("C2") is None and recent.misses == 3
