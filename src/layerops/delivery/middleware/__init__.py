"""Pure ASGI middleware of the server, one per module.

Each class takes the inner `app` plus keyword options and passes non-HTTP scopes (lifespan,
websocket) straight through. They only alter requests and responses; their own answers use the
error body of the request's transport (`http_errors.scope_error_response`). Order, outermost
first: metrics → request id → access log → error boundary → API key → body limit → timeout →
direct routes (raw ASGI endpoints) → FastAPI's routes (so every response, including one made
here, carries `X-Request-ID`, is logged and is counted).
"""

from layerops.delivery.middleware._scope import model_from_path, request_state, route_template
from layerops.delivery.middleware.access_log import AccessLogMiddleware
from layerops.delivery.middleware.api_key import ApiKeyMiddleware
from layerops.delivery.middleware.body_limit import BodySizeLimitMiddleware
from layerops.delivery.middleware.direct_routes import DirectRoutesMiddleware
from layerops.delivery.middleware.error_boundary import ErrorBoundaryMiddleware
from layerops.delivery.middleware.metrics import MetricsMiddleware
from layerops.delivery.middleware.request_id import RequestIdMiddleware
from layerops.delivery.middleware.timeout import TimeoutMiddleware

__all__ = [
    "AccessLogMiddleware",
    "ApiKeyMiddleware",
    "BodySizeLimitMiddleware",
    "DirectRoutesMiddleware",
    "ErrorBoundaryMiddleware",
    "MetricsMiddleware",
    "RequestIdMiddleware",
    "TimeoutMiddleware",
    "model_from_path",
    "request_state",
    "route_template",
]
