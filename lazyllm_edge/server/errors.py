"""The server's errors in the OpenAI shape: {"error": {"message", "type", "param", "code"}} with an HTTP status."""

from typing import Dict, Optional


class APIError(Exception):
    """An error answered to the client as it is: the status, the OpenAI error body and any extra headers."""

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None,
                 type: str = "invalid_request_error", headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: Optional[str] = None, code: Optional[str] = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_field(param: str, message: str, code: str = "invalid_value") -> APIError:
    """400 naming the request field at fault."""
    return APIError(400, f"'{param}': {message}", param=param, code=code)
