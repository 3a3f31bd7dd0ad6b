"""TLS on both servers when the config names a certificate and key."""

from __future__ import annotations

import datetime
import json
import ssl
import urllib.request

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "node.crt").write_bytes(cert_pem)
    (tmp_path / "node.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_pem


def test_both_servers_speak_tls_with_the_configured_certificate(node_factory, tmp_path):
    cert_pem = self_signed(tmp_path)
    node = node_factory(
        "tls",
        CORAL_TLS_CERT_FILE=str(tmp_path / "node.crt"),
        CORAL_TLS_KEY_FILE=str(tmp_path / "node.key"),
    )
    assert node.http.startswith("https://")
    ctx = ssl.create_default_context(cadata=cert_pem.decode())
    port = node.http.rsplit(":", 1)[1]
    with urllib.request.urlopen(
        f"https://localhost:{port}/healthz", context=ctx, timeout=10
    ) as resp:
        assert json.loads(resp.read()) == {"status": "ok"}
    grpc_port = node.grpc.rsplit(":", 1)[1]
    creds = grpc.ssl_channel_credentials(root_certificates=cert_pem)
    with grpc.secure_channel(f"localhost:{grpc_port}", creds) as channel:
        resp = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(f"localhost:{grpc_port}") as plain:
        try:
            health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=3)
            raised = False
        except grpc.RpcError:
            raised = True
        assert raised, "plaintext gRPC must not be served when TLS is on"
