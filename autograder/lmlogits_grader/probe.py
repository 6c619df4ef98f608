"""What the grader asks a student's kernel after a graded cell: plain data, nothing more.

After each graded cell has run, the grader sends the kernel one more piece of code, a
*probe*, that reads the notebook variables the cell's check needs, or calls the student's
``predict_next_tokens`` on inputs the grader chose, and publishes the results as JSON
(lists of strings, numbers, and float32 arrays in base64). The probe runs in the student's
process, so student code can change what it returns: that is fine, because the grader
treats everything that comes back as untrusted data, checks its size and shape, and
compares it with its own reference outside the kernel (:mod:`lmlogits_grader.judge`).
A forged probe can only return values; only the right values earn points.

Nothing a probe's calls print or display reaches the notebook: the grader drops the
probe's outputs after taking its JSON, so hidden inputs never show up in feedback.
"""

from __future__ import annotations

from lmlogits_grader.checks import (
    ALLOWED_GLOBALS,
    HIDDEN_PHRASES,
    NOTEBOOK_LEFTOVERS,
    VISIBLE_PHRASE,
)

MIME = "application/vnd.lmlogits.probe+json"

# Calls of predict_next_tokens per graded cell: (phrase, k, hidden).
CALLS = {
    "test_returns_k_rows": [(VISIBLE_PHRASE, k, False) for k in (1, 5, 10)],
    "test_matches_reference": [(p, 5, True) for p in HIDDEN_PHRASES]
    + [(HIDDEN_PHRASES[1], 10, True)],
    "test_returns_probabilities": [(VISIBLE_PHRASE, 10, False), (HIDDEN_PHRASES[2], 10, True)],
}
ISOLATED_CALLS = [(HIDDEN_PHRASES[0], 5, True), (HIDDEN_PHRASES[2], 5, True)]

# Notebook variables read after each step's test cell.
VARIABLES = {
    "test_step1": ("phrase", "input_ids"),
    "test_step2": ("phrase", "model_output.logits"),
    "test_step3": ("phrase", "last_token_logits"),
    "test_step4": ("phrase", "last_token_probabilities", "most_likely_token_id"),
    "test_step5": ("phrase", "top_10", "most_likely_token"),
}

FUNCTION_CELLS = frozenset(CALLS) | {"test_works_without_notebook_globals"}
PROBED_CELLS = FUNCTION_CELLS | frozenset(VARIABLES)

