"""tools/bench_statistics, small: the made-up ratings are counted into daily figures whose statistics
equal one aggregation over the ratings (the tool refuses to print figures otherwise), and its
database is dropped afterwards."""
import pytest


@pytest.mark.integration
def test_the_statistics_bench_runs_small_and_leaves_nothing(capsys, test_env):
    from services.common import mongo
    from services.common.config import settings
    from tools import bench_statistics
    try:
        bench_statistics.main(["--ratings", "300", "--days", "7", "--tries", "1"])
        out = capsys.readouterr().out
        assert "300 ratings over 7 days stored" in out and "counted into 84 daily figures" in out
        assert "by department, one region" in out
        from services.evaluation.store import EvaluationDoc
        client = EvaluationDoc._get_collection().database.client
        assert f"{settings().db_name('evaluation')}_bench_statistics" not in client.list_database_names()
    finally:
        mongo.disconnect("evaluation")
