"""Settings of the sandbox: token lifetimes, processing delays, platform limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SandboxConfig:
    # Public URL under which the sandbox is reachable (used in redirects, upload URLs,
    # permalinks). Mounted in the app: "{OKK_BASE_URL}/sandbox"; standalone: the server.
    base_url: str = "http://127.0.0.1:8000/sandbox"
    # Client credentials the fakes accept (the product's sandbox defaults use these).
    facebook_app_id: str = "sandbox-facebook-app"
    facebook_app_secret: str = "sandbox-facebook-secret"
    tiktok_client_key: str = "sandbox-tiktok-key"
    tiktok_client_secret: str = "sandbox-tiktok-secret"
    tiktok_audited: bool = False
    x_client_id: str = "sandbox-x-client"
    x_client_secret: str = "sandbox-x-secret"
    # A second X app registered as a public client (Native/SPA): client_id in the body.
    x_public_client_id: str = "sandbox-x-public-client"
    # Registered X callback URLs; empty accepts any http(s) redirect_uri.
    x_callback_urls: tuple[str, ...] = ()
    google_client_id: str = "sandbox-google-client"
    google_client_secret: str = "sandbox-google-secret"
    openai_api_key: str = "sandbox-openai-key"
    # Token lifetimes in seconds (TikTok "2026" profile: 7200 / 15552000).
    facebook_short_token_ttl: int = 2 * 3600
    facebook_long_token_ttl: int = 5_183_944
    tiktok_access_ttl: int = 86_400
    tiktok_refresh_ttl: int = 31_536_000
    x_access_ttl: int = 7200
    x_code_ttl: int = 30
    google_access_ttl: int = 3599
    # Test knob: the NEXT Google ID token is spoiled in one way, then this resets to "".
    # "nonce" | "audience" | "expired" | "signature" | "issuer" (see src/sandbox/google.py).
    google_id_token_tamper: str = ""
    # Asynchronous processing: seconds before a video/container/upload is ready.
    processing_delay: float = 2.0
    # X POST /2/tweets limits (docs disagree on the per-user 15-minute figure: 100 vs 200).
    x_tweets_per_15min: int = 100
    x_tweets_per_day_user: int = 2400
    x_tweets_per_day_app: int = 10_000
    # Graph API rate limits: calls per rolling hour per app (user/app tokens) and per
    # rolling 24 h per Page (Page tokens); past them Graph answers code 4 / code 32.
    facebook_app_call_limit: int = 20_000
    facebook_page_call_limit: int = 48_000
    # Instagram publishing cap per 24 h and per account.
    instagram_daily_cap: int = 100
    # Largest media the fakes pull over HTTP (bytes).
    max_pull_bytes: int = 1_100_000_000
