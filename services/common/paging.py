"""Pages of a list RPC (page_size, page_token, next_page_token), the same way in every service:
the size asked for within the service's default and most, and a page token that carries, opaque
to the caller, where the next page starts."""
import base64
import binascii
import json

from services.common.errors import InvalidArgument


def page_size(requested, default, most):
    """The page size a caller asked for (0: the default), at most `most`; a negative one is refused."""
    if requested < 0:
        raise InvalidArgument("page_size cannot be negative")
    return min(requested or default, most)


def encode_token(where):
    """A page token for `where` (a dict of JSON values)."""
    return base64.urlsafe_b64encode(json.dumps(where).encode()).decode()


def decode_token(token, read):
    """What `read(dict)` makes of the token's dict (None for no token); a token that is not one of
    ours, or that `read` refuses (ValueError, KeyError, TypeError or InvalidArgument), is
    InvalidArgument."""
    if not token:
        return None
    try:
        return read(json.loads(base64.urlsafe_b64decode(token.encode())))
    except (ValueError, KeyError, TypeError, binascii.Error, InvalidArgument):
        raise InvalidArgument("page_token is not one this service gave out; start again without it") from None


def after_token(place):
    """A page token that says to go on after `place` (a non-empty string: where the list's order
    put the page's last item)."""
    return encode_token({"after": place})


def read_after(token, longest):
    """The place (a string of at most `longest` characters) a token of after_token says to go on
    after; "" for no token. Any other token is InvalidArgument."""
    def read(data):
        after = data["after"]
        if not isinstance(after, str) or not after or len(after) > longest:
            raise ValueError(after)
        return after
    return decode_token(token, read) or ""
