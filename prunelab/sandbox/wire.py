"""Values between the trusted test harness and the sandboxed program, as plain data: JSON of tagged values.

Only data crosses: None, bools, ints (as hex), floats (exactly, as float.hex), complex, str, bytes, the rest of the
numeric tower (`fractions.Fraction` as its two ints, `decimal.Decimal` as its exact string, numpy scalars and numeric,
bool or string arrays with their dtype), and lists, tuples, dicts, sets and frozensets of them. The trusted side
rebuilds each as the very type it left as (an `np.float64` stays an `np.float64`), so the tests compare what the
program returned as the reference harnesses would. Any other object stays in the sandbox and crosses as a handle
(["r", id, type name]) that the harness can pass back as an argument or iterate element by element (each element
crossing as data), but never compare, call or look into: an object whose `__eq__` always says True is the oldest
forged pass. Decoding is strict (an unknown tag or shape is a `WireError`); nothing is ever unpickled or evaluated.
This module is imported by both sides and imports nothing but the standard library; numpy, fractions and decimal are
looked up only when a value of theirs crosses (the sandbox side never imports them for the program).
"""

import json
import re
import sys

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
    exact = _EXACT.get(type(value))  # the common case, without the numeric tower's look-ups
    if exact is not None:
        return exact(value, handle)
    number = _number(value)
    if number is not None:
        return number
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


def _complex(value: complex) -> list:
    return ["c", value.real.hex(), value.imag.hex()]


_EXACT = {
    type(None): lambda v, h: ["n"],
    bool: lambda v, h: ["t", v],
    int: lambda v, h: ["i", hex(v)],
    float: lambda v, h: ["f", v.hex()],
    complex: lambda v, h: _complex(v),
    str: lambda v, h: ["s", v],
    bytes: lambda v, h: ["b", v.hex()],
    list: lambda v, h: ["l", [encode(x, h) for x in v]],
    tuple: lambda v, h: ["u", [encode(x, h) for x in v]],
    dict: lambda v, h: ["d", [[encode(k, h), encode(x, h)] for k, x in v.items()]],
}

# numpy dtypes that cross: bools, ints, floats up to 64 bits, complex up to 128, fixed-width strings and bytes
_DTYPE = re.compile(r"\A[<>|=]?(?:b1|[iu][1248]|f[248]|c(?:8|16)|[US]\d{1,6})\Z")
MAX_ARRAY_BYTES = 256 * 2**20  # an array rebuilt on the trusted side: a '<U999999' of a million elements is refused


def _number(value):
    """The numeric tower beyond the builtins (and numpy's arrays), by the modules the program itself loaded: none of
    them is imported here."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, (np.generic, np.ndarray)):
        dtype = str(value.dtype.str)
        if not _DTYPE.match(dtype):
            return None
        if isinstance(value, np.ndarray):
            flat = value.ravel().tolist()
            return ["A", dtype, [int(n) for n in value.shape], [encode(x) for x in flat]]
        if value.dtype.kind in "US":  # np.str_ and np.bytes_ are str and bytes
            return None
        return ["N", dtype, encode(value.item())]
    fractions = sys.modules.get("fractions")
    if fractions is not None and isinstance(value, fractions.Fraction):
        return ["q", hex(int(value.numerator)), hex(int(value.denominator))]
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(value, decimal.Decimal):
        return ["D", decimal.Decimal.__str__(value)]
    return None


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
        if tag in _NUMBERS and len(args) == _NUMBERS[tag]:
            return _decode_number(tag, args)
        if tag == "r" and len(args) == 2 and type(args[0]) is int and type(args[1]) is str:
            return resolve(args[0], args[1]) if resolve else Handle(args[0], args[1])
    except (TypeError, ValueError, OverflowError, ArithmeticError) as exc:  # unhashable keys, bad hex, 0 denominator
        raise WireError(f"malformed {tag!r} value: {exc}") from None
    raise WireError(f"unknown or malformed tag {tag!r}")


_NUMBERS = {"q": 2, "D": 1, "N": 2, "A": 3}


def _decode_number(tag: str, args: list):
    if tag == "q" and all(type(a) is str for a in args):
        from fractions import Fraction

        return Fraction(int(args[0], 16), int(args[1], 16))
    if tag == "D" and type(args[0]) is str:
        from decimal import Decimal

        return Decimal(args[0])
    if type(args[0]) is not str or not _DTYPE.match(args[0]):
        raise WireError(f"a numpy value of dtype {str(args[0])[:20]!r}, which does not cross")
    import numpy as np

    dtype = np.dtype(args[0])
    if tag == "N" and dtype.kind not in "US":
        return dtype.type(_decode(args[1], None))
    if tag == "A" and type(args[1]) is list and type(args[2]) is list and all(type(n) is int for n in args[1]):
        flat = [_decode(v, None) for v in args[2]]
        if any(n < 0 for n in args[1]) or _product(args[1]) != len(flat):
            raise WireError(f"an array of shape {args[1][:8]} with {len(flat)} elements")
        if dtype.itemsize * len(flat) > MAX_ARRAY_BYTES:
            raise WireError(f"an array over {MAX_ARRAY_BYTES >> 20} MiB")
        return np.array(flat, dtype=dtype).reshape(args[1])
    raise WireError(f"malformed {tag!r} value")


def _product(shape: list[int]) -> int:
    n = 1
    for k in shape:
        n *= k
    return n


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