# The kernel side. Kept small and free of grading logic: it only reads and encodes.
_RUNTIME = r'''
def __lmlogits_probe(spec, ns):
    import base64, signal, sys, math
    MAX_ARRAY, MAX_ROWS, MAX_TEXT = 4_000_000, 1000, 300

    def text(value, limit=MAX_TEXT):
        try:
            return str(value)[:limit]
        except BaseException:
            return "<unprintable>"

    def type_name(value):
        return text(type(value).__name__, 60)

    def array(value):
        try:
            import torch
            if not isinstance(value, torch.Tensor):
                return {"kind": "other", "type": type_name(value)}
            shape = [int(n) for n in value.shape]
            out = {"kind": "array", "shape": shape, "dtype": text(value.dtype, 40)}
            if value.numel() <= MAX_ARRAY and (value.is_floating_point() or value.dtype in (
                    torch.int64, torch.int32)):
                data = value.detach().to("cpu", torch.float64 if not value.is_floating_point()
                                         else torch.float32).contiguous()
                if not value.is_floating_point():
                    out["ints"] = [int(v) for v in data.reshape(-1).tolist()]
                else:
                    out["float32"] = base64.b64encode(data.numpy().tobytes()).decode()
            return out
        except BaseException as error:
            return {"kind": "broken", "type": type_name(error)}

    def number(value):
        try:
            if isinstance(value, bool):
                return {"kind": "other", "type": "bool"}
            return {"kind": "int", "value": int(value)} if int(value) == value else {
                "kind": "other", "type": type_name(value)}
        except BaseException:
            return {"kind": "other", "type": type_name(value)}

    def table(value):
        try:
            import pandas as pd
            if not isinstance(value, pd.DataFrame):
                return {"kind": "other", "type": type_name(value)}
            columns = [text(c, 60) for c in list(value.columns)[:20]]
            out = {"kind": "table", "columns": columns, "rows": int(len(value))}
            for name in ("tokens", "probabilities"):
                if name in value.columns:
                    column = value[name]
                    if not hasattr(column, "tolist"):
                        continue
                    items = list(column.tolist())[:MAX_ROWS]
                    if name == "tokens":
                        out[name] = [v[:MAX_TEXT] if isinstance(v, str) else None for v in items]
                    else:
                        numbers = []
                        for v in items:
                            try:
                                f = float(v)
                                numbers.append(f if math.isfinite(f) else None)
                            except BaseException:
                                numbers.append(None)
                        out[name] = numbers
            return out
        except BaseException as error:
            return {"kind": "broken", "type": type_name(error)}

    def variable(path):
        head, *rest = path.split(".")
        if head not in ns:
            return None, False
        value = ns[head]
        try:
            for attribute in rest:
                value = getattr(value, attribute)
        except BaseException:
            return None, False
        return value, True

    class TimeLimit(BaseException):
        pass

    def on_alarm(signum, frame):
        raise TimeLimit

    # once a call has run out of time, the function is taken to run out of time on every
    # call: no more seconds are spent waiting for it (nor in later probes: "skip")
    out_of_time = [bool(spec.get("skip"))]

    def call(func, phrase, k):
        if out_of_time[0]:
            return {"timeout": True}
        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, spec["seconds"])
        try:
            return {"result": table(func(phrase, k))}
        except TimeLimit:
            out_of_time[0] = True
            return {"timeout": True}
        except BaseException as error:
            return {"error": type_name(error), "message": text(error)}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def isolated(func, namespace):
        import builtins, inspect, types
        func = inspect.unwrap(func)
        if not isinstance(func, types.FunctionType):
            return None
        scope = {"__builtins__": builtins, "__name__": "__isolated__", **namespace}
        copy = types.FunctionType(func.__code__, scope, func.__name__, func.__defaults__,
                                  func.__closure__)
        copy.__kwdefaults__ = func.__kwdefaults__
        return copy

    class Decoy:
        def __init__(self, name):
            self._name = name
        def __getattr__(self, attribute):
            raise RuntimeError("used the notebook variable " + self._name)
        def __getitem__(self, key):
            raise RuntimeError("used the notebook variable " + self._name)

    answer = {"cell": spec["cell"]}
    if spec.get("variables"):
        found = {}
        for path in spec["variables"]:
            value, present = variable(path)
            if not present:
                found[path] = {"kind": "missing"}
            elif path == "phrase" or path == "most_likely_token":
                found[path] = ({"kind": "str", "value": value[:2000]} if isinstance(value, str)
                               else {"kind": "other", "type": type_name(value)})
            elif path == "most_likely_token_id":
                found[path] = number(value)
            elif path == "top_10":
                found[path] = table(value)
            else:
                found[path] = array(value)
        answer["variables"] = found
    if spec.get("calls") or spec.get("isolated"):
        func = ns.get("predict_next_tokens")
        answer["defined"] = callable(func)
        if callable(func):
            answer["calls"] = [call(func, p, k) for p, k in spec.get("calls", [])]
            if spec.get("isolated"):
                allowed = {name: ns[name] for name in spec["allowed"] if name in ns}
                decoys = {name: Decoy(name) for name in spec["leftovers"]}
                decoys["phrase"] = "Decoy phrase that is not the one asked about"
                settings = []
                for namespace in (allowed, {**decoys, **allowed}):
                    copy = isolated(func, namespace)
                    settings.append(None if copy is None else
                                    [call(copy, p, k) for p, k in spec["isolated"]])
                answer["isolated"] = settings
    get_ipython().display_pub.publish(data={spec["mime"]: answer}, metadata={})
'''


def probe_source(cell: str, seconds: float, skip_calls: bool = False) -> str | None:
    """The code to run in the kernel after graded cell ``cell``; None if it needs none.

    ``skip_calls``: the function already ran out of time in an earlier probe; answer
    every call as timed out without calling it (each timeout costs ``seconds``).
    """
    if cell not in PROBED_CELLS:
        return None
    spec: dict = {"cell": cell, "mime": MIME, "seconds": float(seconds), "skip": skip_calls}
    if cell in VARIABLES:
        spec["variables"] = list(VARIABLES[cell])
    if cell in CALLS:
        spec["calls"] = [[p, k] for p, k, _ in CALLS[cell]]
    if cell == "test_works_without_notebook_globals":
        # the same calls in the notebook first, then without its variables
        spec["calls"] = [[p, k] for p, k, _ in ISOLATED_CALLS]
        spec["isolated"] = [[p, k] for p, k, _ in ISOLATED_CALLS]
        spec["allowed"] = list(ALLOWED_GLOBALS)
        spec["leftovers"] = list(NOTEBOOK_LEFTOVERS)
    return (
        _RUNTIME
        + f"\n__lmlogits_probe({spec!r}, globals())\ndel __lmlogits_probe\n"
    )


def timed_out(answer: dict) -> bool:
    """Whether any call in a probe's answer ran out of time."""
    groups = [answer.get("calls")] + list(answer.get("isolated") or [])
    return any(
        isinstance(call, dict) and call.get("timeout") is True
        for group in groups if isinstance(group, list) for call in group
    )
