"""Values between the trusted test harness and the sandboxed program, as plain data: JSON of tagged values.

Only data crosses: None, bools, ints (as hex), floats (exactly, as float.hex), complex, str, bytes, and lists, tuples, dicts,
sets and frozensets of them. Any other object stays in the sandbox and crosses as a handle (["r", id, type name])
that the harness can pass back as an argument but never compare, call or look into: an object whose `__eq__`
always says True is the oldest forged pass. Decoding is strict (an unknown tag or shape is a `WireError`); nothing is
ever unpickled or evaluated. This module is imported by both sides and imports nothing but the standard library.
"""

import json

MAX_LINE = 64 * 2**20  # a reply larger than this is refused, not read into the harness's memory


class WireError(ValueError):
    """A message that is not well-formed data."""


class Handle:
    """An object that stayed in the sandbox: usable only as an argument of a later call."""

    __slots__ = ("id", "type_name")

    def __init__(self, id: int, type_name: str):
        self.id, self.type_name = id, type_name

    def __repr__(self) -> str:
        return f"<{self.type_name} object in the sandbox>"


def encode(value, handle=None):
    """`value` as tagged JSON-ready data; objects that are not data go to `handle(obj) -> id` (None: refused).
    Subclasses of the data types cross as their base type (a Counter as a dict, a namedtuple as a tuple), through
    their own conversion: whatever that yields is plain data, compared on the trusted side."""
    if value is None:
        return ["n"]
    if isinstance(value, bool):
        return ["t", bool(value)]
    if isinstance(value, int):  # hex: decimal conversion of huge ints is limited (sys.set_int_max_str_digits)
        return ["i", hex(int(value))]
    if isinstance(value, float):
        return ["f", float(value).hex()]
    if isinstance(value, complex):
        value = complex(value)
        return ["c", value.real.hex(), value.imag.hex()]
    if isinstance(value, str):
        return ["s", str.__str__(value)]
    if isinstance(value, bytes):
        return ["b", bytes(value).hex()]
    if isinstance(value, Handle):
        return ["r", value.id, value.type_name]
    if isinstance(value, dict):
        return ["d", [[encode(k, handle), encode(v, handle)] for k, v in dict.items(value)]]
    for kind, tag in _SEQUENCES.items():
        if isinstance(value, kind):
            return [tag, [encode(v, handle) for v in value]]
    if handle is None:
        raise WireError(f"a {type(value).__name__} is not data")
    return ["r", handle(value), type(value).__name__]


_SEQUENCES = {list: "l", tuple: "u", set: "S", frozenset: "F"}
_BUILD = {"l": list, "u": tuple, "S": set, "F": frozenset}


def decode(obj, resolve=None):
    """The value of tagged data; a handle becomes `resolve(id, type name)` (None: a `Handle`)."""
    try:
        return _decode(obj, resolve)
    except RecursionError:
        raise WireError("data nested too deeply") from None


def _decode(obj, resolve):
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], str):
        raise WireError(f"not a tagged value: {str(obj)[:80]}")
    tag, args = obj[0], obj[1:]
    try:
        if tag == "n" and not args:
            return None
        if tag == "t" and len(args) == 1 and type(args[0]) is bool:
            return args[0]
        if tag == "i" and len(args) == 1 and type(args[0]) is str:
            return int(args[0], 16)
        if tag == "f" and len(args) == 1:
            return float.fromhex(args[0])
        if tag == "c" and len(args) == 2:
            return complex(float.fromhex(args[0]), float.fromhex(args[1]))
        if tag == "s" and len(args) == 1 and type(args[0]) is str:
            return args[0]
        if tag == "b" and len(args) == 1:
            return bytes.fromhex(args[0])
        if tag in _BUILD and len(args) == 1 and type(args[0]) is list:
            return _BUILD[tag](_decode(v, resolve) for v in args[0])
        if tag == "d" and len(args) == 1 and type(args[0]) is list:
            return {_decode(k, resolve): _decode(v, resolve) for k, v in (_pair(p) for p in args[0])}
        if tag == "r" and len(args) == 2 and type(args[0]) is int and type(args[1]) is str:
            return resolve(args[0], args[1]) if resolve else Handle(args[0], args[1])
    except (TypeError, ValueError, OverflowError) as exc:  # unhashable keys, bad hex
        raise WireError(f"malformed {tag!r} value: {exc}") from None
    raise WireError(f"unknown or malformed tag {tag!r}")


def _pair(p):
    if type(p) is not list or len(p) != 2:
        raise WireError("a dict entry is not a [key, value] pair")
    return p


def dumps(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def loads(line: bytes) -> dict:
    try:
        message = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(message, dict):
        raise WireError("a message must be a JSON object")
    return message
