"""How often workers poll is Prefect's own setting: a user who sets PREFECT_WORKER_QUERY_SECONDS (to spare
a busy server, docs/lab.md) gets it on every worker the platform starts or `make host` joins; a bad
value is refused with its name before any worker starts."""

import pytest

from deployments.join_host import worker_env
from deployments.platform import worker_query_seconds


def test_workers_poll_every_half_second_unless_told(monkeypatch):
    monkeypatch.delenv("PREFECT_WORKER_QUERY_SECONDS", raising=False)
    assert worker_query_seconds() == "0.5"
    assert worker_env("http://server:4200/api", None)["PREFECT_WORKER_QUERY_SECONDS"] == "0.5"


def test_a_users_prefect_setting_reaches_the_joined_hosts_worker(monkeypatch):
    monkeypatch.setenv("PREFECT_WORKER_QUERY_SECONDS", "2")
    assert worker_env("http://server:4200/api", None)["PREFECT_WORKER_QUERY_SECONDS"] == "2"


@pytest.mark.parametrize("bad", ["0", "-1", "fast"])
def test_a_value_that_is_not_a_positive_number_is_refused_by_name(monkeypatch, bad):
    monkeypatch.setenv("PREFECT_WORKER_QUERY_SECONDS", bad)
    with pytest.raises(ValueError, match="PREFECT_WORKER_QUERY_SECONDS must be a positive number"):
        worker_query_seconds()
