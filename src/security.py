"""Token encryption at rest, signed URLs and the CSRF/session cookie settings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


def new_token_key() -> str:
    return Fernet.generate_key().decode()


class TokenCipher:
    """Encrypts platform tokens with the newest key; decrypts with any listed key, so
    keys rotate without downtime (OKK_TOKEN_KEYS, newest first)."""

    def __init__(self, keys: tuple[str, ...] | list[str]) -> None:
        if not keys:
            raise ValueError("at least one token key is required")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def encrypt(self, plaintext: str | None) -> str | None:
        if plaintext is None or plaintext == "":
            return None
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str | None) -> str | None:
        if not ciphertext:
            return None
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("a stored token cannot be decrypted with the configured keys") from exc

    def rotate(self, ciphertext: str | None) -> str | None:
        """Re-encrypt with the newest key (for `okktopus tokens rotate`)."""
        if not ciphertext:
            return ciphertext
        return self._fernet.rotate(ciphertext.encode()).decode()


def sign(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signed_query(secret: str, path: str, ttl: int, now: float | None = None) -> str:
    """A query string that lets anyone holding the URL GET `path` until it expires."""
    expires = int((now or time.time()) + ttl)
    return f"expires={expires}&signature={sign(secret, f'{path}:{expires}')}"


def check_signature(secret: str, path: str, expires: str, signature: str) -> bool:
    try:
        expired = int(expires) < time.time()
    except ValueError:
        return False
    return not expired and hmac.compare_digest(sign(secret, f"{path}:{expires}"), signature)
