"""The web dashboard (`pgq-thin web`; needs the extra: `pip install 'pgq-thin[web]'`).

One more thin reader of the pgq views, like the CLI: `create_app(dsn)` is an ASGI app to
serve, or to mount inside a Starlette or FastAPI service behind its own auth.
"""

from pgq_thin.web.app import create_app, serve
from pgq_thin.web.security import Auth

__all__ = ["Auth", "create_app", "serve"]
