"""OCI images of the policy service and the migrator, built without a daemon (buildah, chroot isolation).

Three images, from the Containerfiles in ``deploy/images/``: the local base ``localhost/reach-base``
(Debian bookworm with Debian's Python 3.11, its root filesystem made by mmdebstrap from Debian's
packages, so no registry is needed), the migrator ``localhost/reach-migrator`` and the policy service
``localhost/reach-policy-service`` (a built bento installed the way BentoML's generated Dockerfile
installs it; docs/service.md says why BentoML's own ``containerize`` is not used here). Each build
stages a small context of only what its Containerfile copies and runs ``buildah build --layers``,
so unchanged steps come from buildah's layer cache (``/var/lib/containers/storage`` for root). A
public base (``python:3.11-slim-bookworm``) replaces the local one for users with a registry. Used by
``reach images build`` and the image smoke tests; ``run_container`` starts a command in a built
image with ``buildah run`` (host network, so servers listen on the host's loopback).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flows.local.paths import repo_root

REPO_ROOT = repo_root()
IMAGES_DIR = REPO_ROOT / "deploy" / "images"
INSTALL_SCRIPT = IMAGES_DIR / "install.sh"
IMAGE_VERSION = "0.1.0"
LOCAL_BASE_IMAGE = f"localhost/reach-base:{IMAGE_VERSION}"
MIGRATOR_IMAGE = f"localhost/reach-migrator:{IMAGE_VERSION}"
POLICY_SERVICE_IMAGE = f"localhost/reach-policy-service:{IMAGE_VERSION}"
PUBLIC_BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Debian's Python 3.11 with venv (and the pip wheel it bundles) and CA certificates; no compilers.
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates")
# mmdebstrap's own merged-/usr set-up (usr-is-merged), instead of the usrmerge package and the perl it pulls in.
MERGED_USR_HOOKS = "/usr/share/mmdebstrap/hooks/merged-usr"
# Documentation, manual pages and translations are left out of the base's root filesystem.
DPKG_EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*", "/usr/share/info/*")
# ceenv's package marker and payload schema: the only modules of the core the migrator imports.
MIGRATOR_CEENV_FILES = ("__init__.py", "schema.py", "py.typed")
TORCH_WHEEL_GLOB = "torch-*+cpu-cp311-*.whl"

Log = Callable[[str], None]


class ImageBuildError(RuntimeError):
    """An image could not be built or run; the message names the step and the way out."""


@dataclass(frozen=True)
class BuiltImage:
    """One built image: its tag, its size on disk and how long the build took (0 when reused as is)."""

    tag: str
    size_bytes: int
    build_s: float

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6


def _quiet(message: str) -> None:
    del message


def require_tools() -> None:
    """Fail with the install command when buildah or mmdebstrap is missing."""
    missing = [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        raise ImageBuildError(f"{' and '.join(missing)} not found on the PATH: run {INSTALL_SCRIPT} (idempotent)")


def _run(command: Sequence[str], what: str, log: Log, cwd: Path | None = None) -> None:
    log(f"$ {' '.join(command)}")
    result = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise ImageBuildError(f"{what} failed (exit {result.returncode}): {' '.join(command)}\n{tail}")


def image_exists(tag: str) -> bool:
    """Whether buildah's storage holds an image with this tag."""
    result = subprocess.run(["buildah", "inspect", "--type", "image", tag], capture_output=True, text=True)
    return result.returncode == 0


def image_size_bytes(tag: str) -> int:
    """The image's size: the sum of its layers' uncompressed sizes, from its manifest in buildah's storage."""
    result = subprocess.run(["buildah", "inspect", "--type", "image", tag], capture_output=True, text=True)
    if result.returncode != 0:
        raise ImageBuildError(f"no image {tag} in buildah's storage: {result.stderr.strip()}")
    manifest = json.loads(json.loads(result.stdout)["Manifest"])
    return sum(int(layer["size"]) for layer in manifest["layers"])


def _buildah_build(
    containerfile: Path, context: Path, tag: str, base_image: str, started: float, log: Log
) -> BuiltImage:
    """``buildah build --layers`` of ``containerfile``; the build time counts from ``started`` (staging included)."""
    command = [
        "buildah", "build", "--layers", "--isolation", "chroot", "--pull-never" if base_image.startswith("localhost/") else "--pull",
        "--build-arg", f"BASE_IMAGE={base_image}", "-f", str(containerfile), "-t", tag, str(context),
    ]  # fmt: skip
    _run(command, f"building {tag}", log)
    return BuiltImage(tag, image_size_bytes(tag), time.monotonic() - started)


