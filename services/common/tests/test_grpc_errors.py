"""How the api role answers: domain errors keep their code and message; an outage of a store is
UNAVAILABLE and anything else INTERNAL, without the exception's text reaching the caller."""
import grpc
import pytest
from pymongo.errors import ServerSelectionTimeoutError

from onething.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.common.errors import NotFound
from services.common.grpc_server import ApiServer


class Failing(catalog_pb2_grpc.CatalogServiceServicer):
    def GetPackage(self, request, context):
        raise {"missing": NotFound("there is no package 'X'"),
               "mongo": ServerSelectionTimeoutError("secret-host:27017 refused"),
               "bug": KeyError("internal detail")}[request.code]


@pytest.fixture(scope="module")
def stub():
    server = ApiServer(0, [(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Failing())],
                       ["onething.catalog.v1.CatalogService"]).start()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)
    server.stop(0)


@pytest.mark.parametrize("kind, code, words", [
    ("missing", grpc.StatusCode.NOT_FOUND, "no package"),
    ("mongo", grpc.StatusCode.UNAVAILABLE, "try again"),
    ("bug", grpc.StatusCode.INTERNAL, "the service failed"),
])
def test_errors_map_to_status_codes(stub, kind, code, words):
    with pytest.raises(grpc.RpcError) as err:
        stub.GetPackage(catalog_pb2.GetPackageRequest(code=kind, region_code="440100"), timeout=5)
    assert err.value.code() == code and words in err.value.details()
    assert "secret-host" not in err.value.details() and "internal detail" not in err.value.details()
