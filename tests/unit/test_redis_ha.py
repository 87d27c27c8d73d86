"""Sentinel URLs and the derived replication setting (pure logic; the real failover is in
tests/integration/test_sentinel.py and tests/reliability/test_failover.py)."""

from __future__ import annotations

import pytest

from worker.config.redis_url import SentinelURL, parse_sentinel_url, safe_url
from worker.config.settings import Settings
from worker.domain.errors import ConfigurationError

URL = "sentinel://:p%40ss@10.0.0.1:26379;sentinel://10.0.0.2;sentinel://10.0.0.3:26380/3"


def test_celery_form_is_parsed():
    assert parse_sentinel_url(URL) == SentinelURL(
        (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26380)), db=3, password="p@ss")


@pytest.mark.parametrize("bad", ["sentinel://:pwX9@", "sentinel://:pwX9@h:port", "redis://:pwX9@h:1",
                                 "sentinel://:pwX9@h:1/x"])
def test_malformed_lists_are_refused_without_showing_them(bad):
    with pytest.raises(ValueError) as caught:
        parse_sentinel_url(bad)
    assert "pwX9" not in str(caught.value)


def test_safe_url_hides_every_password():
    assert safe_url(URL) == "sentinel://:***@10.0.0.1:26379;sentinel://10.0.0.2;sentinel://10.0.0.3:26380/3"
    assert safe_url("redis://user:s3cret@cache:6379/0") == "redis://user:***@cache:6379/0"


def test_min_replicas_defaults_to_one_with_sentinel_and_zero_without():
    sentinel = {"REDIS_URL": URL, "VEXORA_REDIS_SENTINEL_MASTER": "mymaster"}
    assert Settings.from_env(sentinel).min_replicas == 1
    assert Settings.from_env({}).min_replicas == 0
    assert Settings.from_env({**sentinel, "VEXORA_REDIS_MIN_REPLICAS": "0"}).min_replicas == 0
    assert Settings.from_env({"VEXORA_REDIS_MIN_REPLICAS": "2"}).min_replicas == 2


def test_a_sentinel_list_needs_the_master_name_and_never_shows_its_password():
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"REDIS_URL": URL})
    assert set(caught.value.problems) == {"VEXORA_REDIS_SENTINEL_MASTER"}
    assert "p@ss" not in str(caught.value) and "p%40ss" not in str(caught.value)


def test_celery_gets_the_sentinel_options_for_broker_and_result_backend():
    from worker.celery import create_app
    settings = Settings.from_env({"REDIS_URL": URL, "VEXORA_REDIS_SENTINEL_MASTER": "mymaster",
                                  "VEXORA_REDIS_SENTINEL_PASSWORD": "sentinel-only"})
    conf = create_app(settings).conf
    assert conf.broker_transport == "worker.runtime.broker:SentinelTransport"
    for options in (conf.broker_transport_options, conf.result_backend_transport_options):
        assert options["master_name"] == "mymaster"
        assert options["sentinel_kwargs"]["password"] == "sentinel-only"
    assert conf.broker_channel_error_retry is True
    plain = create_app(Settings.from_env({})).conf
    assert plain.broker_transport == "worker.runtime.broker:Transport" and not plain.result_backend_transport_options
