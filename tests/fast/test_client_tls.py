"""A run's Prefect clients share one TLS context built by Prefect's own rule (flows/client_tls.py)."""

from __future__ import annotations

import ssl

from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY, temporary_settings

from flows.client_tls import install, shared_context

API = "http://127.0.0.1:9/api"  # nothing is sent: constructing a client is what is measured


def context_of(client) -> ssl.SSLContext:
    return client._client._transport._pool._ssl_context


def test_every_client_of_the_process_gets_the_same_verified_context():
    install()
    install()  # idempotent: one wrapper, not two
    first, second, sync = PrefectClient(API), PrefectClient(API), SyncPrefectClient(API)
    assert context_of(first) is context_of(second) is context_of(sync) is shared_context()
    assert shared_context().verify_mode == ssl.CERT_REQUIRED and shared_context().check_hostname
    assert not hasattr(PrefectClient.__init__.__wrapped__, "__wrapped__")


def test_a_callers_own_verify_is_kept():
    install()
    own = ssl.create_default_context()
    assert context_of(PrefectClient(API, httpx_settings={"verify": own})) is own


def test_the_insecure_setting_gets_its_own_unverified_context_as_prefect_builds_it():
    install()
    verified = shared_context()
    with temporary_settings(updates={PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
        insecure = context_of(PrefectClient(API))
    assert insecure is not verified
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname
    assert context_of(PrefectClient(API)) is verified  # back to the verified one
