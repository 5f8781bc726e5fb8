"""Shared fixtures: real Pushgateways (and a whole local stack) on 127.0.0.1."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from gangplank.localstack import LocalStack, start_pushgateway
from tests.gateway_tools import read_gateway


@pytest.fixture
def pushgateway(tmp_path):
    """A fresh, empty Pushgateway for one test."""
    with start_pushgateway(workdir=tmp_path) as gateway:
        yield gateway


@pytest.fixture
def scrape(pushgateway):
    """``scrape()`` returns ``{(name, labels): value}`` of the gateway's gangplank metrics."""
    return lambda: read_gateway(pushgateway.url)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    """Pushgateway + Prometheus + Alertmanager with the project's rules, for the whole session."""
    from tests.gateway_tools import RULE_FILES

    with LocalStack(rule_files=RULE_FILES, workdir=tmp_path_factory.mktemp("stack")) as stack:
        yield stack
