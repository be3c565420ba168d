"""A tiny browser over httpx: keeps cookies, reads forms and CSRF tokens out of pages,
and walks the sign-in through the sandbox Google consent screen."""

from __future__ import annotations

import re
import secrets
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx


class FormParser(HTMLParser):
    """Collects every <form> with its action, method and named inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                {
                    "action": attributes.get("action", ""),
                    "method": attributes.get("method", "get").lower(),
                    "fields": [],
                }
            )
        elif tag in ("input", "button", "select", "textarea") and self.forms:
            self.forms[-1]["fields"].append(attributes | {"tag": tag})


def forms_of(html: str) -> list[dict]:
    parser = FormParser()
    parser.feed(html)
    return parser.forms


def hidden_fields(form: dict) -> dict[str, str]:
    return {
        f["name"]: f.get("value", "")
        for f in form["fields"]
        if f.get("type") == "hidden" and f.get("name")
    }


class Browser:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=20, follow_redirects=False)
        self.http.headers["accept"] = "text/html"

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def follow(self, response: httpx.Response, limit: int = 10) -> httpx.Response:
        """Follow redirects like a browser, across paths of the same host."""
        for _ in range(limit):
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = urljoin(str(response.url), response.headers["location"])
            response = self.http.get(location)
        raise AssertionError("too many redirects")

    def csrf_token(self, path: str = "/privacy") -> str:
        html = self.get(path).text
        match = re.search(r'"x-csrftoken":\s*"([^"]+)"', html) or re.search(
            r'name="_csrf_token" value="([^"]+)"', html
        )
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True, **kw):
        headers = kw.pop("headers", {})
        if csrf:
            headers["x-csrftoken"] = self.csrf_token()
        return self.http.post(path, data=data, headers=headers, **kw)

    # -- sign-in through the sandbox Google -----------------------------------------
    def start_sign_in(self) -> httpx.Response:
        """GET /auth/login and follow to the provider's consent page."""
        response = self.get("/auth/login")
        assert response.status_code in (302, 303), response.text
        return self.http.get(response.headers["location"])

    def consent(self, consent_page: httpx.Response, decision: str = "allow", **identity):
        """Submit the consent form; return the redirect back to the app (not followed)."""
        form = next(f for f in forms_of(consent_page.text) if f["method"] == "post")
        data = hidden_fields(form) | {"decision": decision}
        if identity:
            data |= {"identity": "custom", **identity}
        else:
            radios = [f for f in form["fields"] if f.get("type") == "radio"]
            data["identity"] = radios[0]["value"]
        scopes = [f["value"] for f in form["fields"] if f.get("name") == "scope"]
        action = urljoin(str(consent_page.url), form["action"])
        return self.http.post(action, data={**data, "scope": scopes})

    def sign_in(self, email: str | None = None, name: str = "Test Person", verified: bool = True):
        """The whole sign-in; returns the final response after the app's redirects."""
        email = email or f"user-{secrets.token_hex(4)}@example.com"
        identity = {"custom_email": email, "custom_name": name}
        if not verified:
            identity["custom_unverified"] = "1"
        back = self.consent(self.start_sign_in(), **identity)
        assert back.status_code in (302, 303), back.text
        return self.follow(self.http.get(back.headers["location"]))

    def welcome(self, timezone: str = "Europe/Berlin") -> httpx.Response:
        data = {"age_confirmed": "1", "policy_accepted": "1", "timezone": timezone}
        return self.post("/auth/welcome", data)

    def signed_in_user(self, email: str | None = None) -> str:
        """Sign in a new person and give first-run consent; returns their email."""
        email = email or f"user-{secrets.token_hex(4)}@example.com"
        self.sign_in(email)
        response = self.welcome()
        assert response.status_code in (302, 303), response.text
        return email

    # -- connecting platform accounts through the sandbox consent screens -----------------
    def start_connect(self, platform: str) -> httpx.Response:
        """POST the Connect button; return the platform's consent page."""
        response = self.post(f"/connections/{platform}/connect")
        assert response.status_code in (302, 303), response.text
        return self.http.get(response.headers["location"])

    def grant(
        self,
        consent_page: httpx.Response,
        decision: str = "allow",
        identity: int = 0,
        untick: tuple[str, ...] = (),
    ) -> httpx.Response:
        """Submit a platform consent form as a person would; return the redirect back."""
        form = next(f for f in forms_of(consent_page.text) if f["method"] == "post")
        radios = [f["value"] for f in form["fields"] if f.get("type") == "radio"]
        scopes = [
            f["value"]
            for f in form["fields"]
            if f.get("name") == "scope" and f["value"] not in untick
        ]
        data = hidden_fields(form) | {"decision": decision, "identity": radios[identity]}
        action = urljoin(str(consent_page.url), form["action"])
        back = self.http.post(action, data={**data, "scope": scopes})
        assert back.status_code in (302, 303), back.text
        return back

    def connect(self, platform: str, **grant) -> httpx.Response:
        """The whole connect flow; returns the page the app lands on."""
        back = self.grant(self.start_connect(platform), **grant)
        return self.follow(self.http.get(back.headers["location"]))
