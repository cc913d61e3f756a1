"""``slurm.submit: ssh://...`` without a network: the settings' rules, the quoting of every command
sent to the login node, and what a copied-back tar may (not) bring into a job's folder."""

from __future__ import annotations

import io
import os
import shlex
import tarfile
from pathlib import Path

import pytest

from core.hosts import Host
from core.slurm import SlurmSettings
from core.slurm_sync import RemoteJob, SyncFailed
from core.slurm_transport import LOCAL, SshOptions, Transport, control_dir, parse_submit

SSH = {"remote_root": "/scratch/opeva", "identity_file": "/etc/opeva/id_ed25519", "known_hosts_file": "/etc/opeva/known_hosts",
       "proxy_command": "ssh -W %h:%p jump"}


def settings(**slurm) -> SlurmSettings:
    return SlurmSettings.model_validate({"partitions": ["normal-x86"], **slurm})


@pytest.mark.parametrize("url, want", [
    ("local", None),
    ("ssh://alice@login.deucalion.macc.fccn.pt", ("alice", "login.deucalion.macc.fccn.pt", None)),
    ("ssh://root@login-1:2222", ("root", "login-1", 2222)),
])
def test_submit_urls_that_read(url, want):
    assert parse_submit(url) == want


@pytest.mark.parametrize("url", ["ssh://login", "ssh://a@b;rm -rf /", "ssh://-oProxyCommand=x@h", "ssh://a@-h", "ssh://a@h:99999",
                                 "ssh://a@h:22/extra/path", "sftp://a@h", "local ", "ssh://a b@h"])
def test_submit_urls_refused(url):
    with pytest.raises(ValueError, match="expected 'local' or 'ssh://user@login-node|out of range"):
        parse_submit(url)


@pytest.mark.parametrize("raw, words", [
    ({"submit": "ssh://u@login"}, "needs a slurm.ssh block"),
    ({"submit": "local", "ssh": SSH}, "this host submits locally"),
    ({"submit": "ssh://u@login", "ssh": {**SSH, "remote_root": "scratch/opeva"}}, "must be an absolute path"),
    ({"submit": "ssh://u@login", "ssh": {**SSH, "remote_root": "/scratch/../etc"}}, "no '..'"),
    ({"submit": "ssh://u@login", "ssh": {**SSH, "remote_root": "/"}}, "must not be /"),
    ({"submit": "ssh://u@login", "ssh": {**SSH, "remote_root": "/scratch/$(id)"}}, "must be an absolute path"),
    ({"submit": "ssh://u@login", "ssh": {**SSH, "proxy_command": "nc 'h' 22"}}, "single quotes"),
    ({"submit": "ssh://u@login", "ssh": {**SSH, "identity_file": "/k\n-oX"}}, "control characters"),
    ({"submit": "ssh://u@login", "ssh": {**SSH, "strict_host_key_checking": "no"}}, "'yes' or 'accept-new'"),
    ({"submit": "ssh://u@login:2222", "ssh": {**SSH, "port": 22}}, "names port 2222 but slurm.ssh.port is 22"),
    ({"submit": "ssh://u@login", "ssh": {**SSH, "password": "x"}}, "Extra inputs are not permitted"),
    ({"submit": "ssh://u@login", "ssh": {**SSH, "copier": "scp"}}, "'auto', 'rsync' or 'tar'"),
])
def test_bad_ssh_settings_are_refused_naming_the_key(raw, words):
    with pytest.raises(ValueError, match=words):
        settings(**raw)


def test_a_hosts_yaml_ssh_host_reads_and_local_stays_local():
    host = Host.model_validate({"name": "deucalion", "kind": "slurm",
                                "slurm": {"partitions": ["normal-x86"], "submit": "ssh://alice@login:2222", "ssh": SSH}})
    via = host.slurm.transport()
    assert (via.remote, via.user, via.host, via.port, via.where) == (True, "alice", "login", 2222, "alice@login")
    assert settings().transport() is LOCAL and not LOCAL.remote
    assert LOCAL.argv(["sinfo", "-h", "-o", "%P|%a"]) == ["sinfo", "-h", "-o", "%P|%a"]  # local runs exactly as before


def test_every_remote_command_is_one_quoted_string_after_the_batch_mode_options():
    via = settings(submit="ssh://alice@login:2222", ssh=SSH).transport()
    hostile = ["sbatch", "--parsable", "--comment=opeva:a b", "x; rm -rf ~", "$(id)", "`id`", "it's", "a\nb", "*", ""]
    argv = via.argv(hostile)
    assert argv[0] == "ssh" and argv[-2] == "alice@login"
    assert shlex.split(argv[-1]) == hostile  # the login shell gets back exactly these arguments, nothing expanded
    opts = argv[:-2]
    pairs = {opts[i + 1].split("=")[0]: opts[i + 1] for i, o in enumerate(opts) if o == "-o"}
    assert pairs["BatchMode"] == "BatchMode=yes" and pairs["StrictHostKeyChecking"] == "StrictHostKeyChecking=yes"
    assert pairs["UserKnownHostsFile"] == "UserKnownHostsFile=/etc/opeva/known_hosts"
    assert pairs["ProxyCommand"] == "ProxyCommand=ssh -W %h:%p jump" and pairs["IdentitiesOnly"] == "IdentitiesOnly=yes"
    assert opts[opts.index("-p") + 1] == "2222" and opts[opts.index("-i") + 1] == "/etc/opeva/id_ed25519"
    assert shlex.split(via.rsync_shell()) == via.ssh_options()  # rsync's -e splits back to the same options