def fill_wheelhouse(
    requirements: Path, wheelhouse: Path, *, no_deps: bool, extra_links: Sequence[Path] = (), log: Log = _quiet
) -> None:
    """Wheels of every requirement, made on this machine with its pip (its index, proxy, CA and cache).

    The images then install with ``pip --no-index`` from these wheels only: the build steps need no
    network, and a package without a wheel is built here, where compilers may exist, not in the image.
    """
    wheelhouse.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "-w", str(wheelhouse)]
    command += ["--no-deps"] if no_deps else []
    for link in extra_links:
        command += ["--find-links", str(link)]
    _run([*command, "-r", str(requirements)], f"pip wheel of {requirements.name}", log)


def build_base_image(tag: str = LOCAL_BASE_IMAGE, *, rebuild: bool = False, log: Log = _quiet) -> BuiltImage:
    """The local Debian base: reused when buildah already has ``tag``, else mmdebstrap + buildah build."""
    require_tools()
    if image_exists(tag) and not rebuild:
        log(f"{tag}: present, reused")
        return BuiltImage(tag, image_size_bytes(tag), 0.0)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="reach-base-") as tmp:
        context = Path(tmp)
        command = [
            "mmdebstrap", "--variant=apt", "--quiet", f"--include={','.join(DEBIAN_PACKAGES)}",
            "--aptopt=Apt::Install-Recommends \"false\"", f"--hook-dir={MERGED_USR_HOOKS}",
            *(f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES),
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*",
            DEBIAN_SUITE, str(context / "rootfs.tar"), DEBIAN_MIRROR,
        ]  # fmt: skip
        _run(command, "mmdebstrap of the base root filesystem", log)
        shutil.copy2(IMAGES_DIR / "base.Containerfile", context / "Containerfile")
        containerfile = str(context / "Containerfile")
        _run(
            ["buildah", "build", "--isolation", "chroot", "-f", containerfile, "-t", tag, str(context)],
            f"building {tag}",
            log,
        )
    return BuiltImage(tag, image_size_bytes(tag), time.monotonic() - started)


def build_migrator_image(base_image: str, tag: str = MIGRATOR_IMAGE, *, log: Log = _quiet) -> BuiltImage:
    """The migrator image from deploy/images/migrator.Containerfile on ``base_image``."""
    require_tools()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="reach-migrator-image-") as tmp:
        context = Path(tmp)
        shutil.copy2(IMAGES_DIR / "migrator-requirements.txt", context / "migrator-requirements.txt")
        fill_wheelhouse(context / "migrator-requirements.txt", context / "wheels", no_deps=True, log=log)
        stage_migrator_sources(context / "src")
        return _buildah_build(IMAGES_DIR / "migrator.Containerfile", context, tag, base_image, started, log)


def stage_migrator_sources(target: Path) -> list[Path]:
    """Copy the migrator package and ceenv's package marker and schema under ``target``; returns the copies."""
    sources = sorted((REPO_ROOT / "migrator").glob("*.py")) + [REPO_ROOT / "ceenv" / n for n in MIGRATOR_CEENV_FILES]
    copies = []
    for source in sources:
        copy = target / source.relative_to(REPO_ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, copy)
        copies.append(copy)
    return copies


def local_torch_wheel() -> Path | None:
    """The torch CPU wheel for Python 3.11 in pip's find-links (``PIP_FIND_LINKS`` or pip's config), if any."""
    links = os.environ.get("PIP_FIND_LINKS", "")
    if not links:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True, text=True
        )
        links = result.stdout if result.returncode == 0 else ""
    for folder in links.split():
        wheels = sorted(Path(folder).glob(TORCH_WHEEL_GLOB)) if Path(folder).is_dir() else []
        if wheels:
            return wheels[-1]
    return None


@contextmanager
def _bento_context(bento_tag: str) -> Iterator[Path]:
    """BentoML's own containerize context of the bento: the bento plus its models resolved into models/."""
    import bentoml
    from bentoml._internal.container import construct_containerfile

    bento = bentoml.bentos.get(bento_tag)
    with construct_containerfile(bento, enable_buildkit=False) as (context, _dockerfile):
        yield Path(context)


