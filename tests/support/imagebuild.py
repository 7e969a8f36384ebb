"""Build the project's container image without a registry, for tests/e2e/test_image.py.

No registry is reachable, so the base image is made from Debian: `debootstrap --variant=minbase
bookworm` (the Debian mirror is reachable), trimmed like the official slim image and imported
as `debian:bookworm-slim`. The image is built by a dedicated dockerd in this machine's own
network namespace (so `docker build --network host` reaches the package registries) that never
touches the host firewall: `--iptables=false --ip6tables=false --ip-forward=false
--bridge=none`, with its data root, exec root, pidfile and socket under /tmp/<ident>.

Its ident is `dnb<pid>x<n>`, deliberately NOT of tests/support/lab.py's form: lab.teardown_ident() kills
every process in the namespaces under <dir>/exec/netns, and for this daemon `default` there is
the machine's own network namespace. `teardown_build()` removes a build daemon by its pidfile,
its cgroups and the processes naming its directory only; `sweep_stale_builds()` reaps those of
crashed runs (creating pid dead).

Both results are cached under CACHE_DIR (the rootfs tar by its recipe, the saved image by a hash
of the build context), so a second run loads a tar and builds nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from support.lab import (
    LabError,
    cgroup_dirs,
    docker_ping,
    log_tail,
    mounts_under,
    pid_alive,
    remove_cgroups,
    run,
    unmount_all,
    wait_dead,
)

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("DNE_IMAGE_CACHE", "/var/cache/docker-nat-exporter-test"))
MIRROR = "http://deb.debian.org/debian"
BASE_TAG = "debian:bookworm-slim"
IMAGE_TAG = "docker-nat-exporter:test"
# Everything the Dockerfile's COPY lines can see (.dockerignore lets in no more than this).
CONTEXT_PATHS = (
    "Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "LICENSE", "exporter",
    "deploy/container",
)  # fmt: skip
# Bump when the rootfs recipe below changes: the cached tar is keyed by it.
ROOTFS_RECIPE = "bookworm-minbase-slim-v2"
_COUNTER = itertools.count(1)
_BUILD_IDENT = re.compile(r"^dnb(\d+)x\d+$")

# What debuerreotype does to make the official "slim" variant.
_DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
# The official image's apt settings (docker-clean is what empties /var/cache/apt/archives).
_APT_CONF = {
    "docker-clean": (
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n'
    ),
    "docker-no-languages": 'Acquire::Languages "none";\n',
    "docker-autoremove-suggests": 'Apt::AutoRemove::SuggestsImportant "false";\n',
}
_SOURCES = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


@dataclass(frozen=True)
class Built:
    """A saved image: the tar to `docker load`, its tag, and how it was obtained."""

    tar: Path
    tag: str
    key: str
    from_cache: bool
    timings: tuple[tuple[str, float], ...]


class Steps:
    """Times named steps and prints each as it ends (pytest -s shows them; -rA too)."""

    def __init__(self) -> None:
        self.timings: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - started
            self.timings.append((name, took))
            print(f"[image] {name}: {took:.1f}s", flush=True)


def missing_requirements() -> list[str]:
    """Reasons this machine cannot build the image (empty when it can)."""
    missing = [] if os.geteuid() == 0 else ["needs root"]
    tools = ("debootstrap", "dockerd", "docker", "containerd", "runc", "tar")
    return missing + [f"no {t} on PATH" for t in tools if shutil.which(t) is None]


def context_key(repo: Path = REPO) -> str:
    """sha256 over every file of the build context (path and content), in a stable order."""
    digest = hashlib.sha256()
    for rel in CONTEXT_PATHS:
        top = repo / rel
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(repo)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """Exclusive lock on the cache: parallel runs wait instead of building twice."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _atomic_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def rootfs_tar(steps: Steps) -> Path:
    """The debootstrapped, slimmed bookworm rootfs as a tar (cached by ROOTFS_RECIPE)."""
    tar = CACHE_DIR / f"rootfs-{ROOTFS_RECIPE}.tar"
    if tar.exists():
        return tar
    tmp = Path(tempfile.mkdtemp(prefix="dne-rootfs-", dir="/var/tmp"))
    root = tmp / "root"
    try:
        with steps.step("debootstrap --variant=minbase bookworm"):
            run(["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR], timeout=900)
        _slim(root)
        partial = _atomic_path(tar)
        with steps.step("tar rootfs"):
            run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], timeout=300)
        partial.rename(tar)
        for old in CACHE_DIR.glob("rootfs-*.tar"):
            if old != tar:
                old.unlink()  # an older recipe's tar
    finally:
        # debootstrap mounts proc and sys in the target; a failed run may leave them there.
        unmount_all(tmp)
        if not mounts_under(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return tar


def _slim(root: Path) -> None:
    """Trim a debootstrapped tree the way the official slim image is, and set its sources."""
    (root / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(_DPKG_EXCLUDES)
    for name, text in _APT_CONF.items():
        (root / "etc/apt/apt.conf.d" / name).write_text(text)
    for rel in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
                "usr/share/groff", "usr/share/lintian", "var/lib/apt/lists",
                "var/cache/apt", "var/log", "dev", "run", "tmp"):  # fmt: skip
        folder = root / rel
        keep_copyright = rel == "usr/share/doc"
        for entry in list(folder.iterdir()) if folder.is_dir() else []:
            if keep_copyright and entry.is_dir() and not entry.is_symlink():
                for item in entry.iterdir():
                    if item.name != "copyright":
                        _remove(item)
            else:
                _remove(entry)
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d").mkdir(exist_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(_SOURCES)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


class BuildDaemon:
    """A dockerd in this machine's network namespace that leaves the firewall alone."""

    def __init__(self, start_timeout: float = 60) -> None:
        self.ident = f"dnb{os.getpid()}x{next(_COUNTER)}"
        self.dir = Path("/tmp") / self.ident
        self.socket = self.dir / "docker.sock"
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        sweep_stale_builds()
        teardown_build(self.ident)  # leftovers of an earlier run with the same name

    def __enter__(self) -> BuildDaemon:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def _start(self) -> None:
        for sub in ("data", "exec", "cli"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "daemon.json").write_text("{}\n")
        args = ["dockerd", "--data-root", str(self.dir / "data"),
                "--exec-root", str(self.dir / "exec"), "--pidfile", str(self.dir / "docker.pid"),
                "-H", f"unix://{self.socket}", "--config-file", str(self.dir / "daemon.json"),
                "--cgroup-parent", f"/{self.ident}", "--iptables=false", "--ip6tables=false",
                "--ip-forward=false", "--ip-masq=false", "--bridge=none"]  # fmt: skip
        with open(self.dir / "dockerd.log", "ab") as log:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + self.start_timeout
        while not self._ping():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"build dockerd did not come up; log:\n{self.log()}")
            time.sleep(0.1)

    def _ping(self) -> bool:
        return docker_ping(self.socket)

    def log(self, tail: int = 40) -> str:
        return log_tail(self.dir / "dockerd.log", tail)

    def docker(
        self, *args: str, timeout: float = 120, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_CONFIG": str(self.dir / "cli"), "DOCKER_BUILDKIT": "0",
               "DOCKER_CLI_HINTS": "false"}  # fmt: skip
        env.pop("DOCKER_CONTEXT", None)
        env.pop("DOCKER_HOST", None)
        return run(["docker", "-H", f"unix://{self.socket}", *args],
                   timeout=timeout, input=input, env=env, check=check)  # fmt: skip

    def close(self) -> None:
        """Stop dockerd and remove every trace (raises LabError if something is left)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=20)
        left = teardown_build(self.ident)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        if left:
            raise LabError(f"build daemon {self.ident}: left behind: {left}")


def _build_pids(ident: str) -> set[int]:
    """Processes of a build daemon: in its cgroups, or naming its directory on their command
    line (dockerd, containerd, shims). Never chosen by network namespace (see the docstring)."""
    pids: set[int] = set()
    for cg in cgroup_dirs(ident):
        for procs in cg.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(x) for x in procs.read_text().split())
    mention = re.compile(rf"/tmp/{ident}(?![0-9])".encode())
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if mention.search(Path(f"/proc/{entry}/cmdline").read_bytes()):
                    pids.add(int(entry))
    return {p for p in pids if p != os.getpid() and pid_alive(p)}


def build_leftovers(ident: str) -> list[str]:
    folder = Path("/tmp") / ident
    found = [f"process {p}" for p in sorted(_build_pids(ident))]
    found += [f"mount {m}" for m in mounts_under(folder)]
    found += [f"cgroup {c}" for c in cgroup_dirs(ident)]
    return found + ([f"directory {folder}"] if folder.exists() else [])


def teardown_build(ident: str) -> list[str]:
    """Remove every trace of a build daemon; return what could not be removed."""
    if not _BUILD_IDENT.match(ident):
        raise LabError(f"not a build daemon ident: {ident!r}")
    folder = Path("/tmp") / ident
    with contextlib.suppress(OSError, ValueError):
        pid = int((folder / "docker.pid").read_text().strip())
        if pid_alive(pid) and str(folder).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
            if wait_dead({pid}, 20):
                os.kill(pid, signal.SIGKILL)
    pids = _build_pids(ident)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_dead(pids, 10)
    remove_cgroups(ident)
    unmount_all(folder)
    if folder.exists() and not mounts_under(folder):
        shutil.rmtree(folder, ignore_errors=True)
    return build_leftovers(ident)


def sweep_stale_builds() -> list[str]:
    """Tear down build daemons whose creating process is gone; return their idents."""
    reaped = []
    for entry in sorted(os.listdir("/tmp")):
        m = _BUILD_IDENT.match(entry)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            teardown_build(entry)
            reaped.append(entry)
    return reaped


def local_ca_certs() -> str:
    """PEM text of the CAs this machine's admin added (Debian: /usr/local/share/ca-certificates),
    for a build behind a TLS-intercepting proxy; empty when there are none."""
    folder = Path("/usr/local/share/ca-certificates")
    pems = sorted(folder.rglob("*.crt")) if folder.is_dir() else []
    return "".join(p.read_text() for p in pems if "BEGIN CERTIFICATE" in p.read_text())


def build_args(version: str) -> list[str]:
    args = ["--build-arg", f"VERSION={version}"]
    cas = local_ca_certs()
    return [*args, "--build-arg", f"BUILD_CA_CERTS={cas}"] if cas else args


def build_image(version: str, steps: Steps | None = None) -> Built:
    """The image as a saved tar: from the cache when the build context is unchanged, else
    debootstrap (cached separately), import, `docker build --network host`, `docker save`."""
    steps = steps or Steps()
    key = context_key()
    tar = CACHE_DIR / f"image-{key}.tar"
    with cache_lock():
        for partial in CACHE_DIR.glob(".*.tmp"):
            partial.unlink()  # left by a run that died while writing (we hold the lock)
        if tar.exists():
            return Built(tar, IMAGE_TAG, key, True, tuple(steps.timings))
        base = rootfs_tar(steps)
        with BuildDaemon() as daemon:
            with steps.step("build dockerd start + import base"), open(base, "rb") as f:
                daemon.docker("import", "-", BASE_TAG, input=f.read(), timeout=300)
            with steps.step("docker build --network host"):
                p = daemon.docker("build", "--network", "host", *build_args(version),
                                  "-t", IMAGE_TAG, str(REPO), timeout=1200, check=False)  # fmt: skip
                if p.returncode != 0:
                    out = "\n".join(p.stdout.splitlines()[-40:])
                    raise LabError(f"docker build failed:\n{out}\n{p.stderr.strip()}")
            partial = _atomic_path(tar)
            with steps.step("docker save"):
                daemon.docker("save", "-o", str(partial), IMAGE_TAG, timeout=300)
        for old in CACHE_DIR.glob("image-*.tar"):
            old.unlink()  # one image is enough: older keys are never wanted again
        partial.rename(tar)
    return Built(tar, IMAGE_TAG, key, False, tuple(steps.timings))
