"""Every error class. The :class:`EdgeLambdaError` hierarchy carries the HTTP status and the
public message that the gateway's error middleware turns into a response; nothing else in
the code builds error responses. The few others below it never reach a client as such: a
broken stream (cut off mid-response), a schedule expression's error (wrapped into the
routing file's error), a template value without a local value (a SAM import's warning), and
a sandbox state change that the code should never attempt (a bug: logged with its traceback
and answered as an unexpected error)."""

from __future__ import annotations


class EdgeLambdaError(Exception):
    """Base of every error edgelambda raises on purpose."""

    status: int = 500
    public_message: str = "Internal server error"

    def __init__(self, detail: str | None = None, *, public_message: str | None = None) -> None:
        super().__init__(detail or public_message or self.public_message)
        if public_message is not None:
            self.public_message = public_message

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers this error needs (``Allow``, ``Retry-After``...)."""
        return {}

    def body(self) -> dict[str, str]:
        """The JSON body of the error response; API Gateway's shape by default."""
        return {"message": self.public_message}


class ConfigError(EdgeLambdaError):
    """A setting or the routing file is invalid; start-up stops with a message naming it."""


class RoutingConfigError(ConfigError):
    """routing.yaml is invalid; the message names the file, the line and the key."""

    def __init__(self, source: str, line: int | None, key: str, problem: str) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {key}: {problem}")
        self.source = source
        self.line = line
        self.key = key
        self.problem = problem


class RouteNotFound(EdgeLambdaError):
    status = 404
    public_message = "Not Found"


class MethodNotAllowed(EdgeLambdaError):
    status = 405
    public_message = "Method Not Allowed"

    def __init__(self, allowed: frozenset[str]) -> None:
        super().__init__(f"allowed: {', '.join(sorted(allowed))}")
        self.allowed = allowed

    @property
    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(sorted(self.allowed))}


class BadRequest(EdgeLambdaError):
    status = 400
    public_message = "Bad Request"


class Unauthorized(EdgeLambdaError):
    status = 401
    public_message = "Unauthorized"


class InvalidCredentials(Unauthorized):
    """The API key was right but the user name or password was not. The original system's
    clients tell the two apart by this header."""

    @property
    def headers(self) -> dict[str, str]:
        return {"PADMA_USER_AUTHORIZED": "true"}


class PayloadTooLarge(EdgeLambdaError):
    status = 413
    public_message = "Request Too Long"


class TooManyRequests(EdgeLambdaError):
    status = 429
    public_message = "Too Many Requests"


class LoginThrottled(TooManyRequests):
    """Too many failed logins from one client address; ``Retry-After`` says when to retry."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"login throttled for {retry_after_s} s")
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class FunctionError(EdgeLambdaError):
    """The function failed: an unhandled exception, a crash, an init error or a malformed
    result. API Gateway answers all of them with 502."""

    status = 502
    public_message = "Internal server error"

    def __init__(self, detail: str, *, error_type: str = "Runtime.Unknown") -> None:
        super().__init__(detail)
        self.error_type = error_type

    @property
    def headers(self) -> dict[str, str]:
        # The body stays API Gateway's; the header tells an operator what went wrong.
        return {"x-amzn-ErrorType": self.error_type}


class FunctionTimeout(EdgeLambdaError):
    status = 504
    public_message = "Endpoint request timed out"


class EngineUnavailable(EdgeLambdaError):
    """The container engine cannot be reached or refused an operation."""

    status = 503
    public_message = "Service Unavailable"


class ServiceError(EdgeLambdaError):
    """An error of the AWS Lambda API (Invoke), shaped as AWS shapes them so SDKs raise the
    right exception: the code in ``x-amzn-ErrorType``, ``{"Type", "message"}`` in the body."""

    status = 500
    error_code = "ServiceException"
    fault = "Service"

    def __init__(self, message: str) -> None:
        super().__init__(message, public_message=message)

    @property
    def headers(self) -> dict[str, str]:
        return {"x-amzn-ErrorType": self.error_code}

    def body(self) -> dict[str, str]:
        return {"Type": self.fault, "message": self.public_message}


class ResourceNotFound(ServiceError):
    status = 404
    error_code = "ResourceNotFoundException"
    fault = "User"


class InvalidRequestContent(ServiceError):
    status = 400
    error_code = "InvalidRequestContentException"
    fault = "User"


class InvalidParameterValue(ServiceError):
    status = 400
    error_code = "InvalidParameterValueException"
    fault = "User"


class RequestTooLarge(ServiceError):
    status = 413
    error_code = "RequestTooLargeException"
    fault = "User"


class AccessDenied(ServiceError):
    status = 403
    error_code = "AccessDeniedException"
    fault = "User"


class TooManyRequestsService(ServiceError):
    status = 429
    error_code = "TooManyRequestsException"
    fault = "User"
    retry_after_s = 1

    @property
    def headers(self) -> dict[str, str]:
        return {**super().headers, "Retry-After": str(self.retry_after_s)}


# -- internal errors of the gateway's parts -------------------------------------------------


class Forbidden(EdgeLambdaError):
    """A Runtime API caller that is not the sandbox it claims to be."""

    status = 403
    public_message = "Forbidden"


class InvalidRequestId(EdgeLambdaError):
    """A runtime answered an invocation that is not the one it holds."""

    status = 400
    public_message = "Invalid request id"


class RuntimeApiFault(EdgeLambdaError):
    """A Runtime API call that failed on the gateway's side (a bug, logged with its
    traceback): the runtime is answered 500."""


class SandboxRetired(EdgeLambdaError):
    """The sandbox was stopped or retired while its runtime waited for work."""

    status = 410
    public_message = "Sandbox retired"


class EventStoreError(EdgeLambdaError):
    """The event store could not be read or written; an ``Event`` invocation is not accepted."""


class EventQueueFull(TooManyRequests):
    """A function already has its bound of queued events; the Invoke API answers AWS's
    ``TooManyRequestsException``, a schedule's fire is logged and skipped."""


class EventNotInFlight(EdgeLambdaError):
    """``ack``/``fail`` named an event that is not running: a bug in the caller."""


class CodeError(EdgeLambdaError):
    """A function's code directory cannot be packed into its image: a file unreadable or
    gone, a special file, a symlink leaving the directory, or a size or file-count cap
    passed. The function's start fails and its callers get 502 at once."""

    status = 502


class ResourcesUnavailable(EdgeLambdaError):
    """A declared bucket or table could not be checked or created in time."""


class LogStoreUnavailable(EdgeLambdaError):
    """The console cannot read function logs: no log store is configured, or it did not
    answer."""

    status = 503
    public_message = "The log store is unavailable"


class StreamBroken(Exception):
    """A streamed response ended before the runtime finished it."""


class ScheduleError(ValueError):
    """An expression is not valid EventBridge syntax; the message says which field and why."""


class CronFieldError(ScheduleError):
    """A problem in one field of a cron expression; the parser adds the expression and the
    field's name."""


class Unresolvable(ValueError):
    """A template value has no local value (another stack's export, a parameter without a
    value, a resource the box does not serve); the SAM import turns it into a warning."""


class SandboxStateError(RuntimeError):
    """A sandbox was asked for a state change its current state does not allow: a bug in the
    caller (each transition names the states it starts from), so not an EdgeLambdaError."""
