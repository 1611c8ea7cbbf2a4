"""Credentials of one local cluster: service-account keys, a static admin token and the kubeconfig.

The API server writes its own self-signed serving certificate into ``pki/`` when it starts; the
kubeconfig trusts exactly that certificate and authenticates with the static token of
``tokens.csv`` (group ``system:masters``). Used by
:class:`flows.local.cluster.control_plane.LocalCluster`.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

LOOPBACK = "127.0.0.1"


def write_credentials(state_dir: Path, apiserver_port: int) -> str:
    """Service-account keys (once), a fresh static admin token and a kubeconfig; returns the token."""
    pki = state_dir / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "sa.key").is_file():
        subprocess.run(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"], check=True, capture_output=True)
        subprocess.run(
            ["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
            check=True, capture_output=True,
        )  # fmt: skip
    token = secrets.token_hex(16)
    (state_dir / "tokens.csv").write_text(f'{token},reach-admin,reach-admin,"system:masters"\n')
    kubeconfig = state_dir / "kubeconfig"
    kubeconfig.write_text(kubeconfig_text(apiserver_port, token, ca_path(state_dir)))
    kubeconfig.chmod(0o600)
    return token


def ca_path(state_dir: Path) -> Path:
    """The apiserver's self-signed certificate (written by it at start), trusted by the kubeconfig."""
    return state_dir / "pki" / "apiserver.crt"


def kubeconfig_text(apiserver_port: int, token: str, ca: Path) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: reach-local
  cluster:
    server: https://{LOOPBACK}:{apiserver_port}
    certificate-authority: {ca}
users:
- name: reach-admin
  user:
    token: {token}
contexts:
- name: reach-local
  context:
    cluster: reach-local
    user: reach-admin
current-context: reach-local
"""
