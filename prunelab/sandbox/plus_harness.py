# Appended (as text) to the base tests of a check: differential testing of the candidate against the reference
# solution on EvalPlus's inputs. It runs in the trusted harness (`harness.py`): the reference solution here, the
# candidate in the sandbox (`candidate` is a proxy whose results arrive as data). The comparisons follow
# evalplus.eval.unsafe_execute (0.3.1), with evalplus's own oracles and its per-input time limits: each input gets
# max(DEFAULT_MIN_TIME_LIMIT, DEFAULT_GT_TIME_LIMIT_FACTOR x the reference's time on it), measured here.
import base64 as _b64
import copy as _copy
import pickle as _pickle
import time as _time

import numpy as _np
from evalplus.config import DEFAULT_GT_TIME_LIMIT_FACTOR as _FACTOR
from evalplus.config import DEFAULT_MIN_TIME_LIMIT as _MIN_TIME
from evalplus.eval import is_floats as _is_floats
from evalplus.eval._special_oracle import (
    MBPP_OUTPUT_NOT_NONE_TASKS as _NOT_NONE,
)
from evalplus.eval._special_oracle import (
    MBPP_OUTPUT_SET_EQ_TASKS as _SET_EQ,
)
from evalplus.eval._special_oracle import (
    _digit_distance_nums,
    _poly,
    _surface_Area,
)


def _prunelab_check_plus(dataset, entry_point, reference_source, inputs_b64, atol):
    candidate = globals()[entry_point]
    namespace = {}
    exec(reference_source, namespace)
    reference = namespace[entry_point]
    # prunelab's own pickle of EvalPlus's inputs (trusted data); nothing from the sandbox is ever unpickled
    for i, inp in enumerate(_pickle.loads(_b64.b64decode(inputs_b64))):
        start = _time.perf_counter()
        expected = reference(*_copy.deepcopy(inp))
        limit = max(_MIN_TIME, _FACTOR * (_time.perf_counter() - start))
        call = candidate.within(limit) if hasattr(candidate, "within") else candidate
        out = call(*_copy.deepcopy(inp))
        exact = out == expected
        if dataset == "mbpp":
            if entry_point == "are_equivalent":
                exact = True
            elif entry_point == "sum_div":
                exact = exact or out == 0
            elif entry_point == "surface_Area":
                exact = exact or abs(out - _surface_Area(*inp)) <= atol
            elif entry_point == "digit_distance_nums":
                exact = exact or out == _digit_distance_nums(*inp)
            elif entry_point in _SET_EQ:
                exact = set(out) == set(expected)
            elif entry_point in _NOT_NONE:
                exact = out == expected if isinstance(out, bool) else expected == (out is not None)
        if dataset == "humaneval" and entry_point == "find_zero":
            assert abs(_poly(*inp, out)) <= atol, f"plus input {i}: not a zero"
            continue
        tolerance = 1e-6 if atol == 0 and _is_floats(expected) else atol
        if not exact and tolerance != 0:
            assert type(out) is type(expected), f"plus input {i}: type differs"
            if isinstance(expected, (list, tuple)):
                assert len(out) == len(expected), f"plus input {i}: length differs"
            assert _np.allclose(out, expected, rtol=1e-07, atol=tolerance), f"plus input {i}: value differs"
        else:
            assert exact, f"plus input {i}: output differs"
