"""The key a bundle's apt repositories are signed with: made once per build machine with gpg,
kept there (the private half never enters the bundle), its public half exported into the bundle
for the hosts' ``signed-by=``.

apt checks a flat repository's ``InRelease`` (clear-signed ``Release``) or ``Release`` +
``Release.gpg`` against the keyring a source line names (sources.list(5), ``signed-by``); a binary
keyring (``gpg --export``) works with every apt since 1.1, an armored one only with a ``.asc`` name.

Example::

    key = signing_key()                      # ~/.local/share/metalserve/bundle-signing
    key.export(Path("bundle/keys/metalserve-bundle.gpg"))
    key.sign_release(Path("bundle/apt/debian12-amd64"))
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from metalserve.bundle.fetch import BundleError
from metalserve.sandbox.system import run

KEY_USER_ID = "metalserve bundle <bundle@metalserve.invalid>"
GPG_TIMEOUT_S = 120


def default_home() -> Path:
    """``$METALSERVE_SIGNING_HOME``, else ``$XDG_DATA_HOME/metalserve/bundle-signing``."""
    configured = os.environ.get("METALSERVE_SIGNING_HOME")
    if configured:
        return Path(configured)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "metalserve" / "bundle-signing"


def _gpg(home: Path, *args: str, what: str) -> str:
    if shutil.which("gpg") is None:
        raise BundleError(
            f"{what}: expected gpg on this machine, found none — fix: apt-get install gnupg"
        )
    command = ["gpg", "--batch", "--quiet", "--no-tty", "--homedir", str(home), *args]
    return run(command, what=what, fix=f"check the key folder {home}", timeout=GPG_TIMEOUT_S).stdout


def stop_agent(home: Path) -> None:
    """gpg leaves an agent running for its folder: stopped once the build has signed."""
    if shutil.which("gpgconf"):
        run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], what="stop gpg-agent",
            fix="none needed", check=False, timeout=GPG_TIMEOUT_S)  # fmt: skip


@dataclass(frozen=True)
class SigningKey:
    home: Path
    fingerprint: str

    def export(self, path: Path) -> None:
        """The public key, binary, as apt's ``signed-by`` reads it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        _gpg(self.home, "--yes", "--output", str(partial), "--export", self.fingerprint,
             what="export the bundle key")  # fmt: skip
        os.replace(partial, path)

    def sign_release(self, repo: Path) -> None:
        """``InRelease`` and ``Release.gpg`` for the ``Release`` file of ``repo``."""
        release = repo / "Release"
        for name, mode in (("InRelease", "--clearsign"), ("Release.gpg", "--detach-sign")):
            partial = repo / f".{name}.partial"
            _gpg(self.home, "--yes", "--pinentry-mode", "loopback", "--passphrase", "",
                 "--local-user", self.fingerprint, "--digest-algo", "SHA512", "--armor", mode,
                 "--output", str(partial), str(release), what=f"sign {release}")  # fmt: skip
            os.replace(partial, repo / name)


def _fingerprint(home: Path) -> str | None:
    listing = _gpg(home, "--with-colons", "--list-secret-keys", KEY_USER_ID, what="read the key")
    fingerprints = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
    return fingerprints[0] if fingerprints else None


def signing_key(home: Path | None = None) -> SigningKey:
    """The build machine's bundle key, made on first use (ed25519, no passphrase: it signs in
    unattended builds; keep the folder 0700 on the build machine)."""
    home = home or default_home()
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    existing = (home / "pubring.kbx").is_file() and _has_key(home)
    if not existing:
        _gpg(home, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
             KEY_USER_ID, "ed25519", "sign", "never", what="make the bundle key")  # fmt: skip
    fingerprint = _fingerprint(home)
    if fingerprint is None:
        raise BundleError(f"bundle key: expected one in {home}, found none — fix: remove {home}")
    return SigningKey(home=home, fingerprint=fingerprint)


def _has_key(home: Path) -> bool:
    try:
        return _fingerprint(home) is not None
    except BundleError:
        return False


def verify_release(repo: Path, keyring: Path) -> str | None:
    """Why ``repo``'s ``InRelease`` does not verify against ``keyring``; None when it does."""
    if shutil.which("gpgv") is None:
        return "gpgv not found here — fix: apt-get install gpgv"
    command = ["gpgv", "--keyring", str(keyring.resolve()), str(repo / "InRelease")]
    checked = run(command, what="check the signature", fix="", check=False, timeout=GPG_TIMEOUT_S)
    if checked.returncode == 0:
        return None
    return (checked.stderr.strip().splitlines() or ["no output"])[-1]