def test_the_default_ssh_options_leave_keys_to_ssh_and_share_one_private_connection():
    via = Transport.of("ssh://bob@login", SshOptions(remote_root="/scratch"))
    opts = via.ssh_options()
    assert via.port == 22 and "-i" not in opts and not any("ProxyCommand" in o for o in opts)
    folder = control_dir()
    assert folder is not None and f"ControlPath={folder}/%C" in opts and "ControlPersist=60" in opts
    assert os.stat(folder).st_mode & 0o777 == 0o700
    alone = Transport.of("ssh://bob@login", SshOptions(remote_root="/scratch", multiplex_seconds=0))
    assert not any(o.startswith("Control") for o in alone.ssh_options())


def test_a_control_folder_open_to_others_is_not_used(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    (tmp_path / f"opeva-ssh-mux-{os.geteuid()}").mkdir(mode=0o777)
    (tmp_path / f"opeva-ssh-mux-{os.geteuid()}").chmod(0o777)
    assert control_dir() is None


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    buf.seek(0)
    return buf


def _member(name: str, kind=tarfile.REGTYPE, link: str = "", mode: int = 0o4755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def test_a_copied_back_tar_brings_only_files_and_folders_inside_the_job(tmp_path: Path):
    job = tmp_path / "jobs" / "j"
    (job / "results").mkdir(parents=True)
    (job / "job_info.json").write_text('{"job_id": "j"}')
    remote = RemoteJob(settings(submit="ssh://u@login", ssh=SSH).transport(), tmp_path, "j", job, copier="tar")
    stream = _tar([(_member("./results", tarfile.DIRTYPE), b""), (_member("./results/out.txt"), b"out\n"),
                   (_member("./results/link", tarfile.SYMTYPE, "/etc/passwd"), b""),
                   (_member("./results/hard", tarfile.LNKTYPE, "/etc/passwd"), b""),
                   (_member("./results/fifo", tarfile.FIFOTYPE), b""), (_member("../escape.txt"), b"x"),
                   (_member("/abs.txt"), b"x"), (_member("./job_info.json"), b'{"forged": true}')])
    remote._extract(stream, "copying back", ())
    assert (job / "results" / "out.txt").read_text() == "out\n"
    assert not (job / "results" / "out.txt").stat().st_mode & 0o7000  # no setuid bit comes back
    assert sorted(p.name for p in (job / "results").iterdir()) == ["out.txt"]
    assert not (tmp_path / "jobs" / "escape.txt").exists() and not Path("/abs.txt").exists()
    assert (job / "job_info.json").read_text() == '{"job_id": "j"}'


def test_a_copied_back_tar_over_its_bounds_fails_the_copy(tmp_path: Path, monkeypatch):
    import core.bounded_tar as sync

    monkeypatch.setattr(sync, "MAX_FILES", 3)
    remote = RemoteJob(settings(submit="ssh://u@login", ssh=SSH).transport(), tmp_path, "j", tmp_path, copier="tar")
    with pytest.raises(SyncFailed, match="over its bounds"):
        remote._extract(_tar([(_member(f"f{i}"), b"x") for i in range(5)]), "copying back", ())


def test_the_inputs_that_go_up_are_the_config_the_dataset_and_named_paths_inside_the_data_root(tmp_path: Path):
    from core.layout import DataRoot
    from flows.slurm_remote import inputs_of

    storage = DataRoot(tmp_path)
    storage.ensure_layout()
    (tmp_path / "configs" / "c.yaml").write_text("x: 1\n")
    (tmp_path / "datasets" / "d1").mkdir()
    (tmp_path / "datasets" / "d2").mkdir()
    (tmp_path / "extra").mkdir()
    found = inputs_of(storage, tmp_path / "configs" / "c.yaml", {"dataset": {"name": "d1"}}, {"datasets": ["d2"], "required_paths": ["extra"]})
    assert found == [tmp_path / "configs" / "c.yaml", tmp_path / "datasets" / "d1", tmp_path / "datasets" / "d2", tmp_path / "extra"]
    for bad, words in (({"required_paths": ["../etc"]}, "required_paths"), ({"required_paths": ["/etc"]}, "not absolute"),
                       ({"datasets": ["nope"]}, "'nope' does not exist")):
        with pytest.raises(SyncFailed, match=words):
            inputs_of(storage, tmp_path / "configs" / "c.yaml", {}, bad)