def build_policy_service_image(
    bento_tag: str,
    base_image: str,
    tag: str = POLICY_SERVICE_IMAGE,
    *,
    torch_wheel: Path | None = None,
    tag_bento_version: bool = True,
    log: Log = _quiet,
) -> BuiltImage:
    """The policy service image of a built bento, from deploy/images/policy-service.Containerfile.

    ``torch_wheel`` (a torch CPU wheel) is installed instead of the one the bento's requirements
    fetch from the PyTorch CPU index; it stays in the builder stage, out of the image. With
    ``tag_bento_version`` the image is also tagged ``<name>:<bento version>``.
    """
    require_tools()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="reach-policy-image-") as tmp, _bento_context(bento_tag) as bento_dir:
        context = Path(tmp)
        shutil.copytree(bento_dir, context / "bento", ignore=shutil.ignore_patterns("Dockerfile", "__pycache__"))
        requirements = context / "bento" / "env" / "python" / "requirements.txt"
        links: list[Path] = []
        if torch_wheel is not None:
            links.append(torch_wheel.parent)
            # the local wheel replaces the PyTorch CPU index, which this machine may not reach
            requirements = context / "host-requirements.txt"
            lines = (context / "bento" / "env" / "python" / "requirements.txt").read_text().splitlines()
            requirements.write_text("".join(f"{line}\n" for line in lines if not line.startswith("--extra-index-url")))
        fill_wheelhouse(requirements, context / "wheels", no_deps=False, extra_links=links, log=log)
        built = _buildah_build(IMAGES_DIR / "policy-service.Containerfile", context, tag, base_image, started, log)
    version = bento_tag.partition(":")[2]
    if version and tag_bento_version:
        _run(["buildah", "tag", tag, f"{tag.rpartition(':')[0]}:{version}"], "tagging with the bento version", log)
    return built


def build_images(
    bento_tag: str, *, base_image: str | None = None, torch_wheel: Path | None = None, log: Log = _quiet
) -> list[BuiltImage]:
    """Build (or reuse) the base, then the migrator and the policy service images; returns all three.

    ``base_image`` None means the local Debian base (built once, then reused); a registry image such
    as :data:`PUBLIC_BASE_IMAGE` is pulled instead and no local base is built.
    """
    built: list[BuiltImage] = []
    if base_image is None:
        built.append(build_base_image(log=log))
        base_image = LOCAL_BASE_IMAGE
    wheel = torch_wheel if torch_wheel is not None else local_torch_wheel()
    built.append(build_migrator_image(base_image, log=log))
    built.append(build_policy_service_image(bento_tag, base_image, torch_wheel=wheel, log=log))
    return built


@dataclass
class RunningContainer:
    """A command running in a working container of an image (``buildah from`` + ``buildah run``)."""

    container: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def processes(self) -> set[int]:
        """The PIDs of the command's processes inside the container (empty once it has ended)."""
        return _container_processes(self.process.pid) if self.process.poll() is None else set()

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """Stop every process of the command, then remove the working container.

        SIGTERM, then SIGKILL after ``timeout_s``, to the command's process tree and to every process
        chrooted into the same root: servers such as BentoML's start workers in sessions of their own.
        """
        pids = self.processes()
        _signal_all(pids, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (self.process.poll() is None or _alive(pids)):
            time.sleep(0.2)
        _signal_all(_alive(pids), signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        subprocess.run(["buildah", "rm", self.container], capture_output=True, text=True)
        return self.process.returncode


def _process_parents() -> dict[int, int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return parents


def _root_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/root")
    except OSError:
        return None


def _container_processes(pid: int) -> set[int]:
    """``pid``, its descendants, and every process whose root directory is one of theirs other than ``/``."""
    parents = _process_parents()
    tree = {pid}
    while True:
        grown = tree | {child for child, parent in parents.items() if parent in tree}
        if grown == tree:
            break
        tree = grown
    roots = {root for root in map(_root_of, tree) if root not in (None, "/")}
    return tree | {other for other in parents if _root_of(other) in roots}


def _alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


def _signal_all(pids: set[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def run_container(
    image: str,
    command: Sequence[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    volumes: Sequence[str] = (),
    user: str | None = None,
) -> RunningContainer:
    """Start ``command`` in a new working container of ``image`` with chroot isolation and the host's network.

    ``volumes`` are ``host:container[:options]`` bind mounts. The command runs in its own process
    group, so :meth:`RunningContainer.stop` reaches everything it started.
    """
    result = subprocess.run(["buildah", "from", "--pull-never", image], capture_output=True, text=True)
    if result.returncode != 0:
        raise ImageBuildError(
            f"no working container of {image}: {result.stderr.strip()} (build it: reach images build)"
        )
    container = result.stdout.strip().splitlines()[-1]
    argv = ["buildah", "run", "--isolation", "chroot"]
    for name, value in (env or {}).items():
        argv += ["--env", f"{name}={value}"]
    for volume in volumes:
        argv += ["--volume", volume]
    if user is not None:
        argv += ["--user", user]
    argv += [container, "--", *command]
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    return RunningContainer(container, process, log)
