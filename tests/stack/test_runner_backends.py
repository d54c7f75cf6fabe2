"""RUNNER_BACKENDS: several gunicorns behind nginx's upstream, with the product images in the
media bucket (MEDIA_STORAGE=s3). The configuration, without a running stack."""

import re

import pytest

from ops import nginx_config, runner
from ops.runner import nginx_worker_user
from tests.stack.test_init_and_runner import runner_config, stack_configuration, supervised, supervisord_reads
from tests.stack.test_nginx_config import block

S3_MEDIA = {
    "MEDIA_STORAGE": "s3",
    "MEDIA_S3_BUCKET": "shop-media",
    "MEDIA_S3_PREFIX": "media",
    "MEDIA_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
}


def test_three_backends_are_three_gunicorns_in_the_app_group(tmp_path):
    text = stack_configuration(tmp_path, {**S3_MEDIA, "RUNNER_BACKENDS": "3", "RUNNER_APP_PORT": "18000"})
    section = supervisord_reads(text, tmp_path)
    processes = supervised(section)
    groups = {group.name: group for group in section.process_group_configs}

    assert {"web", "web2", "web3"} <= set(processes)
    assert {"web", "web2", "web3"} <= {process.name for process in groups["app"].process_configs}
    assert all(processes[name].autostart for name in ("web", "web2", "web3"))
    # "web" listens where GUNICORN_BIND of the whole stack says; the others on the next ports,
    # each with a control socket of its own.
    assert processes["web2"].environment == {
        "GUNICORN_BIND": "127.0.0.1:18001",
        "GUNICORN_CONTROL_SOCKET": str(tmp_path / "run" / "gunicorn2.ctl"),
    }
    assert processes["web3"].environment["GUNICORN_BIND"] == "127.0.0.1:18002"
    assert processes["web3"].command == processes["web"].command


def test_maintenance_mode_web_starts_every_backend(tmp_path):
    text = stack_configuration(tmp_path, {**S3_MEDIA, "RUNNER_BACKENDS": "2"}, autostart=["web"])
    processes = supervised(supervisord_reads(text, tmp_path))
    assert {name for name, process in processes.items() if process.autostart} == {"web", "web2"}


def test_nginx_balances_over_every_backend_and_proxies_media_to_the_bucket(tmp_path, nginx):
    config = runner_config(tmp_path / "data", **S3_MEDIA, RUNNER_BACKENDS="2", RUNNER_APP_PORT="18000")
    for name in ("static", "uploads", "nginx-logs"):
        (config.data / name).mkdir(parents=True)
    first, *more = config.backend_addresses
    site = nginx_config.NginxSite(
        listen="127.0.0.1:18081",
        backend=first,
        extra_backends=tuple(more),
        static_root=config.static_dir,
        media_root=config.data / "uploads",
        log_dir=config.data / "nginx-logs",
        **runner.media_site(config.environ),
    )
    prefix = tmp_path / "nginx"
    main = nginx_config.write_config(site, prefix, nginx, nginx_worker_user(), tmp_path / "error.log")

    assert "test is successful" in nginx_config.check_config(nginx, prefix, main).stderr
    upstream = block((prefix / "conf.d" / "shop.conf").read_text(), "upstream shop_backend {")
    assert re.findall(r"server (\S+);", upstream) == ["127.0.0.1:18000", "127.0.0.1:18001"]
    media = (prefix / "conf.d" / "locations.inc").read_text()
    assert "include conf.d/media-s3.inc;" in block(media, "location /media/ {")
    proxied = (prefix / "conf.d" / "media-s3.inc").read_text()
    assert "proxy_pass http://127.0.0.1:9000/shop-media/media/;" in proxied


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"RUNNER_BACKENDS": "2"}, "RUNNER_BACKENDS=2 needs MEDIA_STORAGE=s3"),
        ({"RUNNER_BACKENDS": "0"}, "at least one backend"),
    ],
)
def test_backends_without_a_shared_bucket_are_refused(tmp_path, environment, message):
    with pytest.raises(runner.RunnerError, match=message):
        runner_config(tmp_path, **environment)


def test_each_backend_keeps_its_own_metrics_directory(tmp_path):
    config = runner_config(tmp_path, **S3_MEDIA, RUNNER_BACKENDS="2", PROMETHEUS_MULTIPROC_DIR="/dev/shm/one")
    assert "PROMETHEUS_MULTIPROC_DIR" not in config.app_environment()


def test_nginx_reaches_the_bucket_where_it_is_told_or_where_the_shop_does():
    assert runner.media_site(S3_MEDIA)["media_bucket_url"] == "http://127.0.0.1:9000/shop-media/media/"
    aws = {**S3_MEDIA, "MEDIA_S3_ENDPOINT_URL": "", "MEDIA_S3_REGION": "eu-west-1"}
    assert (
        runner.media_site(aws)["media_bucket_url"] == "https://shop-media.s3.eu-west-1.amazonaws.com/media/"
    )
    told = {**S3_MEDIA, "MEDIA_S3_NGINX_URL": "http://10.0.0.5:9000/shop-media/media/"}
    assert runner.media_site(told)["media_bucket_url"] == "http://10.0.0.5:9000/shop-media/media/"
    assert runner.media_site({}) == {"media_storage": "local"}


def test_s3_media_without_a_bucket_is_refused_with_the_reason():
    with pytest.raises(runner.RunnerError, match="MEDIA_S3_BUCKET"):
        runner.media_site({"MEDIA_STORAGE": "s3"})
