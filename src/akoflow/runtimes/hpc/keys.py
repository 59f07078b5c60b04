"""The private key of an HPC runtime checked offline, before any login: ``{NAME}_SSHKEYPRIVK``
(base64 data) or ``{NAME}_KEY_FILE`` (a path) must hold a private key asyncssh can use with
``{NAME}_KEY_PASSPHRASE``. A file that is no key (``/etc/shadow``, a directory, a public key),
a missing or unreadable one, a key that needs a passphrase or the wrong passphrase are told
here, with the fix, instead of as a failed login later.

What is wrong is said in words of our own: the key's content (or whatever the file holds) is
never put in a message, nor asyncssh's wording, which may quote a file's first line.
"""

from __future__ import annotations

import os
import stat

import asyncssh

from akoflow.errors import AkoflowError

MAX_KEY_BYTES = 1 << 20  # the largest RSA key in OpenSSH's format is a few KiB


class KeyProblem(AkoflowError, ValueError):
    """Why the key cannot be used (no content of the key or file in it)."""


def read_key_file(path: str) -> bytes:
    """The bytes of key file ``path``: a regular file (no directory, device or pipe, which
    could block or never end), at most :data:`MAX_KEY_BYTES`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise KeyProblem(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise KeyProblem(f"{path} is {kind}, not a private key file")
        if info.st_size > MAX_KEY_BYTES:
            raise KeyProblem(f"{path} is too large to be a private key")
        try:
            data = os.read(fd, MAX_KEY_BYTES + 1)
        except OSError as exc:
            raise KeyProblem(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return data


def key_problem(
    data: bytes, passphrase: str | None, passphrase_variable: str = "KEY_PASSPHRASE"
) -> str | None:
    """Why ``data`` is no private key usable with ``passphrase`` (None when it is one); the
    fix names ``passphrase_variable``."""
    try:
        asyncssh.import_private_key(data, passphrase)
    except asyncssh.KeyEncryptionError as exc:
        reason = str(exc).lower()
        if "bcrypt" in reason:
            return (
                "is encrypted in OpenSSH's format, which needs the Python package bcrypt to "
                "decrypt: install it, or load the key into ssh-agent instead"
            )
        if "passphrase" in reason:
            return f"cannot be decrypted with the passphrase given: check {passphrase_variable}"
        return "is encrypted with a cipher this machine cannot decrypt: load it into ssh-agent"
    except asyncssh.KeyImportError as exc:
        reason = str(exc).lower()
        if "unable to decrypt" in reason or "incorrect passphrase" in reason:
            return f"cannot be decrypted with the passphrase given: check {passphrase_variable}"
        if "passphrase must be specified" in reason:
            return (
                f"is encrypted: set {passphrase_variable} to its passphrase, or load it into "
                "ssh-agent instead"
            )
        return "is not a private key asyncssh can read (OpenSSH, PEM, PKCS#8 or PuTTY format)"
    except (ValueError, TypeError):  # a malformed structure inside a well-formed envelope
        return "is not a private key asyncssh can read (OpenSSH, PEM, PKCS#8 or PuTTY format)"
    return None
