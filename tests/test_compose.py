"""compose/docker-compose.yml: parses, pins its images, publishes ports on loopback only, holds no secret.
(There is no Docker engine here to run it.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

COMPOSE = Path(__file__).resolve().parents[1] / "compose" / "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert set(doc["services"]) == {"postgres", "weaviate"}
    return doc["services"]


def test_images_are_pinned(services):
    from vecface.backends.weaviate_install import PINNED_VERSION

    for svc in services.values():
        name, _, tag = svc["image"].rpartition(":")
        assert name and re.search(r"\d+\.\d+\.\d+", tag), svc["image"]  # an exact release, never "latest"
    assert services["weaviate"]["image"] == f"semitechnologies/weaviate:{PINNED_VERSION}"
    assert re.fullmatch(r"pgvector/pgvector:0\.8\.\d+-pg18", services["postgres"]["image"])


def test_ports_are_loopback_only(services):
    published = {}
    for name, svc in services.items():
        for port in svc["ports"]:
            host_ip, host_port, container_port = str(port).split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            published[name, int(container_port)] = int(host_port)
    assert published == {("postgres", 5432): 5432, ("weaviate", 8080): 8080, ("weaviate", 50051): 50051}


def test_volumes_and_no_secrets(services):
    for svc in services.values():
        assert svc["volumes"], "data must survive the container"
    password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert re.fullmatch(r"\$\{VECFACE_PG_PASSWORD:-[^}]+\}", password), "the password comes from the environment"
    weaviate_env = services["weaviate"]["environment"]
    assert not any("APIKEY_ALLOWED_KEYS" in k for k in weaviate_env)
    assert weaviate_env["DEFAULT_VECTORIZER_MODULE"] == "none"
