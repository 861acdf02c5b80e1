"""services/common/recent: the copies a process keeps of what it last saved or read."""
from services.common.recent import Recent


def test_a_copy_is_the_parts_as_kept_and_changing_either_leaves_the_other():
    recent = Recent()
    body = {"tasks": [{"state": "assigned"}]}
    recent.put("C1", 3, body, {"applicant": "A"})
    body["tasks"][0]["state"] = "changed after it was kept"
    got = recent.get("C1")
    assert got == ({"tasks": [{"state": "assigned"}]}, {"applicant": "A"}, 3)
    got[0]["tasks"].clear()
    assert recent.get("C1")[0] == {"tasks": [{"state": "assigned"}]}
    assert (recent.hits, recent.misses) == (2, 0)


def test_the_oldest_go_first_and_a_dropped_or_unknown_key_has_none():
    recent = Recent(size=2)
    recent.put("C1", 1, {}, {})
    recent.put("C2", 2, {}, {})
    recent.get("C1")  # read: still the oldest kept, since only a put renews
    recent.put("C3", 3, {}, {})
    assert recent.get("C1") is None and recent.get("C2")[2] == 2 and recent.get("C3")[2] == 3
    recent.put("C2", 22, {}, {})  # renewed: C3 is now the oldest
    recent.put("C4", 4, {}, {})
    assert recent.get("C3") is None and recent.get("C2")[2] == 22
    recent.drop("C2")
    recent.drop("never kept")
    assert recent.get("C2") is None and recent.misses == 3


def test_after_a_save_the_case_is_kept_only_when_given_or_known_for_the_version_before():
    recent = Recent()
    recent.saved("C1", 1, {"v": 1})  # nothing kept before, no case given: nothing to keep
    assert recent.get("C1") is None
    recent.saved("C1", 1, {"v": 1}, {"applicant": "A"})
    recent.saved("C1", 2, {"v": 2})  # from version 1, which is kept: its case goes on
    assert recent.get("C1") == ({"v": 2}, {"applicant": "A"}, 2)
    recent.saved("C1", 4, {"v": 4})  # from version 3, which this process never saw: the case may differ
    assert recent.get("C1") is None


def test_a_copy_without_a_case_has_none_and_a_save_from_it_keeps_none():
    recent = Recent()
    recent.put("C1", 1, {"v": 1})
    assert recent.get("C1") == ({"v": 1}, None, 1)
    recent.saved("C1", 2, {"v": 2})  # from version 1, kept without a case: there is none to go on with
    assert recent.get("C1") is None


def test_datetimes_come_back_aware_in_utc_as_the_suites_clients_read_them():
    import datetime
    recent = Recent()
    at = datetime.datetime(2026, 11, 29, 10, 0, 0, 123000, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
    recent.put("C1", 1, {"submitted_at": at})
    got = recent.get("C1")[0]["submitted_at"]
    assert got == at and got.tzinfo is not None and got.utcoffset() == datetime.timedelta(0)


def test_each_store_object_has_its_own_copies():
    from services.common.recent import PerStore

    class Store:
        kept = PerStore(2)

    one, other = Store(), Store()
    one.kept.put("C1", 1, {})
    assert one.kept is one.kept and one.kept.get("C1") is not None and other.kept.get("C1") is None
    assert one.kept.size == 2 and isinstance(Store.kept, PerStore)


def test_a_copy_advances_only_from_the_version_a_save_started_from():
    recent = Recent()
    recent.put("C1", 1, {"v": 1, "fixed": "x"})
    recent.advanced("C1", 1, lambda body, case: (dict(body, v=2), case))
    assert recent.get("C1") == ({"v": 2, "fixed": "x"}, None, 2)
    recent.advanced("C1", 5, lambda body, case: (body, case))  # from a version this process never kept
    assert recent.get("C1") is None
    recent.put("C1", 1, {"v": 1})
    recent.advanced("C1", 1, lambda body, case: None)  # the change says keep nothing
    assert recent.get("C1") is None
    hits, misses = recent.hits, recent.misses
    recent.advanced("C2", 0, lambda body, case: (body, case))
    assert recent.get("C2") is None and (recent.hits, recent.misses) == (hits, misses + 1)  # only get counts
