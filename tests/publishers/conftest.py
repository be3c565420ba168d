from tests.sandbox.conftest import _sandbox_server, media_host, sandbox  # noqa: F401
