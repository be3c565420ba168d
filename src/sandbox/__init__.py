"""Local, stateful fakes of the external services OKKTOPUS talks to.

Imports nothing of the product: it is mounted under /sandbox by the app in sandbox
mode, or run on its own with `okktopus sandbox --port N`.
"""

from src.sandbox.app import create_sandbox_app
from src.sandbox.config import SandboxConfig

__all__ = ["SandboxConfig", "create_sandbox_app"]
