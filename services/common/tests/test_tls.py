"""gRPC over TLS and mutual TLS, with a CA made here (cryptography): the api server serves TLS when
its certificate and key are set, clients (services.common.grpc_client.channel) trust the CA; under
mutual TLS a client without a certificate the CA signed is refused during the handshake. The bind
address is a setting."""
import datetime
import ipaddress

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from onething.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.common.grpc_client import channel
from services.common.grpc_server import ApiServer

NAME = ["onething.catalog.v1.CatalogService"]


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer, public_key, signing_key, ca=False, server=False, client=False):
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A self-signed CA, a server certificate for 127.0.0.1/localhost and a client certificate (a
    service), each as PEM files; and a second CA that nobody trusts."""
    d = tmp_path_factory.mktemp("pki")
    files = {}

    def save(name, data):
        path = d / name
        path.write_bytes(data)
        files[name] = str(path)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("onething test CA", "onething test CA", ca_key.public_key(), ca_key, ca=True)
    save("ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    for name, kind in (("server", "server"), ("client", "client")):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"{name}.onething", "onething test CA", key.public_key(), ca_key, **{kind: True})
        save(f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))
        save(f"{name}.key", _pem_key(key))
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue_ca = _cert("rogue CA", "rogue CA", rogue_key.public_key(), rogue_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    save("rogue-client.pem", _cert("rogue", "rogue CA", key.public_key(), rogue_key, client=True)
         .public_bytes(serialization.Encoding.PEM))
    save("rogue-client.key", _pem_key(key))
    save("rogue-ca.pem", rogue_ca.public_bytes(serialization.Encoding.PEM))
    return files


class Catalog(catalog_pb2_grpc.CatalogServiceServicer):
    def GetPackage(self, request, context):  # public: no token needed
        return catalog_pb2.Package(code=request.code, name="tls ok")


def _serve(monkeypatch, pki, mutual):
    monkeypatch.setenv("ONETHING_GRPC_TLS_CERT_FILE", pki["server.pem"])
    monkeypatch.setenv("ONETHING_GRPC_TLS_KEY_FILE", pki["server.key"])
    monkeypatch.setenv("ONETHING_GRPC_TLS_CA_FILE", pki["ca.pem"])
    monkeypatch.setenv("ONETHING_GRPC_TLS_CLIENT_AUTH", "1" if mutual else "0")
    monkeypatch.setenv("ONETHING_GRPC_BIND_HOST", "127.0.0.1")
    server = ApiServer(0, [(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Catalog())], NAME).start()
    assert server.tls
    return server


def _client_env(monkeypatch, pki, ca="ca.pem", cert=None, key=None, tls="1"):
    monkeypatch.setenv("ONETHING_GRPC_TLS", tls)
    monkeypatch.setenv("ONETHING_GRPC_TLS_CA_FILE", pki[ca])
    monkeypatch.setenv("ONETHING_GRPC_TLS_CLIENT_CERT_FILE", pki[cert] if cert else "")
    monkeypatch.setenv("ONETHING_GRPC_TLS_CLIENT_KEY_FILE", pki[key] if key else "")


def _get(address):
    ch = channel(address)
    try:
        return catalog_pb2_grpc.CatalogServiceStub(ch).GetPackage(
            catalog_pb2.GetPackageRequest(code="XSECS", region_code="440100"), timeout=5)
    finally:
        ch.close()


def _refused(address):
    with pytest.raises(grpc.RpcError) as err:
        _get(address)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake failed: nothing was served
    return err.value


def test_tls_server_and_client(monkeypatch, pki):
    server = _serve(monkeypatch, pki, mutual=False)
    address = f"127.0.0.1:{server.port}"
    try:
        _client_env(monkeypatch, pki)
        assert _get(address).name == "tls ok"
        _client_env(monkeypatch, pki, tls="0")            # plaintext to a TLS server: refused
        _refused(address)
        _client_env(monkeypatch, pki, ca="rogue-ca.pem")  # a server certificate it does not trust
        _refused(address)
    finally:
        server.stop(0)


def test_mutual_tls_refuses_a_client_without_a_certificate(monkeypatch, pki):
    server = _serve(monkeypatch, pki, mutual=True)
    address = f"localhost:{server.port}"
    try:
        _client_env(monkeypatch, pki, cert="client.pem", key="client.key")
        assert _get(address).name == "tls ok"
        _client_env(monkeypatch, pki)                     # no client certificate
        _refused(address)
        _client_env(monkeypatch, pki, cert="rogue-client.pem", key="rogue-client.key")  # not the CA's
        _refused(address)
    finally:
        server.stop(0)


def test_mutual_tls_without_a_server_certificate_does_not_start(monkeypatch):
    monkeypatch.setenv("ONETHING_GRPC_TLS_CLIENT_AUTH", "1")
    monkeypatch.delenv("ONETHING_GRPC_TLS_CERT_FILE", raising=False)
    with pytest.raises(RuntimeError, match="mutual TLS"):
        ApiServer(0, [(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Catalog())], NAME)


def test_the_bind_address_is_a_setting(monkeypatch):
    for name in ("ONETHING_GRPC_TLS_CERT_FILE", "ONETHING_GRPC_TLS_KEY_FILE", "ONETHING_GRPC_TLS_CA_FILE",
                 "ONETHING_GRPC_TLS", "ONETHING_GRPC_TLS_CLIENT_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ONETHING_GRPC_BIND_HOST", "::1")
    try:
        server = ApiServer(0, [(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Catalog())], NAME).start()
    except RuntimeError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert _get(f"[::1]:{server.port}").name == "tls ok" and not server.tls
        with pytest.raises(grpc.RpcError):  # not on 127.0.0.1
            ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
            catalog_pb2_grpc.CatalogServiceStub(ch).GetPackage(catalog_pb2.GetPackageRequest(code="X"), timeout=2)
    finally:
        server.stop(0)
